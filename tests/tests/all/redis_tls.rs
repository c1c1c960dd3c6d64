//! Redis mode over TLS: a `redis-server` of the test's own with TLS and client certificates
//! (`TlsRedis`), a writer and readers on `rediss://`, refusals when either side's
//! certificate is not trusted (and recovery once it is), and a Synapse-mode reader process with Synapse's `use_tls`
//! keys following a fake Synapse that publishes on the same server's plain port.

use std::path::Path;
use std::time::Duration;

use streamhost_integration_tests::certs::TestCa;
use streamhost_integration_tests::plugins::PluginFolder;
use streamhost_integration_tests::redis::unique_server_name;
use streamhost_integration_tests::redis_tls::TlsRedis;
use streamhost_integration_tests::synapse::{FakeSynapse, Script};
use streamhost_integration_tests::{TestReader, TestWriter, metric, wait_until};
use streamhost_server::config::RedisConfig;

use crate::redis::assert_refused_at_connect;
use crate::replication::{assert_reader_has_exactly, write_rows};
use crate::synapse::start_reader;

const WAIT: Duration = Duration::from_secs(30);

/// A writer publishing on channel `server_name` through `redis`.
async fn tls_writer(server_name: &str, redis: RedisConfig) -> TestWriter {
    TestWriter::spawn_with(&["events", "receipts"], |c| {
        c.server_name = server_name.to_owned();
        c.redis = Some(redis);
    })
    .await
}

/// A recording reader following `writer` over Redis with `redis`.
async fn tls_reader(writer: &TestWriter, name: &str, redis: RedisConfig) -> TestReader {
    let server_name = writer.config.server_name.clone();
    TestReader::spawn_with(writer, name, None, move |c| {
        c.server_name = Some(server_name);
        c.redis = Some(redis);
        // Nothing listens here: a reader in Redis mode must not use TCP.
        c.writer = "127.0.0.1:1".into();
    })
    .await
}

