//! The writer's append body (`POST /v1/streams/{stream}/rows`): a JSON array of rows, each
//! made canonical. `data[0]` picks the row limit (1 to 16), the rest is the body. Accepted:
//! at most that many rows, each canonical, as many as serde_json sees in the array. Refused:
//! 400 or 413, never anything else.
#![no_main]

use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use streamhost_proto::RowJson;
use streamhost_server::fuzzing::append_body;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, body)) = data.split_first() else {
        return;
    };
    let max_rows = usize::from(limit) % 16 + 1;
    match append_body(body, max_rows) {
        Ok(rows) => {
            assert!(rows.len() <= max_rows, "more rows than the limit");
            let raw: Vec<&RawValue> = serde_json::from_slice(body).expect("an accepted array");
            assert_eq!(raw.len(), rows.len());
            for row in &rows {
                assert_eq!(
                    RowJson::parse(row.as_bytes()).as_ref(),
                    Ok(row),
                    "not canonical"
                );
            }
        }
        Err(e) => assert!(
            matches!(
                e.status,
                StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
            ),
            "{} {}",
            e.status,
            e.message
        ),
    }
});
