//! TLS on Streamhost's own listeners and the reader's TLS client: the writer's and the
//! reader's HTTP APIs over TLS (and 403 for a client certificate not in `allowed_clients`),
//! replication over TLS to a reader, mTLS on replication (only an allowed reader gets a row
//! or a position), a reader that cannot verify its writer, catch-up over `https://` with a
//! client certificate, and certificates renewed on disk while connections stay open.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use streamhost_integration_tests::certs::{TestCa, pem_certificates, tls_connect};
use streamhost_integration_tests::{TestReader, TestWriter, metric, rows_body, wait_until};
use streamhost_proto::Token;
use streamhost_server::client::ApiClient;
use streamhost_server::config::{ClientTlsConfig, ServerTlsConfig, WriterConfig};
use streamhost_server::net::tls::ClientTls;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::replication::{assert_reader_has_exactly, write_rows};

const WAIT: Duration = Duration::from_secs(30);

/// A writer of `events` whose listeners `adjust` sets up.
async fn writer_with(adjust: impl FnOnce(&mut WriterConfig)) -> TestWriter {
    TestWriter::spawn_with(&["events"], adjust).await
}

/// A recording reader of `writer` with `[reader.writer_tls]` set to `tls`.
async fn tls_reader(writer: &TestWriter, name: &str, tls: ClientTlsConfig) -> TestReader {
    TestReader::spawn_with(writer, name, None, move |c| c.writer_tls = Some(tls)).await
}

/// An HTTPS client of `base` trusting `tls`'s CA and presenting its client certificate,
/// waiting at most 10 s for an answer: a refused certificate can leave hyper's request waiting
/// on a dead connection (see `streamhost_server::client::REQUEST_TIMEOUT`).
fn https_client(base: String, tls: &ClientTlsConfig) -> ApiClient {
    ApiClient::with_tls(base, &ClientTls::new(tls, "test").unwrap())
        .with_timeout(Duration::from_secs(10))
}

/// The lines a raw TLS replication client reads until the writer closes (at most 10 s).
async fn lines_until_closed(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> Vec<String> {
    let mut lines = BufReader::new(stream).lines();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
            Ok(Ok(Some(line))) => got.push(line),
            Ok(Ok(None) | Err(_)) => return got,
            Err(_) => panic!("the writer kept the connection open; lines so far: {got:?}"),
        }
    }
}

/// Waits until `reader` has failed to connect (or been cut off) `times` times, and returns
/// its last connection error.
async fn refused(reader: &TestReader, times: u64) -> String {
    wait_until(WAIT, &format!("{} refused", reader.config.name), || async {
        let status = reader.reader().status();
        status.reconnects >= times && status.connection.last_error.is_some()
    })
    .await;
    reader
        .reader()
        .status()
        .connection
        .last_error
        .expect("checked above")
}

