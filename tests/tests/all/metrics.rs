//! Metrics as an operator scrapes them (`docs/metrics.md`): `streamhost demo` with plugins runs
//! as a real process; its writer's and a reader's `/metrics` are scraped over HTTP in both
//! formats until every histogram has observations, and each whole scrape must be accepted by
//! a third-party parser (`openmetrics-parser`: strict OpenMetrics 1.0, and the Prometheus
//! text format). A late reader the test starts beside the demo (real sockets, in this
//! process) adds what the demo never does: a catch-up, served by the demo's writer, and
//! pushes to a receiver. Every metric named in `deploy/grafana/` and `deploy/prometheus/`
//! must be in those scrapes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openmetrics_parser::{
    MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusType, PrometheusValue,
};
use serde_json::Value;
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::push_receiver::PushReceiver;
use streamhost_integration_tests::{TestReader, TestWriter, metric, rows_body, wait_until};
use streamhost_server::client::ApiClient;
use streamhost_server::config::DestinationConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

/// What Prometheus sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
                                 application/openmetrics-text;version=0.0.1;q=0.75,\
                                 text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The demo's room its plugins answer about (`host/cli/src/tools/demo`).
const ROOM: &str = "!room0:demo.streamhost";

/// A running `streamhost demo` and the addresses its banner printed.
struct Demo {
    _child: Child,
    writer_http: SocketAddr,
    replication: SocketAddr,
    readers: Vec<SocketAddr>,
}

impl Demo {
    /// Starts the demo with the plugins in `plugins`, reading its banner from stdout.
    async fn start(plugins: &PluginFolder) -> Demo {
        let mut child = Command::new(BINARY)
            .args(["demo", "--rate", "200", "--plugins"])
            .arg(plugins.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the demo");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut writer, mut readers) = (None, Vec::new());
        let banner = async {
            while writer.is_none() || readers.len() < 2 {
                let line = lines
                    .next_line()
                    .await
                    .expect("read the banner")
                    .expect("the demo ended before its banner");
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["writer", http, "replication", replication] => {
                        writer = Some((address(http), replication.parse().expect("address")));
                    }
                    ["reader", status] => readers.push(address(status)),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), banner)
            .await
            .expect("the demo's banner within 60 s");
        // Keep draining stdout so the demo never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (writer_http, replication) = writer.expect("writer line");
        Demo {
            _child: child,
            writer_http,
            replication,
            readers,
        }
    }
}

/// The address in `http://ADDR/...`.
fn address(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").expect("http URL");
    rest.split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `GET /metrics` with `accept`: the content type and the body.
async fn scrape(addr: SocketAddr, accept: &str) -> (String, String) {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .expect("a content type");
    (content_type, body.to_owned())
}

/// One scrape, parsed.
struct Scrape {
    exposition: MetricsExposition<OpenMetricsType, OpenMetricsValue>,
}

impl Scrape {
    /// Scrapes `addr` in both formats; each must parse in full and offer the same series
    /// names. The two scrapes are moments apart, and a labelled family appears with its first
    /// observation, which can land between them: a pair that differs is taken again, a few
    /// times, before it counts as a difference.
    async fn of(addr: SocketAddr) -> Scrape {
        const ATTEMPTS: usize = 5;
        let mut attempt = 1;
        loop {
            let (scrape, prometheus) = Scrape::both(addr).await;
            if scrape.sample_names() == prometheus || attempt == ATTEMPTS {
                assert_eq!(scrape.sample_names(), prometheus, "{addr}");
                return scrape;
            }
            attempt += 1;
        }
    }

    /// One OpenMetrics scrape, parsed, and the series names of a Prometheus text scrape
    /// taken just after it.
    async fn both(addr: SocketAddr) -> (Scrape, BTreeSet<String>) {
        let (content_type, text) = scrape(addr, PROMETHEUS_ACCEPT).await;
        assert_eq!(
            content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "{addr}"
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("OpenMetrics from {addr} rejected: {e:?}\n{text}"));
        let (content_type, plain) = scrape(addr, "*/*").await;
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{addr}"
        );
        let prometheus = openmetrics_parser::prometheus::parse_prometheus(&plain)
            .unwrap_or_else(|e| panic!("Prometheus text from {addr} rejected: {e:?}\n{plain}"));
        (Scrape { exposition }, prometheus_names(&prometheus))
    }

    /// Observations of every histogram family, summed over its series.
    fn histogram_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (name, family) in &self.exposition.families {
            if family.family_type != OpenMetricsType::Histogram {
                continue;
            }
            let total = family
                .iter_samples()
                .map(|sample| match &sample.value {
                    OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0),
                    other => panic!("{name}: a histogram holds {other:?}"),
                })
                .sum();
            counts.insert(name.clone(), total);
        }
        counts
    }

    /// The sample names this scrape offers (a histogram's `_bucket`, `_sum`, `_count`; a
    /// counter's `_total`), as PromQL sees them.
    fn sample_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, family) in &self.exposition.families {
            match family.family_type {
                OpenMetricsType::Histogram => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                OpenMetricsType::Counter => {
                    names.insert(format!("{name}_total"));
                }
                OpenMetricsType::Info => {
                    names.insert(format!("{name}_info"));
                }
                _ => {
                    names.insert(name.clone());
                }
            }
        }
        names
    }
}

