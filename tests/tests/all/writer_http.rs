//! The writer's HTTP API: appends, errors, the catch-up endpoint, metrics.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use streamhost_integration_tests::TestWriter;

async fn post(
    writer: &TestWriter,
    path: &str,
    body: impl Into<Bytes>,
) -> (StatusCode, serde_json::Value) {
    let (status, body) = writer
        .client()
        .send(Method::POST, path, body.into())
        .await
        .expect("request");
    (status, serde_json::from_slice(&body).expect("JSON answer"))
}

async fn get(writer: &TestWriter, path: &str) -> (StatusCode, serde_json::Value) {
    let (status, body) = writer
        .client()
        .send(Method::GET, path, Bytes::new())
        .await
        .expect("request");
    (status, serde_json::from_slice(&body).expect("JSON answer"))
}

#[tokio::test]
async fn append_answers_tokens_from_2_and_shared_tokens_on_request() {
    let writer = TestWriter::spawn(&["events", "receipts"]).await;
    let (status, answer) = post(&writer, "/v1/streams/events/rows", r#"[{"a":1},["b"],"c"]"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"stream": "events", "tokens": [2, 3, 4]}));
    let (_, answer) = post(
        &writer,
        "/v1/streams/events/rows?shared_token=true",
        "[1,2,3]",
    )
    .await;
    assert_eq!(answer["tokens"], json!([5, 5, 5]));
    let (_, answer) = post(&writer, "/v1/streams/receipts/rows", "[]").await;
    assert_eq!(answer["tokens"], json!([]));
    let (status, streams) = get(&writer, "/v1/streams").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        streams["streams"],
        json!([{"name": "events", "position": 5}, {"name": "receipts", "position": 1}])
    );
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_json_message() {
    let writer = TestWriter::spawn(&["events"]).await;
    let (status, answer) = post(&writer, "/v1/streams/nope/rows", "[1]").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"].as_str().unwrap().contains("nope"),
        "{answer}"
    );

    let (status, answer) = post(&writer, "/v1/streams/events/rows", "[1,").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["errcode"], "M_BAD_JSON");

    let (status, _) = post(&writer, "/v1/streams/events/rows", r#"{"not":"an array"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = post(&writer, "/v1/streams/events/rows?shared_token=maybe", "[1]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let too_big = format!("[\"{}\"]", "x".repeat(16 * 1024 * 1024));
    let (status, answer) = post(&writer, "/v1/streams/events/rows", too_big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");

    let long_row = format!("[\"{}\"]", "y".repeat(16_384));
    let (status, answer) = post(&writer, "/v1/streams/events/rows", long_row).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("RDATA line"),
        "{answer}"
    );

    let (status, _) = get(&writer, "/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nothing of the rejected requests was committed.
    let (_, streams) = get(&writer, "/v1/streams").await;
    assert_eq!(streams["streams"][0]["position"], 1);
}

#[tokio::test]
async fn too_many_rows_in_one_append_are_refused_with_413_naming_the_limit() {
    let writer = TestWriter::spawn_with(&["events"], |c| c.max_append_rows = 3).await;
    let (status, answer) = post(&writer, "/v1/streams/events/rows", "[1,2,3,4]").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["errcode"], "M_TOO_LARGE");
    let message = answer["error"].as_str().unwrap();
    assert!(message.contains("at most 3"), "{message}");
    assert!(message.contains("max_append_rows"), "{message}");
    let (status, answer) = post(&writer, "/v1/streams/events/rows", "[1,2,3]").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["tokens"], json!([2, 3, 4]));
    // Nothing of the refused request was committed.
    let (_, streams) = get(&writer, "/v1/streams").await;
    assert_eq!(streams["streams"][0]["position"], 4);
}

#[tokio::test]
async fn writes_need_the_bearer_token_when_one_is_configured() {
    let writer =
        TestWriter::spawn_with(&["events"], |c| c.write_token = Some("s3cret".into())).await;
    let (status, _) = post(&writer, "/v1/streams/events/rows", "[1]").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let tokens = writer
        .client()
        .with_bearer("s3cret")
        .append("events", Bytes::from_static(b"[1]"), false)
        .await
        .expect("authorised append");
    assert_eq!(tokens.len(), 1);
}

#[tokio::test]
async fn catch_up_endpoint_has_synapse_shape_and_limits() {
    let writer = TestWriter::spawn_with(&["events"], |c| {
        c.catchup_row_limit = 3;
        c.tail_rows = 2; // force most reads through SQL
    })
    .await;
    writer.append("events", &[json!(["a"]), json!(["b"])]).await; // tokens 2, 3
    writer
        .client()
        .append(
            "events",
            Bytes::from_static(b"[[\"c\"],[\"d\"],[\"e\"]]"),
            true,
        )
        .await
        .unwrap(); // 4,4,4
    writer.append("events", &[json!(["f"])]).await; // 5

    let path = |from: i64, upto: i64| {
        format!(
            "/_synapse/replication/get_repl_stream_updates/events/abcdefghij?from_token={from}&upto_token={upto}"
        )
    };
    let (status, first) = get(&writer, &path(1, 100)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first,
        json!({"updates": [[2, ["a"]], [3, ["b"]]], "upto_token": 3, "limited": true})
    );
    let (_, second) = get(&writer, &path(3, 100)).await;
    assert_eq!(
        second,
        json!({"updates": [[4, ["c"]], [4, ["d"]], [4, ["e"]]], "upto_token": 4, "limited": true}),
        "a token is never cut, even past the limit"
    );
    let (_, third) = get(&writer, &path(4, 100)).await;
    assert_eq!(
        third,
        json!({"updates": [[5, ["f"]]], "upto_token": 5, "limited": false})
    );

    let (status, answer) = get(
        &writer,
        "/_synapse/replication/get_repl_stream_updates/nope/x?from_token=1&upto_token=2",
    )
    .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"errcode": "M_UNKNOWN", "error": "Unknown stream"})
        )
    );
    let (status, answer) = get(
        &writer,
        "/_synapse/replication/get_repl_stream_updates/events/x?from_token=1",
    )
    .await;
    assert_eq!(
        (status, &answer["errcode"]),
        (StatusCode::BAD_REQUEST, &json!("M_MISSING_PARAM"))
    );
    let (status, answer) = get(&writer, &path(-1, 2)).await;
    assert_eq!(
        (status, &answer["errcode"]),
        (StatusCode::BAD_REQUEST, &json!("M_INVALID_PARAM"))
    );
}

#[tokio::test]
async fn metrics_count_appended_rows_per_stream() {
    let writer = TestWriter::spawn(&["events", "typing"]).await;
    writer.append("events", &[json!(1), json!(2)]).await;
    writer.append("typing", &[json!(3)]).await;
    let (status, body) = writer
        .client()
        .send(Method::GET, "/metrics", Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("streamhost_rows_appended_total{stream=\"events\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("streamhost_rows_appended_total{stream=\"typing\"} 1"),
        "{text}"
    );
}
