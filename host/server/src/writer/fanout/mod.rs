//! Where the writer's commands go. The streamer encodes each command once, as a [`Frame`],
//! into the ring (a broadcast channel); every fan-out subscribes to the ring and sends what
//! it reads:
//! - [`tcp`]: the replication listener. Each connection subscribes when it opens (before
//!   `SERVER`, so it misses no frame) and writes every frame to its peer; a peer more than
//!   `max_pending_commands` behind is closed with `ERROR Failed to keep up`.
//! - `tcp_metrics`: the listener's metrics, labelled by the client's `NAME`; `tcp_out`: what
//!   a connection writes (frames with their commit-time stamp `PING`s, counted commands).
//! - [`peers`]: the open connections with the `NAME` each peer gave, for the console.
//! - [`redis`]: with `[writer.redis]`, the publisher subscribes at every (re)connect and
//!   publishes each frame's bare line on channel `<server_name>`, holding a stream's lines
//!   back until its announcement has gone through.
//!
//! Both ask the streamer to announce positions through [`StreamerSignals`] (`REPLICATE`
//! from a peer, and the publisher's own (re)connect). The streamer waits for the slowest
//! subscriber, so a fan-out that stops reading holds it up until it is given up.

pub(crate) mod peers;
pub(crate) mod redis;
pub(crate) mod tcp;
mod tcp_metrics;
mod tcp_out;

use std::sync::Arc;

use tokio::sync::broadcast;

use super::streamer::{Frame, StreamerSignals};

/// The streamer's ring and signals, which every fan-out reads.
pub(crate) struct Ring {
    /// The streamer's encoded frames.
    pub(crate) frames: broadcast::Sender<Frame>,
    /// Pokes and announce requests.
    pub(crate) signals: Arc<StreamerSignals>,
    /// Unread frames at which the streamer pauses.
    pub(crate) high_water: usize,
}

impl Ring {
    /// The ring for peers allowed `max_pending` commands each.
    pub(crate) fn new(max_pending: usize) -> Ring {
        // The streamer pauses at twice the pending cap and a peer is closed past the cap, so
        // the ring (four times the cap) never overwrites frames a connected peer has not read.
        let high_water = max_pending * 2;
        let (frames, _) = broadcast::channel((high_water * 2).max(1024));
        Ring {
            frames,
            signals: Arc::new(StreamerSignals::default()),
            high_water,
        }
    }
}
