//! Synapse's replication line protocol as typed Rust values, with no sockets and no database.
//!
//! The wire format is specified in `docs/replication.md`. Every other part of Streamhost (the
//! writer's replication server, the reader's client, `streamhost tail`, the tests) decodes and
//! encodes through this crate, so there is exactly one codec.
//!
//! File map:
//! - [`command`]: the fifteen commands, the direction-typed [`ServerCommand`] and
//!   [`ClientCommand`] enums and the all-directions [`Command`] (Redis has no direction);
//!   `command/decode.rs`, `command/encode.rs` and `command/direction.rs` hold the codec.
//! - [`json`]: [`RowJson`], JSON validated and re-serialised exactly as Synapse's `json_encoder`
//!   writes it (compact, non-ASCII escaped): a fast canonical scan (`json/scan.rs`) with a
//!   rewriting parser behind it (`json/rewrite.rs`).
//! - [`framing`]: [`LineFramer`], LF framing with the 16,384-byte line cap.
//! - [`stamp`]: commit-time stamps, a Streamhost writer's `PING` text (write-to-apply latency).
//! - [`token`]: [`Token`] and the stream / instance name newtypes.
//! - `pyint`: Python `int()` parsing, which Synapse uses for every integer field.
//! - `fuzzing`: the JSON scanner's and rewriter's own entry points, for `fuzz/` only.

pub mod command;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod json;
mod pyint;
pub mod stamp;
pub mod token;

pub use command::{
    ClientCommand, Command, CommandName, DecodeError, EncodeError, FederationAck, LockReleased,
    Position, Rdata, ServerCommand, UserIp, UserSync, UserSyncState, is_blank,
};
pub use framing::{LineFramer, LineTooLong};
pub use json::{JsonError, RowJson};
pub use token::{InstanceName, NameError, StreamName, Token};

/// Longest line, in bytes and not counting the `\n`, that either side may send or accept.
///
/// Twisted's `LineOnlyReceiver.MAX_LENGTH`, which Synapse does not override. Fixed by the
/// protocol, so not configurable.
pub const MAX_LINE_LENGTH: usize = 16_384;
