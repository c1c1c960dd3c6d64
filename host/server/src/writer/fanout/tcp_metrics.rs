//! The replication server's metrics (`tcp`): commands in and out, errors, and the series
//! labelled by the client's `NAME` (`unnamed` until it sends one), to which each connection
//! adds its share and takes it back when it moves to another name or ends.

use std::collections::HashMap;

use streamhost_proto::CommandName;

use crate::metrics::{Counter, CounterVec, Gauge, GaugeVec, Registry};

/// The replication server's metrics.
pub struct ReplicationMetrics {
    pub(super) connections: Gauge,
    pub(super) commands_in: HashMap<CommandName, Counter>,
    pub(super) commands_out: HashMap<CommandName, Counter>,
    pub(super) errors: CounterVec,
    pub(super) send_buffer: GaugeVec,
    pub(super) by_name: GaugeVec,
}

impl ReplicationMetrics {
    /// Registers the metrics.
    pub fn register(registry: &Registry) -> ReplicationMetrics {
        let commands_in = registry.counter_vec(
            "replication_commands_in_total",
            "Replication commands received, by command.",
            &["command"],
        );
        let commands_out = registry.counter_vec(
            "replication_commands_out_total",
            "Replication commands sent, by command.",
            &["command"],
        );
        ReplicationMetrics {
            connections: registry.gauge("replication_connections", "Open replication connections."),
            commands_in: CommandName::ALL
                .iter()
                .map(|n| (*n, commands_in.with(&[n.as_str()])))
                .collect(),
            commands_out: CommandName::ALL
                .iter()
                .map(|n| (*n, commands_out.with(&[n.as_str()])))
                .collect(),
            errors: registry.counter_vec(
                "replication_errors_total",
                "Replication connections closed with ERROR, by reason.",
                &["reason"],
            ),
            send_buffer: registry.gauge_vec(
                "replication_send_buffer_depth",
                "Commands waiting to be written to the connections of a client, by the name \
                 it gave in NAME (`unnamed` before it does); connections sharing a name add up.",
                &["name"],
            ),
            by_name: registry.gauge_vec(
                "replication_client_connections",
                "Open replication connections by the client's NAME (`unnamed` before it \
                 sends one).",
                &["name"],
            ),
        }
    }
}

/// The label of a connection's series until the client sends `NAME`.
pub(super) const UNNAMED: &str = "unnamed";

/// A connection's share of its client's send-buffer series: what it added, taken back when
/// it moves to another name or ends.
pub(super) struct DepthShare {
    pub(super) gauge: Gauge,
    pub(super) shown: i64,
}

impl DepthShare {
    /// Sets this connection's depth.
    pub(super) fn set(&mut self, depth: i64) {
        self.gauge.add(depth - self.shown);
        self.shown = depth;
    }

    /// Moves this connection's share to `gauge` (the client sent `NAME`).
    pub(super) fn rename(&mut self, gauge: Gauge) {
        self.gauge.add(-self.shown);
        gauge.add(self.shown);
        self.gauge = gauge;
    }
}

impl Drop for DepthShare {
    fn drop(&mut self) {
        self.gauge.add(-self.shown);
    }
}
