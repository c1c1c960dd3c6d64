//! A small Prometheus registry: counters and gauges, optionally labelled, rendered as text.
//!
//! Handles are cheap to clone and lock-free to update; hot paths look a labelled handle up
//! once and keep it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Values {
    Counters(RwLock<BTreeMap<Vec<String>, Counter>>),
    Gauges(RwLock<BTreeMap<Vec<String>, Gauge>>),
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    labels: Vec<&'static str>,
    values: Values,
}

/// A labelled family of counters (`name{label="value"}`).
#[derive(Clone, Debug)]
pub struct CounterVec(Arc<Family>);

impl CounterVec {
    /// The counter for these label values (created at zero on first use).
    pub fn with(&self, label_values: &[&str]) -> Counter {
        let Values::Counters(map) = &self.0.values else {
            unreachable!("built as counters")
        };
        lookup(map, label_values)
    }
}

/// A labelled family of gauges.
#[derive(Clone, Debug)]
pub struct GaugeVec(Arc<Family>);

impl GaugeVec {
    /// The gauge for these label values (created at zero on first use).
    pub fn with(&self, label_values: &[&str]) -> Gauge {
        let Values::Gauges(map) = &self.0.values else {
            unreachable!("built as gauges")
        };
        lookup(map, label_values)
    }

    /// Removes the gauge for these label values (a connection that went away).
    pub fn remove(&self, label_values: &[&str]) {
        let Values::Gauges(map) = &self.0.values else {
            unreachable!("built as gauges")
        };
        let key: Vec<String> = label_values.iter().map(|v| v.to_string()).collect();
        map.write().expect("metrics lock").remove(&key);
    }
}

fn lookup<T: Clone + Default>(map: &RwLock<BTreeMap<Vec<String>, T>>, label_values: &[&str]) -> T {
    let key: Vec<String> = label_values.iter().map(|v| v.to_string()).collect();
    if let Some(v) = map.read().expect("metrics lock").get(&key) {
        return v.clone();
    }
    map.write()
        .expect("metrics lock")
        .entry(key)
        .or_default()
        .clone()
}

/// Every metric of one process, rendered by `GET /metrics`.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<Family>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        labels: &[&'static str],
        values: Values,
    ) -> Arc<Family> {
        let family = Arc::new(Family {
            name: format!("streamhost_{name}"),
            help: help.to_owned(),
            labels: labels.to_vec(),
            values,
        });
        self.families
            .lock()
            .expect("metrics lock")
            .push(family.clone());
        family
    }

    /// Registers an unlabelled counter.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        CounterVec(self.register(name, help, &[], Values::Counters(RwLock::default()))).with(&[])
    }

    /// Registers an unlabelled gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        GaugeVec(self.register(name, help, &[], Values::Gauges(RwLock::default()))).with(&[])
    }

    /// Registers a labelled counter family.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&'static str]) -> CounterVec {
        CounterVec(self.register(name, help, labels, Values::Counters(RwLock::default())))
    }

    /// Registers a labelled gauge family.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&'static str]) -> GaugeVec {
        GaugeVec(self.register(name, help, labels, Values::Gauges(RwLock::default())))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in self.families.lock().expect("metrics lock").iter() {
            let kind = match family.values {
                Values::Counters(_) => "counter",
                Values::Gauges(_) => "gauge",
            };
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            let samples: Vec<(Vec<String>, String)> = match &family.values {
                Values::Counters(map) => map
                    .read()
                    .expect("metrics lock")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get().to_string()))
                    .collect(),
                Values::Gauges(map) => map
                    .read()
                    .expect("metrics lock")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get().to_string()))
                    .collect(),
            };
            for (label_values, value) in samples {
                out.push_str(&family.name);
                if !family.labels.is_empty() {
                    out.push('{');
                    for (i, (label, v)) in family.labels.iter().zip(&label_values).enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let escaped = v
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n");
                        let _ = write!(out, "{label}=\"{escaped}\"");
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {value}");
            }
        }
        out
    }
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
}
