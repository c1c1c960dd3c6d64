//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), not part of the API.
//!
//! [`crate::RowJson::parse`] takes a fast path when its scanner finds the text already
//! canonical and a rewriting parser otherwise; the JSON target compares the two paths, which
//! the public API cannot reach separately.

use crate::json::JsonError;

/// Whether the fast scanner accepts `text` as already canonical (returned unchanged).
pub fn json_is_canonical(text: &[u8]) -> bool {
    crate::json::scan::is_canonical(text)
}

/// The rewriting parser alone: `text` parsed as Python's `json.loads` would and re-serialised
/// as Synapse's `json_encoder` would, without the scanner's fast path.
pub fn json_rewrite(text: &[u8]) -> Result<Vec<u8>, JsonError> {
    crate::json::rewrite::rewrite(text)
}
