//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), not part of the API: one
//! function per private parser a target drives, each doing exactly what the server does with
//! the untrusted input.

use bytes::BytesMut;
use streamhost_proto::{InstanceName, RowJson, StreamName, Token};

use crate::http::{ApiError, Params};
use crate::reader::upstream::synapse::rows;
use crate::redis::resp::take_push;
use crate::writer::api::{parse_rows, token_param};

/// The writer's append body (`POST /v1/streams/{stream}/rows`) for stream `events` of
/// instance `master`: a JSON array of at most `max_rows` rows, each made canonical.
pub fn append_body(body: &[u8], max_rows: usize) -> Result<Vec<RowJson>, ApiError> {
    let stream = StreamName::new("events").expect("a valid stream name");
    let instance = InstanceName::new("master").expect("a valid instance name");
    parse_rows(body, &stream, &instance, max_rows)
}

/// The writer's catch-up parameters (`from_token`, `upto_token`) from a query's decoded
/// parameters.
pub fn catch_up_tokens(params: &Params) -> (Result<Token, ApiError>, Result<Token, ApiError>) {
    (
        token_param(params, "from_token"),
        token_param(params, "upto_token"),
    )
}

/// The streams whose Synapse rows [`synapse_row`] converts.
pub fn synapse_streams() -> Vec<&'static str> {
    rows::converted_streams().collect()
}

/// A live Synapse's row of `stream` as the object plugins see (a reader following Synapse).
pub fn synapse_row(stream: &StreamName, row: &RowJson) -> Result<RowJson, String> {
    rows::to_object(stream, row).map_err(|e| e.reason)
}

/// What a subscribed Redis connection takes off `chunks` read one after another (`redis/resp.rs`):
/// each push (a message's body or another reply) as its debug text, and the error that ended
/// the connection, if one did.
pub fn redis_pushes(chunks: &[&[u8]]) -> (Vec<String>, Option<String>) {
    let mut buffer = BytesMut::new();
    let mut taken = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match take_push(&mut buffer) {
                Ok(Some(push)) => taken.push(format!("{push:?}")),
                Ok(None) => break,
                Err(e) => return (taken, Some(e.to_string())),
            }
        }
    }
    (taken, None)
}
