//! What a replication connection writes (`tcp`'s write half): the streamer's frames, each
//! preceded by a commit-time stamp `PING` when one is due, and single commands, each counted
//! in `replication_commands_out_total`.

use tokio::time::Instant;

use streamhost_proto::ServerCommand;

use super::tcp::ReplicationContext;
use super::tcp_metrics::ReplicationMetrics;
use crate::writer::streamer::Frame;

/// Adds `frame`, after a `PING` with its commit-time stamp when it has one and no `PING` went
/// out for a ping interval (so `PING`s never come closer than Synapse's own).
pub(super) fn add_frame(
    out: &mut Vec<u8>,
    context: &ReplicationContext,
    last_ping: &mut Instant,
    frame: &Frame,
) {
    let metrics = &context.metrics;
    if let Some(stamp) = frame.stamp
        && last_ping.elapsed() >= context.ping_interval
    {
        *last_ping = Instant::now();
        push(
            out,
            metrics,
            &ServerCommand::Ping(streamhost_proto::stamp::encode_stamp(stamp)),
        );
    }
    out.extend_from_slice(&frame.line);
    metrics.commands_out[&frame.name].inc();
}

/// Encodes `command` onto `out` and counts it as sent.
pub(super) fn push(out: &mut Vec<u8>, metrics: &ReplicationMetrics, command: &ServerCommand) {
    if command.encode(out).is_ok() {
        metrics.commands_out[&command.name()].inc();
    }
}