/// `reader` has received no row and no position of `events`.
async fn assert_got_nothing(reader: &TestReader) {
    let name = &reader.config.name;
    assert!(reader.rows("events").await.is_empty(), "{name} got rows");
    assert_eq!(reader.position("events").await, Token(0), "{name}");
    assert!(
        reader
            .reader()
            .status()
            .stream("events", "master")
            .is_none(),
        "{name} got a POSITION"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_http_api_answers_over_tls_and_refuses_clients_not_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server_tls(dir.path(), "writer", Some(&ca));
    let writer = writer_with(|c| {
        c.http.tls = Some(server);
        c.http.allowed_clients = vec!["appender".into()];
    })
    .await;
    assert!(writer.url().starts_with("https://"));

    let appender = ca.client_certificate(dir.path(), "appender");
    let allowed = ca.client_tls(Some(appender.clone()));
    let client = https_client(writer.url(), &allowed);
    let tokens = client
        .append("events", rows_body(&[serde_json::json!(["a"])]), false)
        .await
        .unwrap();
    assert_eq!(tokens.len(), 1);
    let streams = client.get_json("/v1/streams").await.unwrap();
    assert!(streams.to_string().contains("events"), "{streams}");

    // A certificate the CA signed, for a name not allowed: 403 on every request.
    let other = ca.client_tls(Some(ca.client_certificate(dir.path(), "someone-else")));
    let (status, body) = https_client(writer.url(), &other)
        .send(Method::GET, "/v1/streams", Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        String::from_utf8_lossy(&body).contains("client certificate not allowed"),
        "{body:?}"
    );
    // No client certificate, a server it cannot verify, or plain HTTP: no answer at all.
    let no_certificate = ca.client_tls(None);
    let failed = https_client(writer.url(), &no_certificate)
        .get_json("/v1/streams")
        .await;
    assert!(failed.is_err(), "{failed:?}");
    let stranger = TestCa::new(dir.path(), "stranger");
    let untrusting = stranger.client_tls(Some(appender));
    let failed = https_client(writer.url(), &untrusting)
        .get_json("/v1/streams")
        .await;
    assert!(failed.is_err(), "{failed:?}");
    let failed = ApiClient::new(format!("http://{}", writer.http_addr()))
        .get_json("/v1/streams")
        .await;
    assert!(failed.is_err(), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readers_http_api_answers_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let writer = writer_with(|_| {}).await;
    let server = ca.server_tls(dir.path(), "reader", None);
    let reader =
        TestReader::spawn_with(&writer, "https-reader", None, |c| c.http.tls = Some(server)).await;
    let base = format!("https://{}", reader.reader().http_addr());
    let status = https_client(base, &ca.client_tls(None))
        .get_json("/v1/status")
        .await
        .unwrap();
    assert_eq!(status["name"], "https-reader", "{status}");
    let plain = reader.client().get_json("/v1/status").await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_follows_a_tls_replication_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server_tls(dir.path(), "writer", None);
    let writer = writer_with(|c| c.replication.tls = Some(server)).await;
    let reader = tls_reader(&writer, "tls-reader", ca.client_tls(None)).await;
    let written = write_rows(&writer, &["events"], 3_000, 100).await;
    assert_reader_has_exactly(&reader, &written, WAIT).await;
    let status = reader.reader().status();
    assert_eq!(status.reconnects, 0);
    assert_eq!(
        status.writer,
        format!("{} (TLS)", writer.replication_addr())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_replication_serves_only_allowed_readers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let other_ca = TestCa::new(dir.path(), "other-ca");
    let server = ca.server_tls(dir.path(), "writer", Some(&ca));
    let writer = writer_with(|c| {
        c.replication.tls = Some(server);
        c.replication.allowed_clients = vec!["reader-1.internal".into(), "CN-Only".into()];
    })
    .await;
    let allowed = ca.client_certificate(dir.path(), "reader-1.internal");
    let good = tls_reader(&writer, "allowed", ca.client_tls(Some(allowed.clone()))).await;
    let without = tls_reader(&writer, "no-certificate", ca.client_tls(None)).await;
    // The name allowed, from a CA the listener does not trust (its own folder: same file
    // names).
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let foreign = tls_reader(
        &writer,
        "other-ca",
        ca.client_tls(Some(
            other_ca.client_certificate(&other_dir, "reader-1.internal"),
        )),
    )
    .await;
    let not_listed = ca.client_certificate(dir.path(), "reader-2.internal");
    let unlisted = tls_reader(
        &writer,
        "not-listed",
        ca.client_tls(Some(not_listed.clone())),
    )
    .await;

    let written = write_rows(&writer, &["events"], 2_000, 100).await;
    assert_reader_has_exactly(&good, &written, WAIT).await;
    assert_eq!(good.reader().status().reconnects, 0);

    refused(&without, 2).await;
    refused(&foreign, 2).await;
    let error = refused(&unlisted, 2).await;
    assert!(error.contains("client certificate not allowed"), "{error}");
    for reader in [&without, &foreign, &unlisted] {
        assert_got_nothing(reader).await;
    }

    // What a refused client is sent, on the wire: the ERROR line, nothing before it.
    let stream = tls_connect(writer.replication_addr(), &ca, Some(&not_listed))
        .await
        .unwrap();
    assert_eq!(
        lines_until_closed(stream).await,
        vec!["ERROR client certificate not allowed".to_owned()]
    );
    let stream = tls_connect(writer.replication_addr(), &ca, Some(&allowed))
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap();
    assert_eq!(first.unwrap().as_deref(), Some("SERVER localhost"));
    // A name in the subject's common name alone counts too (compared without case).
    let cn_only = ca.sign(
        dir.path(),
        "cn-only",
        &[],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stream = tls_connect(writer.replication_addr(), &ca, Some(&cn_only))
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap();
    assert_eq!(first.unwrap().as_deref(), Some("SERVER localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_refuses_a_writer_it_cannot_verify_and_keeps_trying() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let stranger = TestCa::new(dir.path(), "stranger");
    let server = stranger.server_tls(dir.path(), "writer", None);
    let writer = writer_with(|c| c.replication.tls = Some(server)).await;
    let reader = tls_reader(&writer, "careful", ca.client_tls(None)).await;
    write_rows(&writer, &["events"], 200, 100).await;
    let error = refused(&reader, 3).await;
    assert!(error.contains("certificate"), "{error}");
    assert_got_nothing(&reader).await;
    // Named for a host the certificate does not carry: refused too.
    let misnamed = ClientTlsConfig {
        server_name: Some("elsewhere.example".into()),
        ..stranger.client_tls(None)
    };
    let reader = tls_reader(&writer, "misnamed", misnamed).await;
    let error = refused(&reader, 2).await;
    assert!(error.contains("certificate"), "{error}");
    assert_got_nothing(&reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_catches_up_over_https_with_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let http = ca.server_tls(dir.path(), "writer-http", Some(&ca));
    let replication = ca.server_tls(dir.path(), "writer-replication", Some(&ca));
    let writer = writer_with(|c| {
        c.http.tls = Some(http);
        c.replication.tls = Some(replication);
    })
    .await;
    let tls = ca.client_tls(Some(ca.client_certificate(dir.path(), "reader")));
    // Rows written before the reader exists reach it by catch-up only.
    let client = https_client(writer.url(), &tls);
    let mut written = Vec::new();
    for n in 0..20 {
        let rows: Vec<_> = (0..50).map(|i| serde_json::json!([n, i])).collect();
        let tokens = client
            .append("events", rows_body(&rows), false)
            .await
            .unwrap();
        written.extend(tokens.into_iter().zip(rows));
    }
    let reader = tls_reader(&writer, "late", tls).await;
    assert!(reader.config.writer_http.starts_with("https://"));
    let last = written.last().unwrap().0;
    reader.wait_for("events", last, WAIT).await;
    let got = reader.rows("events").await;
    assert_eq!(got.len(), written.len());
    for ((_, token, row), (want_token, want)) in got.iter().zip(&written) {
        assert_eq!(
            (token, row.as_str()),
            (want_token, want.to_string().as_str())
        );
    }
    let metrics = reader.get("/metrics").await.1;
    let fetched = metric(
        &metrics,
        "streamhost_reader_catchup_requests_total{stream=\"events\"}",
    );
    assert!(fetched.is_some_and(|n| n >= 1.0), "{metrics}");
}

/// Writes a new certificate for `server` (another name, so another serial and subject)
/// over its files, as a renewal does.
fn renew(ca: &TestCa, dir: &Path, server: &ServerTlsConfig, name: &str) {
    let renewed = ca.server_tls(dir, name, None);
    // Key first, then certificate: the half-renewed state in between does not load, and the
    // listener keeps the old pair until both are new.
    std::fs::copy(&renewed.private_key_file, &server.private_key_file).unwrap();
    std::fs::copy(&renewed.certificate_file, &server.certificate_file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_reach_new_connections_while_old_ones_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let files = dir.path().join("live");
    std::fs::create_dir(&files).unwrap();
    let server = ca.server_tls(&files, "writer-1", None);
    let first = pem_certificates(&server.certificate_file);
    let config = server.clone();
    let writer = writer_with(|c| c.replication.tls = Some(config)).await;
    let reader = tls_reader(&writer, "long-lived", ca.client_tls(None)).await;
    let written = write_rows(&writer, &["events"], 500, 100).await;
    assert_reader_has_exactly(&reader, &written, WAIT).await;

    let presented = |stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        stream.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let stream = tls_connect(writer.replication_addr(), &ca, None)
        .await
        .unwrap();
    assert_eq!(presented(&stream), first[0]);

    // A broken renewal (not PEM) is passed over: for longer than the listener takes to look
    // at its files again, every new connection still gets the old certificate.
    std::fs::write(&server.certificate_file, "not a certificate\n").unwrap();
    let until = tokio::time::Instant::now() + Duration::from_millis(1_500);
    while tokio::time::Instant::now() < until {
        let stream = tls_connect(writer.replication_addr(), &ca, None)
            .await
            .unwrap();
        assert_eq!(presented(&stream), first[0]);
    }

    renew(&ca, dir.path(), &server, "writer-2");
    let second = pem_certificates(&server.certificate_file);
    assert_ne!(first, second);
    wait_until(
        WAIT,
        "a new connection presenting the new certificate",
        || async {
            let stream = tls_connect(writer.replication_addr(), &ca, None)
                .await
                .unwrap();
            presented(&stream) == second[0]
        },
    )
    .await;

    // The connection opened before the renewal is still the reader's, and still delivers.
    let more = write_rows(&writer, &["events"], 500, 100).await;
    let last = more["events"].last().unwrap().0;
    reader.wait_for("events", last, WAIT).await;
    assert_eq!(reader.rows("events").await.len(), 1_000);
    assert_eq!(reader.reader().status().reconnects, 0);
}
