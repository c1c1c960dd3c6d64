//! [`Inbound`]: what every upstream transport (TCP, Redis, a live Synapse) feeds the
//! processor, in wire order, through one bounded channel.

use streamhost_proto::{Position, Rdata};

/// Identifies one upstream session (counting from 1) so the processor can tell whose
/// commands it is applying.
pub(crate) type ConnId = u64;

/// What a transport sends the processor, in wire order.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A new connection; its commands follow.
    Connected(ConnId),
    /// An `RDATA` line.
    Rdata(ConnId, Rdata),
    /// A `POSITION` line.
    Position(ConnId, Position),
    /// The connection is gone; nothing more of it follows.
    Disconnected(ConnId),
}