/// The series names of a Prometheus-text scrape, as [`Scrape::sample_names`] gives them.
fn prometheus_names(
    exposition: &MetricsExposition<PrometheusType, PrometheusValue>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, family) in &exposition.families {
        if family.family_type == PrometheusType::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.clone());
        }
    }
    names
}

/// Families whose total observations are 0 in every one of `scrapes`.
fn silent(scrapes: &[&Scrape]) -> BTreeSet<String> {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for scrape in scrapes {
        for (name, count) in scrape.histogram_counts() {
            *totals.entry(name).or_default() += count;
        }
    }
    totals
        .into_iter()
        .filter(|(_, count)| *count == 0)
        .map(|(name, _)| name)
        .collect()
}

/// Every metric name in a PromQL expression (`streamhost_...`, `process_...`).
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(start) = ["streamhost_", "process_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let preceded = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            into.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
}

/// The PromQL of the dashboard's panels and of the alert rules.
fn deploy_expressions() -> Vec<(String, String)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/streamhost-dashboard.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            exprs.push((format!("panel {:?}", panel["title"]), expr.to_owned()));
        }
    }
    let alerts: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml"))
            .expect("the alert rules"),
    )
    .expect("the alert rules are YAML");
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert's name");
            let expr = rule["expr"].as_str().expect("an alert's expr");
            exprs.push((format!("alert {name}"), expr.to_owned()));
        }
    }
    exprs
}

