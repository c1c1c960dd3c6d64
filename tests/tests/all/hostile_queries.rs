//! The hostile client: 10,000 queries with distinct arguments from 100 concurrent clients, each
//! on its own loopback address, against a reader running `room-timeline` (which has a query)
//! beside the `stream-stats` bystander, while a writer keeps appending. Every request gets a
//! named answer (200, 503 `M_QUEUE_FULL` / `M_UNAVAILABLE`, 429 `M_LIMIT_EXCEEDED`, each refusal
//! with `Retry-After`); both plugins' batches keep flowing (each one's lag, the time since the
//! oldest write its cursor has not reached, sampled through `GET /v1/plugins` throughout, stays
//! under a second); and the cache's working set (a key asked for twice before the flood) is
//! still cached after it. Once with tight settings in this process (so the flood meets the
//! full queue and the rate limit), once against a reader process on the defaults, whose peak
//! resident memory is read from `/proc`. And a query that loops is stopped at its CPU deadline
//! (`query_deadline_ms`) with a 502, its plugin's batches unharmed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamhost_integration_tests::hostile::{HostileReader, Traffic};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{
    ADMIN_TOKEN, TestReader, TestWriter, spawn_plugin_reader, wait_until,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::plugin_limits::assert_stopped_at_the_deadline;

const WAIT: Duration = Duration::from_secs(60);
const CLIENTS: u8 = 100;
const QUERIES_PER_CLIENT: usize = 100;
/// The most a plugin may lag behind the writer while the flood runs.
const MAX_LAG: Duration = Duration::from_secs(1);
/// Time between two appends of the writer, and between two lag samples.
const TICK: Duration = Duration::from_millis(20);

/// Held by each flood test, so two floods never share the machine's cores: each measures
/// lag under its own load.
static ONE_FLOOD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A status and error code as a client sees them, e.g. `503 M_QUEUE_FULL`.
type Outcome = (u16, String);

/// One answer on a raw HTTP/1.1 connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn outcome(&self) -> Outcome {
        let errcode = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["errcode"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (self.status, errcode)
    }
}

/// A keep-alive HTTP/1.1 client connecting from a chosen local address (the reader counts a
/// client by its address).
struct Client {
    local: IpAddr,
    server: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(local: IpAddr, server: SocketAddr) -> Client {
        Client {
            local,
            server,
            connection: None,
        }
    }

    /// `GET path`, on a new connection if the last one was closed.
    async fn get(&mut self, path: &str) -> Answer {
        for attempt in 0..3 {
            match self.try_get(path).await {
                Ok(answer) => return answer,
                Err(error) if attempt < 2 => {
                    eprintln!("{} GET {path}: {error}; reconnecting", self.local);
                    self.connection = None;
                }
                Err(error) => panic!("{} GET {path}: {error}", self.local),
            }
        }
        unreachable!("the last attempt panics")
    }

    async fn try_get(&mut self, path: &str) -> std::io::Result<Answer> {
        if self.connection.is_none() {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(self.local, 0))?;
            self.connection = Some(BufReader::new(socket.connect(self.server).await?));
        }
        let connection = self.connection.as_mut().expect("connected just above");
        let request = format!("GET {path} HTTP/1.1\r\nhost: reader\r\n\r\n");
        connection.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        connection.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            connection.read_line(&mut line).await?;
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = answer
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| std::io::Error::other("no content-length"))?;
        let mut body = vec![0; length];
        connection.read_exact(&mut body).await?;
        answer.body = String::from_utf8_lossy(&body).into_owned();
        if answer.header("connection") == Some("close") {
            self.connection = None;
        }
        Ok(answer)
    }
}

fn message(room: &str, n: usize) -> Value {
    json!({"room": room, "sender": "@a:x", "body": format!("m{n}")})
}

/// A reader running `room-timeline` and `stream-stats`, with a small query queue and a strict
/// rate limit so the flood meets both.
async fn reader(writer: &TestWriter, folder: &PluginFolder) -> TestReader {
    let dir = folder.path().to_path_buf();
    let grants = grants_for(&["room-timeline", "stream-stats"]);
    TestReader::spawn_with(writer, "r", None, move |c| {
        c.plugins.dir = Some(dir);
        c.plugins.grants = grants;
        c.plugins.admin_token = Some(ADMIN_TOKEN.into());
        c.plugins.compile_cache = Some(PathBuf::from(concat!(env!("OUT_DIR"), "/compiled")));
        c.plugins.queries.queue_depth = 8;
        c.plugins.rate_limit.per_second = 5;
        c.plugins.rate_limit.burst = 20;
    })
    .await
}

/// When each token was written (just before its append was sent).
type Written = Arc<Mutex<Vec<(Instant, i64)>>>;

/// Appends a message to the room `busy` every [`TICK`] until `stop`.
async fn keep_writing(writer: &TestWriter, written: Written, stop: CancellationToken) {
    let mut n = 0;
    while !stop.is_cancelled() {
        let at = Instant::now();
        let tokens = writer.append("messages", &[message("busy", n)]).await;
        written.lock().unwrap().push((at, tokens[0].0));
        n += 1;
        tokio::time::sleep(TICK).await;
    }
}

