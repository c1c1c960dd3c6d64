//! A writer process out of file descriptors (started under `prlimit` with a low
//! `RLIMIT_NOFILE`, then flooded with connections) waits between failed accepts instead of
//! spinning: it logs the failures a few times a second at most, uses little CPU, counts the
//! failures, and answers again once descriptors are free.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::{metric, wait_until};
use streamhost_server::client::ApiClient;
use tokio::net::TcpStream;

const PROGRAM: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

/// The writer's descriptor limit: about 20 in use after start, so a few dozen connections
/// exhaust it.
const NOFILE: u32 = 64;

/// Connections opened against it: more than it can accept.
const CONNECTIONS: usize = 150;

/// How long the exhausted process is watched.
const WATCH: Duration = Duration::from_secs(2);

/// The CPU time (user + system) of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports CPU time in USER_HZ, 100 per second.
    Duration::from_millis(ticks * 10)
}

/// Lines of `log` that say accepting failed.
fn accept_failure_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("accepting connections failed"))
        .count()
}

#[tokio::test]
async fn a_writer_out_of_file_descriptors_waits_between_accepts_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("writer.log");
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let writer = Process::spawn_logging(
        "prlimit",
        &[
            &nofile,
            PROGRAM,
            "writer",
            "--http",
            "127.0.0.1:0",
            "--replication",
            "127.0.0.1:0",
            "--data",
            dir.path().join("writer").to_str().unwrap(),
        ],
        &log,
    )
    .await;
    let pid = writer.pid().unwrap();
    let addr = writer.addr("http");
    let api = ApiClient::new(format!("http://{addr}"));
    let (status, _) = api
        .send(Method::GET, "/v1/streams", Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    // Connections past the limit stay queued in the kernel; the writer's accepts fail.
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    wait_until(
        Duration::from_secs(10),
        "a failed accept in the log",
        || async { accept_failure_lines(&log) > 0 },
    )
    .await;

    // Watched for a while: a loop retrying at once would burn a core and log every failure.
    let (cpu_before, lines_before) = (cpu_time(pid), accept_failure_lines(&log));
    let started = tokio::time::Instant::now();
    tokio::time::sleep(WATCH).await; // the observation window itself, not a wait for a state
    let watched = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let lines = accept_failure_lines(&log) - lines_before;
    assert!(
        cpu < watched / 5,
        "the writer used {cpu:?} of CPU in {watched:?} while out of descriptors"
    );
    assert!(
        lines <= watched.as_secs() as usize + 1,
        "{lines} accept-failure lines in {watched:?}: not throttled"
    );

    // Descriptors free again: the writer answers, and counted its failures.
    drop(held);
    wait_until(
        Duration::from_secs(10),
        "the writer answering again",
        || async {
            matches!(
                api.send(Method::GET, "/v1/streams", Bytes::new()).await,
                Ok((StatusCode::OK, _))
            )
        },
    )
    .await;
    let (_, body) = api
        .send(Method::GET, "/metrics", Bytes::new())
        .await
        .unwrap();
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    let failures = metric(
        &metrics,
        "streamhost_accept_errors_total{listener=\"writer.http\"}",
    )
    .expect("accept errors counted");
    // Waits of 10 ms doubling to 1 s: a few dozen failures at most over the test, where a
    // spinning loop counts millions.
    assert!((1.0..200.0).contains(&failures), "{failures} accept errors");
    assert!(writer.terminate().await.success());
}