async fn metrics(reader: &TestReader) -> String {
    reader.get("/metrics").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_and_a_reader_replicate_over_tls_with_client_certificates() {
    let redis = TlsRedis::start(true).await;
    let server_name = unique_server_name("tls");
    let writer = tls_writer(&server_name, redis.config()).await;
    // The reader trusts a CA folder (Synapse's `ca_path`) holding the CA among other files.
    let cas = redis.dir().join("cas");
    std::fs::create_dir(&cas).unwrap();
    std::fs::copy(&redis.ca.cert_file, cas.join("0a1b2c3d.0")).unwrap();
    std::fs::write(cas.join("README"), "not a certificate\n").unwrap();
    let config = RedisConfig {
        ca_file: None,
        ca_path: Some(cas),
        ..redis.config()
    };
    config.validate("reader.redis").unwrap();
    let reader = tls_reader(&writer, "tls-reader", config).await;
    wait_until(Duration::from_secs(10), "subscribed over TLS", || async {
        metric(&metrics(&reader).await, "streamhost_reader_redis_connected") == Some(1.0)
    })
    .await;

    let written = write_rows(&writer, &["events", "receipts"], 2_000, 100).await;
    assert_reader_has_exactly(&reader, &written, WAIT).await;
    let status = reader.reader().status();
    assert_eq!(status.reconnects, 0);
    assert_eq!(
        status.writer,
        format!("redis {} channel {server_name}", redis.url()),
        "the status names the Redis followed, not the unused TCP address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_redis_is_refused_until_the_certificates_are_trusted() {
    let redis = TlsRedis::start(true).await;
    let server_name = unique_server_name("tls-refused");
    let writer = tls_writer(&server_name, redis.config()).await;
    let other_ca = TestCa::new(redis.dir(), "other-ca");
    let distrustful = tls_reader(
        &writer,
        "trusts-another-ca",
        RedisConfig {
            ca_file: Some(other_ca.cert_file.clone()),
            ..redis.config()
        },
    )
    .await;
    let anonymous = tls_reader(
        &writer,
        "no-client-certificate",
        RedisConfig {
            certificate_file: None,
            private_key_file: None,
            ..redis.config()
        },
    )
    .await;
    let trusted = tls_reader(&writer, "trusted", redis.config()).await;
    let written = write_rows(&writer, &["events"], 200, 50).await;
    assert_reader_has_exactly(&trusted, &written, WAIT).await;

    for (reader, expected) in [
        (&distrustful, "invalid peer certificate: UnknownIssuer"),
        (&anonymous, "CertificateRequired"),
    ] {
        assert_refused_at_connect(reader, &[expected], WAIT).await;
    }

    // The CA file is read at every attempt: putting the right CA in place lets the reader in
    // at its next retry, and it catches up on everything it missed.
    std::fs::copy(&redis.ca.cert_file, &other_ca.cert_file).unwrap();
    assert_reader_has_exactly(&distrustful, &written, WAIT).await;
    assert_eq!(
        metric(
            &metrics(&anonymous).await,
            "streamhost_reader_redis_connected"
        ),
        Some(0.0),
        "still no client certificate, still refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synapse_reader_follows_synapse_over_tls_with_synapse_s_keys() {
    let redis = TlsRedis::start(true).await;
    let server_name = unique_server_name("synapse-tls");
    let script = Script::from_capture();
    let expected = script.rows_per_stream();
    let folder = PluginFolder::with(&["stream-stats"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reader.toml");
    std::fs::write(
        &config,
        synapse_tls_toml(
            &dir.path().join("reader"),
            folder.path(),
            &server_name,
            &redis,
        ),
    )
    .unwrap();

    // The fake Synapse publishes on the same server's plain port: one set of channels.
    let mut synapse = FakeSynapse::connect(&redis.plain_url(), &server_name).await;
    // Its first message proves it subscribed over TLS.
    let (_reader, client) = start_reader(&mut synapse, config.to_str().unwrap()).await;
    synapse.publish(&script.announcements).await;
    synapse.publish(&script.rows).await;
    synapse.publish(&script.tail).await;
    for (stream, rows) in &expected {
        wait_until(WAIT, &format!("{rows} {stream} rows over TLS"), || async {
            client
                .get_json(&format!("/v1/query/stream-stats/count?stream={stream}"))
                .await
                .ok()
                .and_then(|v| v.as_u64())
                == Some(*rows as u64)
        })
        .await;
    }
    let status = client.get_json("/v1/status").await.unwrap();
    assert_eq!(
        status["writer"],
        format!(
            "synapse {server_name} via redis localhost:{} (TLS)",
            redis.tls_port
        ),
        "{status}"
    );
    assert_eq!(status["reconnects"], 0, "{status}");
}

/// A `reader.toml` following `server_name` on `redis` with Synapse's TLS keys, running
/// `stream-stats`.
fn synapse_tls_toml(data: &Path, plugins: &Path, server_name: &str, redis: &TlsRedis) -> String {
    format!(
        r#"[reader]
name = "streamhost-tls"
data = {data:?}
http = "127.0.0.1:0"

[reader.plugins]
dir = {plugins:?}
[reader.plugins.grants.stream-stats]
streams = ["*"]
caches = ["count"]
kv = true

[reader.synapse]
server_name = "{server_name}"
[reader.synapse.redis]
host = "localhost"
port = {port}
use_tls = true
ca_file = {ca:?}
certificate_file = {cert:?}
private_key_file = {key:?}
ping_interval_ms = 2000
reconnect_max_ms = 500
"#,
        data = data.display().to_string(),
        plugins = plugins.display().to_string(),
        port = redis.tls_port,
        ca = redis.ca.cert_file.display().to_string(),
        cert = redis.client_cert.display().to_string(),
        key = redis.client_key.display().to_string(),
    )
}
