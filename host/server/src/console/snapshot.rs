//! `GET /console/snapshot`: what the console shows, as one JSON object (also each event of
//! `GET /console/events`), from the process's [`Source`]: the writer's is
//! `writer/console.rs`, a reader's `reader/console.rs`.
//!
//! Rates are the page's work: it divides the change of a position (or of rows applied) by the
//! change of `at_ms` between two snapshots.

use axum::extract::State;
use axum::http::StatusCode;

use super::Console;
use crate::http::{Response, json as json_answer};

/// `GET /console/snapshot`.
pub(super) async fn answer(State(console): State<Console>) -> Response {
    json_answer(StatusCode::OK, &console.source.snapshot())
}