#[test]
fn metric_names_are_found_in_promql() {
    let mut names = BTreeSet::new();
    metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(streamhost_append_duration_seconds_bucket[5m]))) \
         / on() process_open_fds and nostreamhost_x",
        &mut names,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "streamhost_append_duration_seconds_bucket".to_owned(),
            "process_open_fds".to_owned()
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_demo_serves_every_histogram_with_observations_to_a_strict_parser() {
    let plugins = PluginFolder::with(&["room-timeline", "notifier", "stream-stats", "webhook"]);
    // The demo grants every plugin what it asks; its readers have no push destination, so
    // the webhook plugin's pushes go nowhere there: the late reader below has one.
    let demo_plugins = PluginFolder::with(&["room-timeline", "notifier", "stream-stats"]);
    let demo = Demo::start(&demo_plugins).await;
    let reader = demo.readers[0];
    let reader_client = ApiClient::new(format!("http://{reader}"));

    // Rows first, so the late reader has something to catch up on.
    let writer_client = ApiClient::new(format!("http://{}", demo.writer_http));
    wait_until(Duration::from_secs(30), "50 rows on events", || async {
        let Ok(streams) = writer_client.get_json("/v1/streams").await else {
            return false;
        };
        streams["streams"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == "events"))
            .and_then(|events| events["position"].as_i64())
            .is_some_and(|position| position > 50)
    })
    .await;
    let receiver = PushReceiver::start().await;
    let dir = plugins.path().to_path_buf();
    let url = receiver.url();
    let late = TestReader::spawn_to(
        demo.replication,
        format!("http://{}", demo.writer_http),
        "late",
        None,
        move |config| {
            config.plugins.dir = Some(dir);
            config.plugins.grants = grants_for(&["webhook"]);
            config.plugins.compile_cache = Some(concat!(env!("OUT_DIR"), "/compiled").into());
            config.destinations.insert(
                "webhook".into(),
                DestinationConfig {
                    url,
                    ..DestinationConfig::default()
                },
            );
        },
    )
    .await;
    let late_addr = late.reader().http_addr();

    // Every histogram family present has observations, and these in particular: what only
    // the demo's writer and own reader show (appends, write-to-apply from its writer's
    // stamps, the plugins' batches, queries and notifications) and what the late reader adds
    // (a catch-up served by the demo's writer, pushes).
    let writer_needs = [
        "streamhost_append_duration_seconds",
        "streamhost_catchup_duration_seconds",
    ];
    let own_needs = [
        "streamhost_reader_write_to_apply_seconds",
        "streamhost_plugin_batch_duration_seconds",
        "streamhost_plugin_query_duration_seconds",
        "streamhost_plugin_notification_delivery_seconds",
    ];
    let late_needs = [
        "streamhost_reader_catchup_duration_seconds",
        "streamhost_push_send_duration_seconds",
    ];
    let unobserved = |scrape: &Scrape, needs: &[&str]| -> Vec<String> {
        let counts = scrape.histogram_counts();
        needs
            .iter()
            .filter(|family| counts.get(**family).is_none_or(|n| *n == 0))
            .map(|family| family.to_string())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let (writer, readers) = loop {
        // A query and a notification each round, on the demo's first reader.
        let query = format!(
            "/v1/query/room-timeline/timeline?room={}",
            ROOM.replace('!', "%21").replace(':', "%3A")
        );
        let _ = reader_client.get_json(&query).await;
        let _ = reader_client
            .get_json("/v1/notifications?topics=room:%21room0%3Ademo.streamhost&timeout_ms=1000")
            .await;
        let writer = Scrape::of(demo.writer_http).await;
        let readers = [Scrape::of(reader).await, Scrape::of(late_addr).await];
        let mut waiting: Vec<String> = silent(&[&writer]).into_iter().collect();
        waiting.extend(silent(&[&readers[0], &readers[1]]));
        waiting.extend(unobserved(&writer, &writer_needs));
        waiting.extend(unobserved(&readers[0], &own_needs));
        waiting.extend(unobserved(&readers[1], &late_needs));
        if waiting.is_empty() {
            break (writer, readers);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "histograms without observations after 90 s: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    for scrape in [&writer, &readers[0]] {
        let names = scrape.sample_names();
        for name in [
            "streamhost_build_info",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(names.contains(name), "{name} missing");
        }
    }

    // Every metric the dashboard and the alert rules use exists.
    let mut offered = writer.sample_names();
    for scrape in &readers {
        offered.extend(scrape.sample_names());
    }
    let mut missing = Vec::new();
    for (place, expr) in deploy_expressions() {
        let mut names = BTreeSet::new();
        metric_names(&expr, &mut names);
        assert!(!names.is_empty(), "{place} uses no metric: {expr}");
        for name in names {
            if !offered.contains(&name) {
                missing.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics used in deploy/ but not served: {missing:#?}"
    );
    drop(receiver);
}

/// A raw replication client of `addr`: sends `lines`, then reads lines as they come.
async fn replication_client(
    addr: SocketAddr,
    lines: &str,
) -> tokio::io::Lines<BufReader<TcpStream>> {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.write_all(lines.as_bytes()).await.expect("send");
    BufReader::new(socket).lines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_series_are_labelled_by_the_clients_name() {
    let writer = TestWriter::spawn(&["events"]).await;
    let client = writer.client();
    let metrics = || async {
        let (status, body) = client
            .send(hyper::Method::GET, "/metrics", bytes::Bytes::new())
            .await
            .expect("GET /metrics");
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).expect("UTF-8")
    };
    let by_name = |text: &str, name: &str| {
        metric(
            text,
            &format!("streamhost_replication_client_connections{{name=\"{name}\"}}"),
        )
    };

    // Before NAME, a connection counts as `unnamed`.
    let silent = replication_client(writer.replication_addr(), "").await;
    wait_until(Duration::from_secs(10), "an unnamed connection", || async {
        by_name(&metrics().await, "unnamed") == Some(1.0)
    })
    .await;
    // Two connections with one name share its series, whatever their ports.
    let a = replication_client(writer.replication_addr(), "NAME worker-a\nREPLICATE \n").await;
    let b = replication_client(writer.replication_addr(), "NAME worker-a\nREPLICATE \n").await;
    wait_until(
        Duration::from_secs(10),
        "two connections named worker-a",
        || async {
            let text = metrics().await;
            by_name(&text, "worker-a") == Some(2.0) && by_name(&text, "unnamed") == Some(1.0)
        },
    )
    .await;
    let text = metrics().await;
    assert!(
        !text.contains("peer=\""),
        "no series is labelled by address: {text}"
    );
    assert!(
        metric(
            &text,
            "streamhost_replication_send_buffer_depth{name=\"worker-a\"}"
        )
        .is_some(),
        "{text}"
    );
    drop((a, silent));
    wait_until(
        Duration::from_secs(10),
        "the closed connections gone",
        || async {
            let text = metrics().await;
            by_name(&text, "worker-a") == Some(1.0) && by_name(&text, "unnamed") == Some(0.0)
        },
    )
    .await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_time_stamp_precedes_its_line_at_most_once_a_ping_interval() {
    let writer = TestWriter::spawn_with(&["events"], |config| config.ping_interval_ms = 300).await;
    let mut lines =
        replication_client(writer.replication_addr(), "NAME stamps\nREPLICATE \n").await;
    let client = writer.client();
    let appending = tokio::spawn(async move {
        for n in 0..2_000 {
            client
                .append("events", rows_body(&[serde_json::json!([n])]), false)
                .await
                .expect("append");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let started = SystemTime::now();
    let mut pings: Vec<(tokio::time::Instant, u64)> = Vec::new();
    let mut previous_ping: Option<String> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pings.len() < 3 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("three stamps within 20 s")
            .expect("read")
            .expect("the writer closed");
        if let Some(text) = line.strip_prefix("PING ") {
            previous_ping = Some(text.to_owned());
            continue;
        }
        if let Some(text) = previous_ping.take()
            && text.len() == 16
        {
            assert!(
                line.starts_with("RDATA events ") || line.starts_with("POSITION events "),
                "a stamp precedes a line with a token: {line}"
            );
            let stamp: u64 = text.parse().expect("digits");
            let start_us = started.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
            let now_us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64;
            assert!(
                (start_us..=now_us).contains(&stamp),
                "the stamp {stamp} is a commit time of this test ({start_us}..{now_us})"
            );
            pings.push((tokio::time::Instant::now(), stamp));
        }
    }
    // At most one stamp per ping interval (300 ms; a little slack for the read).
    for pair in pings.windows(2) {
        let apart = pair[1].0 - pair[0].0;
        assert!(
            apart >= Duration::from_millis(250),
            "stamps {apart:?} apart"
        );
    }
    appending.abort();
}
