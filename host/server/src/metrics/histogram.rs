//! Histograms in seconds on atomics: an observation is one atomic add on its bucket and a
//! compare-and-swap on the sum (`prometheus-client`'s own histogram takes a mutex).
//!
//! The count rendered is the sum of the buckets read, so a scrape racing an observation is
//! still consistent (`+Inf` bucket = count); the sum may then lag by that observation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::Labelled;

/// A histogram's bucket upper bounds, in seconds (the `+Inf` bucket is implicit).
#[derive(Clone, Copy, Debug)]
pub struct Buckets(&'static [f64]);

impl Buckets {
    /// Local work: a commit, a plugin batch, a query, an HTTP call on the same host
    /// (100 µs to 10 s).
    pub const FAST: Buckets = Buckets(&[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]);

    /// End to end across processes, where backlogs show: write to apply, a notification
    /// reaching a waiting client (1 ms to 2 minutes).
    pub const END_TO_END: Buckets = Buckets(&[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0,
    ]);

    /// Calls over the network to someone else's server: pushes, catch-up requests
    /// (1 ms to 60 s, the longest timeouts).
    pub const REMOTE: Buckets = Buckets(&[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]);

    pub(super) fn histogram(self) -> Histogram {
        Histogram(Arc::new(Core {
            bounds: self.0,
            buckets: (0..=self.0.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        self.histogram()
    }
}

#[derive(Debug)]
struct Core {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`; each counts only its own observations.
    buckets: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

/// Observations of a duration, in seconds.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<Core>);

impl Histogram {
    /// Records `seconds` (a negative or NaN value counts as 0).
    pub fn observe(&self, seconds: f64) {
        let v = if seconds.is_nan() {
            0.0
        } else {
            seconds.max(0.0)
        };
        let core = &*self.0;
        let bucket = core.bounds.partition_point(|bound| *bound < v);
        core.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = core
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// Records the time since `start`.
    pub fn observe_since(&self, start: Instant) {
        self.observe(start.elapsed().as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let core = &*self.0;
        let counts: Vec<(f64, u64)> = core
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(core.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = counts.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(core.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &counts, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A labelled family of histograms sharing their buckets.
pub type HistogramVec = Labelled<Histogram, Buckets>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Buckets::FAST.histogram();
        h.observe(0.0001); // on a bound: that bucket
        h.observe(0.0002);
        h.observe(-1.0); // clamped to 0
        h.observe(1000.0); // +Inf
        let counts: Vec<u64> =
            h.0.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(*counts.last().unwrap(), 1);
        assert_eq!(h.count(), 4);
        let sum = f64::from_bits(h.0.sum.load(Ordering::Relaxed));
        assert!((sum - 1000.0003).abs() < 1e-9, "{sum}");
    }
}