/// How long `cursor` is behind: the time since the oldest write above it, at `now`.
fn lag_of(written: &[(Instant, i64)], cursor: i64, now: Instant) -> Duration {
    written
        .iter()
        .find(|(_, token)| *token > cursor)
        .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
}

/// Samples each plugin's lag every [`TICK`] until `stop`; the worst seen per plugin.
async fn sample_lag(
    reader: &TestReader,
    written: Written,
    stop: CancellationToken,
) -> BTreeMap<String, Duration> {
    let client = reader.client();
    let mut worst = BTreeMap::new();
    while !stop.is_cancelled() {
        let plugins = client.get_json("/v1/plugins").await.unwrap();
        let now = Instant::now();
        let written = written.lock().unwrap().clone();
        for plugin in plugins.as_array().unwrap() {
            let cursor = plugin["cursors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["stream"] == "messages")
                .map_or(0, |c| c["token"].as_i64().unwrap());
            let lag = lag_of(&written, cursor, now);
            let name = plugin["name"].as_str().unwrap().to_owned();
            let entry = worst.entry(name).or_insert(Duration::ZERO);
            *entry = (*entry).max(lag);
        }
        tokio::time::sleep(TICK).await;
    }
    worst
}

/// One flooding client from `local`: its queries, each with arguments no one asked for before.
async fn flood(client_no: u8, local: IpAddr, server: SocketAddr) -> BTreeMap<Outcome, usize> {
    let mut client = Client::new(local, server);
    let mut outcomes = BTreeMap::new();
    for n in 0..QUERIES_PER_CLIENT {
        let path = format!("/v1/query/room-timeline/timeline?room=flood-{client_no}-{n}");
        let answer = client.get(&path).await;
        let outcome = answer.outcome();
        match &outcome {
            (200, _) => {}
            (503, code) if code == "M_QUEUE_FULL" || code == "M_UNAVAILABLE" => {}
            (429, code) if code == "M_LIMIT_EXCEEDED" => {}
            other => panic!("{path}: unexpected answer {other:?}: {}", answer.body),
        }
        if answer.status != 200 {
            let retry = answer.header("retry-after").expect("a refusal says when");
            assert!(retry.parse::<u64>().unwrap() >= 1, "{retry}");
        }
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

/// [`CLIENTS`] concurrent flooding clients spread over `addresses` loopback addresses; every
/// answer's outcome, counted.
async fn flood_from(addresses: u8, server: SocketAddr) -> BTreeMap<Outcome, usize> {
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let local = IpAddr::V4(Ipv4Addr::new(127, 1, 0, n % addresses + 1));
            tokio::spawn(flood(n, local, server))
        })
        .collect();
    let mut outcomes = BTreeMap::new();
    for client in clients {
        for (outcome, count) in client.await.unwrap() {
            *outcomes.entry(outcome).or_default() += count;
        }
    }
    eprintln!(
        "flood of 10,000 queries from {addresses} addresses took {:?}: {outcomes:?}",
        started.elapsed()
    );
    assert_eq!(outcomes.values().sum::<usize>(), 10_000);
    outcomes
}

/// How many answers had `status`.
fn count(outcomes: &BTreeMap<Outcome, usize>, status: u16) -> usize {
    outcomes
        .iter()
        .filter(|((s, _), _)| *s == status)
        .map(|(_, n)| n)
        .sum()
}

/// Makes a room's timeline part of room-timeline's working set (asked for twice: a miss, then
/// a hit) and returns the client that asked, the query's path and its first answer.
async fn warm_working_set(writer: &TestWriter, server: SocketAddr) -> (Client, String, Answer) {
    let tokens = writer.append("messages", &[message("hot", 0)]).await;
    let hot = format!(
        "/v1/query/room-timeline/timeline?room=hot&min_token=messages:{}",
        tokens[0].0
    );
    let mut own = Client::new(IpAddr::V4(Ipv4Addr::LOCALHOST), server);
    let first = own.get(&hot).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.header("x-streamhost-cache"),
        Some("miss"),
        "{}",
        first.body
    );
    assert_eq!(
        own.get(&hot).await.header("x-streamhost-cache"),
        Some("hit")
    );
    (own, hot, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_flood_gets_named_refusals_and_starves_neither_batches_nor_the_working_set() {
    let _alone = ONE_FLOOD_AT_A_TIME.lock().await;
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["room-timeline", "stream-stats"]);
    let reader = reader(&writer, &folder).await;
    let server = reader.reader().http_addr();
    // The working set: a room's timeline, asked for twice.
    let (mut own, hot, first) = warm_working_set(&writer, server).await;

    let stop = CancellationToken::new();
    let written = Written::default();
    let writing = keep_writing(&writer, written.clone(), stop.clone());
    let sampling = sample_lag(&reader, written.clone(), stop.clone());
    let flooding = async {
        let outcomes = flood_from(CLIENTS, server).await;
        stop.cancel();
        outcomes
    };
    let ((), worst_lag, outcomes) = tokio::join!(writing, sampling, flooding);

    eprintln!("worst lag: {worst_lag:?}");
    assert!(count(&outcomes, 200) > 0, "{outcomes:?}");
    assert!(
        count(&outcomes, 429) > 0,
        "the rate limit refused some: {outcomes:?}"
    );
    assert!(
        count(&outcomes, 503) > 0,
        "the full queue refused some: {outcomes:?}"
    );
    for plugin in ["room-timeline", "stream-stats"] {
        let lag = worst_lag.get(plugin).copied().expect("sampled");
        assert!(lag < MAX_LAG, "{plugin} lagged {lag:?} behind the writer");
    }
    // Both plugins got every write.
    let last = written.lock().unwrap().last().unwrap().1;
    let count_path =
        format!("/v1/query/stream-stats/count?stream=messages&min_token=messages:{last}");
    let (status, _) = reader.get(&count_path).await;
    assert_eq!(status, 200);

    // The working set survived the flood of new keys.
    let after = own.get(&hot).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(
        after.header("x-streamhost-cache"),
        Some("hit"),
        "{}",
        after.body
    );
    assert_eq!(after.body, first.body);
    let metrics = reader.get("/metrics").await.1;
    assert!(
        metrics.contains(
            "streamhost_plugin_queries_dropped_total{plugin=\"room-timeline\",reason=\"queue-full\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("streamhost_reader_requests_rate_limited_total{endpoint=\"query\"}"));
    wait_until(WAIT, "the reader to stay connected", || async {
        reader.client().get_json("/v1/status").await.unwrap()["connection"]["state"] == "connected"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_loops_is_stopped_at_its_cpu_deadline_and_batches_go_on() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["evil"]);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&["evil"])).await;
    let (status, body) = reader.get("/v1/query/evil/loop").await;
    assert_eq!(status, 502, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["errcode"], "M_PLUGIN_FAILED", "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("cpu-deadline"),
        "{answer}"
    );
    let evil = reader.plugin("evil").await;
    let report = &evil["reports"][0];
    assert_eq!(report["call"], "query", "{evil}");
    assert_eq!(report["failure"]["reason"], "cpu-deadline", "{evil}");
    // `query_deadline_ms`, 100 ms by default.
    assert_stopped_at_the_deadline(&evil, Duration::from_millis(100));
    // The plugin is not quarantined for a query, and its batches go on.
    let tokens = writer.append("messages", &[message("a", 0)]).await;
    wait_until(WAIT, "evil to apply the row", || async {
        let evil = reader.plugin("evil").await;
        evil["state"] == "running"
            && evil["cursors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["stream"] == "messages" && c["token"].as_i64() >= Some(tokens[0].0))
    })
    .await;
}

/// The same flood against a reader process with the default settings: 100 clients over 10
/// addresses, so the default rate limit (burst 100, 50/s per address) is met; the reader's
/// peak resident memory (`VmHWM`, from `/proc`) stays under the harness's ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_flood_on_the_defaults_keeps_the_reader_under_its_memory_ceiling() {
    let _alone = ONE_FLOOD_AT_A_TIME.lock().await;
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["room-timeline", "stream-stats"]);
    let grants = grants_for(&["room-timeline", "stream-stats"]);
    let program = env!("CARGO_BIN_EXE_streamhost-under-test");
    let reader = HostileReader::start(program, &writer, &folder, &grants).await;
    let server = reader
        .client()
        .base()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (mut own, hot, _) = warm_working_set(&writer, server).await;

    let traffic = Traffic::start(&writer, "messages", TICK);
    let timeline_lag = reader.watch_lag(&writer, "room-timeline", "messages");
    let stats_lag = reader.watch_lag(&writer, "stream-stats", "messages");
    let outcomes = flood_from(10, server).await;
    let (timeline_lag, stats_lag) = (timeline_lag.finish().await, stats_lag.finish().await);
    traffic.finish().await;

    eprintln!("lag: room-timeline {timeline_lag:?}, stream-stats {stats_lag:?}");
    assert!(count(&outcomes, 200) > 0, "{outcomes:?}");
    assert!(
        count(&outcomes, 429) > 0,
        "the rate limit refused some: {outcomes:?}"
    );
    assert!(
        timeline_lag.age < MAX_LAG,
        "room-timeline lagged {timeline_lag:?}"
    );
    assert!(stats_lag.age < MAX_LAG, "stream-stats lagged {stats_lag:?}");
    let after = own.get(&hot).await;
    assert_eq!(
        after.header("x-streamhost-cache"),
        Some("hit"),
        "{}",
        after.body
    );
    eprintln!(
        "the reader's peak resident memory: {} MiB",
        reader.peak_resident() >> 20
    );
    reader.assert_under_ceiling();
}
