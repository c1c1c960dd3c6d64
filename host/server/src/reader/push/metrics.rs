//! The push metrics on the reader's `/metrics`, by destination, with the send latency as a
//! histogram in seconds.

use crate::metrics::{Buckets, CounterVec, GaugeVec, HistogramVec, Registry};

/// Counters and gauges of the delivery worker.
#[derive(Clone)]
pub(crate) struct PushMetrics {
    pub(crate) sent: CounterVec,
    pub(crate) failed: CounterVec,
    pub(crate) retried: CounterVec,
    pub(crate) dead: CounterVec,
    pub(crate) depth: GaugeVec,
    pub(crate) oldest_age: GaugeVec,
    pub(crate) send_duration: HistogramVec,
}

impl PushMetrics {
    pub(crate) fn new(registry: &Registry) -> PushMetrics {
        let by = &["destination"];
        PushMetrics {
            sent: registry.counter_vec("pushes_sent_total", "Pushes delivered (answered 2xx).", by),
            failed: registry.counter_vec(
                "push_attempts_failed_total",
                "Attempts that failed: connection errors, timeouts, 429, 5xx, other statuses.",
                by,
            ),
            retried: registry.counter_vec(
                "pushes_retried_total",
                "Failed attempts whose push was scheduled again (with back-off).",
                by,
            ),
            dead: registry.counter_vec(
                "pushes_dead_total",
                "Pushes moved to the dead pushes (an answer not worth retrying, or \
                 max_attempts or max_age_s passed).",
                by,
            ),
            depth: registry.gauge_vec("push_outbox_depth", "Pushes waiting in the outbox.", by),
            oldest_age: registry.gauge_vec(
                "push_outbox_oldest_age_seconds",
                "Age of the oldest push waiting in the outbox (0 when it is empty).",
                by,
            ),
            send_duration: registry.histogram_vec(
                "push_send_duration_seconds",
                "Time of one push attempt: the request to the end of the answer, or the \
                 timeout.",
                by,
                Buckets::REMOTE,
            ),
        }
    }
}
