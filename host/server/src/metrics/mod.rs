//! Every metric of a process on the `prometheus-client` crate, behind a thin facade:
//! counters, gauges and histograms, optionally labelled, rendered in the Prometheus text
//! format (0.0.4) or in OpenMetrics for a scraper that asks for it (see [`Format`]).
//!
//! Every name gets the `streamhost_` prefix; a counter's name is given with its `_total`
//! (the facade strips it, the encoders add it back). Histograms are in seconds. Beside the
//! registered metrics every registry renders `streamhost_build_info` and the standard
//! `process_*` metrics ([`process`]).
//!
//! Handles are cheap to clone and lock-free to update (a counter, a gauge: one atomic add;
//! a histogram: two atomic adds and a compare-and-swap for the sum); hot paths look a
//! labelled handle up once and keep it.

mod histogram;
mod process;

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};

pub use self::histogram::{Buckets, Histogram, HistogramVec};

/// A label set: each label's name with its value.
type Labels = Vec<(&'static str, String)>;

/// The prefix of every metric this crate registers.
const PREFIX: &str = "streamhost_";

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(prometheus_client::metrics::counter::Counter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(prometheus_client::metrics::gauge::Gauge);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.set(v);
    }

    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.inc_by(n);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

impl TypedMetric for Gauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Gauge {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A gauge with a fractional value (seconds).
#[derive(Clone, Debug, Default)]
pub struct FloatGauge(prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>);

impl FloatGauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.set(v);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

impl TypedMetric for FloatGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for FloatGauge {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A labelled family of metrics of one kind (`name{label="value"}`), created at zero on
/// first use of their label values.
#[derive(Clone, Debug)]
pub struct Labelled<M, C = fn() -> M> {
    family: Family<Labels, M, C>,
    labels: Arc<[&'static str]>,
}

impl<M: Clone, C: prometheus_client::metrics::family::MetricConstructor<M>> Labelled<M, C> {
    fn labels(&self, label_values: &[&str]) -> Labels {
        debug_assert_eq!(label_values.len(), self.labels.len(), "label count");
        self.labels
            .iter()
            .zip(label_values)
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect()
    }

    /// The metric for these label values (created at zero on first use).
    pub fn with(&self, label_values: &[&str]) -> M {
        self.family.get_or_create_owned(&self.labels(label_values))
    }
}

/// A labelled family of counters.
pub type CounterVec = Labelled<Counter>;

/// A labelled family of gauges.
pub type GaugeVec = Labelled<Gauge>;

/// A labelled family of fractional gauges.
pub type FloatGaugeVec = Labelled<FloatGauge>;

/// How `GET /metrics` renders: chosen from the request's `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (what `curl` and older scrapers get).
    Text,
    /// OpenMetrics 1.0 text (asked for by Prometheus itself); ends with `# EOF`.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when `accept` names it, else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Every metric of one process, rendered by `GET /metrics`.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<prometheus_client::registry::Registry>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Registry {
    /// A registry holding only `streamhost_build_info` and the process metrics.
    pub fn new() -> Registry {
        let mut inner = prometheus_client::registry::Registry::default();
        // OpenMetrics' info type renders as `streamhost_build_info{...} 1`.
        inner.register(
            format!("{PREFIX}build"),
            "The running build: its version and package",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("package", env!("CARGO_PKG_NAME")),
            ]),
        );
        inner.register_collector(Box::new(process::ProcessCollector));
        Registry {
            inner: Mutex::new(inner),
        }
    }

    fn add(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        // The crate ends every help text with a full stop of its own.
        let help = help.strip_suffix('.').unwrap_or(help);
        self.inner
            .lock()
            .expect("metrics lock")
            .register(format!("{PREFIX}{name}"), help, metric);
    }

    fn vec<M, C>(
        &self,
        name: &str,
        help: &str,
        labels: &[&'static str],
        constructor: C,
    ) -> Labelled<M, C>
    where
        Family<Labels, M, C>: prometheus_client::registry::Metric + Clone,
    {
        let family = Family::new_with_constructor(constructor);
        self.add(name, help, family.clone());
        Labelled {
            family,
            labels: labels.into(),
        }
    }

    /// Registers an unlabelled counter (`name` ends with `_total`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.add(counter_name(name), help, counter.clone());
        counter
    }

    /// Registers an unlabelled gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.add(name, help, gauge.clone());
        gauge
    }

    /// Registers an unlabelled histogram with `buckets` (upper bounds in seconds).
    pub fn histogram(&self, name: &str, help: &str, buckets: Buckets) -> Histogram {
        let histogram = buckets.histogram();
        self.add(name, help, histogram.clone());
        histogram
    }

    /// Registers a labelled counter family (`name` ends with `_total`).
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&'static str]) -> CounterVec {
        self.vec(
            counter_name(name),
            help,
            labels,
            Counter::default as fn() -> Counter,
        )
    }

    /// Registers a labelled gauge family.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&'static str]) -> GaugeVec {
        self.vec(name, help, labels, Gauge::default as fn() -> Gauge)
    }

    /// Registers a labelled family of fractional gauges.
    pub fn float_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&'static str],
    ) -> FloatGaugeVec {
        self.vec(
            name,
            help,
            labels,
            FloatGauge::default as fn() -> FloatGauge,
        )
    }

    /// Registers a labelled histogram family with `buckets` (upper bounds in seconds).
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&'static str],
        buckets: Buckets,
    ) -> HistogramVec {
        self.vec(name, help, labels, buckets)
    }

    /// The Prometheus text exposition (0.0.4) of every metric.
    pub fn render(&self) -> String {
        self.render_as(Format::Text)
    }

    /// Every metric in `format`.
    pub fn render_as(&self, format: Format) -> String {
        let inner = self.inner.lock().expect("metrics lock");
        let mut out = String::new();
        let encoded = match format {
            Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &inner),
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &inner),
        };
        encoded.expect("writing to a String cannot fail");
        out
    }
}

/// A counter's name without its `_total`, which the encoders add.
fn counter_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters_and_gauges() {
        let registry = Registry::new();
        let rows = registry.counter_vec("rows_total", "Rows.", &["stream"]);
        rows.with(&["events"]).add(3);
        rows.with(&["a\"b"]).inc();
        registry.gauge("connections", "Open connections.").set(2);
        let text = registry.render();
        assert!(
            text.contains("# TYPE streamhost_rows_total counter"),
            "{text}"
        );
        assert!(
            text.contains("streamhost_rows_total{stream=\"events\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("streamhost_rows_total{stream=\"a\\\"b\"} 1"),
            "{text}"
        );
        assert!(text.contains("streamhost_connections 2"), "{text}");
    }

    #[test]
    fn renders_build_info_process_metrics_and_histograms_in_both_formats() {
        let registry = Registry::new();
        let took = registry.histogram_vec(
            "append_duration_seconds",
            "Appends.",
            &["stream"],
            Buckets::FAST,
        );
        took.with(&["events"]).observe(0.003);
        took.with(&["events"]).observe(100.0);
        let text = registry.render_as(Format::Text);
        assert!(text.contains("streamhost_build_info{"), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(
            text.contains("streamhost_append_duration_seconds_count{stream=\"events\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "streamhost_append_duration_seconds_bucket{le=\"0.005\",stream=\"events\"} 1"
            ) || text.contains(
                "streamhost_append_duration_seconds_bucket{stream=\"events\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("le=\"+Inf\"} 2"),
            "the overflow bucket counts everything: {text}"
        );
        let open = registry.render_as(Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("# TYPE streamhost_build info"), "{open}");
    }

    #[test]
    fn negotiates_openmetrics_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
