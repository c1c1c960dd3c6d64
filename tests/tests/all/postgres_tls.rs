//! PostgreSQL over TLS, against a server the test starts with TLS on and plain connections
//! refused (`postgres_tls::TlsPostgres`): a writer appends with `sslmode=require` and a reader
//! catches up from the log with `verify-full` and the test CA, both with their password from
//! a file; a wrong CA, a name the certificate does not carry, a wrong password and
//! `sslmode=disable` are refused with errors that say why and never show the password.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use streamhost_integration_tests::certs::TestCa;
use streamhost_integration_tests::postgres_tls::TlsPostgres;
use streamhost_integration_tests::{TestReader, TestWriter};
use streamhost_server::config::{ListenerConfig, ReaderConfig, WriterConfig};
use streamhost_server::reader::Reader;
use streamhost_server::writer::Writer;
use tokio_util::sync::CancellationToken;

/// A writer configuration on loopback port 0 with its log at `url`, the password from
/// `password_file`.
fn writer_config(dir: &std::path::Path, url: String, pg: &TlsPostgres) -> WriterConfig {
    let mut config = WriterConfig {
        http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0))),
        replication: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0))),
        data: dir.join("writer"),
        streams: vec!["events".into()],
        ..WriterConfig::default()
    };
    config.database.url = Some(url.into());
    config.database.password_file = Some(pg.password_file());
    config
}

/// The error of a writer started on `url` (which must fail), as `{:#}` shows it.
async fn writer_error(pg: &TlsPostgres, url: String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = writer_config(dir.path(), url, pg);
    let started = Writer::bind(config, CancellationToken::new()).await;
    let error = format!("{:#}", started.err().expect("the writer is refused"));
    assert!(
        !error.contains(&pg.password),
        "the password is not shown: {error}"
    );
    error
}

/// The error of a reader catching up from `url` (which must fail to open), as `{:#}` shows it.
async fn reader_error(pg: &TlsPostgres, url: String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = ReaderConfig {
        http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0))),
        data: dir.path().join("reader"),
        log_database_url: Some(url.into()),
        log_database_password_file: Some(pg.password_file()),
        ..ReaderConfig::default()
    };
    let started = Reader::bind(config, None, CancellationToken::new()).await;
    let error = format!("{:#}", started.err().expect("the reader is refused"));
    assert!(
        !error.contains(&pg.password),
        "the password is not shown: {error}"
    );
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_appends_with_sslmode_require_and_a_reader_catches_up_with_verify_full() {
    let pg = TlsPostgres::start().await;
    let writer_url = pg.url("127.0.0.1", "sslmode=require");
    let password_file = pg.password_file();
    let writer = TestWriter::spawn_with(&["events"], |config| {
        config.database.url = Some(writer_url.into());
        config.database.password_file = Some(password_file);
    })
    .await;
    let rows: Vec<_> = (0..50).map(|i| json!({"n": i})).collect();
    let mut last = writer.append("events", &rows[..25]).await;

    // Joining late, with nothing listening at writer_http, the reader can only catch up from
    // the log database: over TLS, verifying the server's certificate and name.
    let reader_url = pg.url("localhost", &pg.verify_full());
    let password_file = pg.password_file();
    let reader = TestReader::spawn_with(&writer, "over-tls", None, |config| {
        config.log_database_url = Some(reader_url.into());
        config.log_database_password_file = Some(password_file);
        config.writer_http = "http://127.0.0.1:1".into();
    })
    .await;
    last.extend(writer.append("events", &rows[25..]).await);
    let last = *last.last().unwrap();
    reader
        .wait_for("events", last, Duration::from_secs(30))
        .await;
    let got: Vec<serde_json::Value> = reader
        .rows("events")
        .await
        .into_iter()
        .map(|(_, _, row)| serde_json::from_str(row.as_str()).unwrap())
        .collect();
    assert_eq!(got, rows, "the reader has every row once, in order");
    let (_, metrics) = reader.get("/metrics").await;
    assert!(
        metrics.contains("streamhost_reader_catchup_requests_total{stream=\"events\"}"),
        "the reader caught up from the database: {metrics}"
    );

    // Every connection of the writer's and the reader's pools is encrypted.
    let mut admin = pg.admin().await;
    let sessions = sqlx::query(
        "SELECT count(*) AS n, coalesce(bool_and(ssl), false) AS all_ssl \
         FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) WHERE usename = $1",
    )
    .bind(TlsPostgres::USER)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let (n, all_ssl): (i64, bool) = (sessions.get("n"), sessions.get("all_ssl"));
    assert!(
        n >= 2 && all_ssl,
        "{n} sessions of the writer and the reader, all TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_wrong_ca_and_a_name_the_certificate_does_not_carry() {
    let pg = TlsPostgres::start().await;
    let other = TestCa::new(pg.dir(), "other-ca");
    let wrong_ca = format!(
        "sslmode=verify-full&sslrootcert={}",
        other.cert_file.display()
    );
    for error in [
        writer_error(&pg, pg.url("localhost", &wrong_ca)).await,
        reader_error(&pg, pg.url("localhost", &wrong_ca)).await,
    ] {
        assert!(
            error.contains("TLS with the log database failed") && error.contains("UnknownIssuer"),
            "the error says the certificate's issuer is not trusted: {error}"
        );
    }

    // The certificate names `localhost`, not `127.0.0.1`: verify-full refuses the address,
    // verify-ca (the CA only) takes it.
    let error = writer_error(&pg, pg.url("127.0.0.1", &pg.verify_full())).await;
    assert!(
        error.contains("TLS") && error.contains("not valid for name \"127.0.0.1\""),
        "the error says the certificate is for another name: {error}"
    );
    let verify_ca = format!(
        "sslmode=verify-ca&sslrootcert={}",
        pg.ca.cert_file.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = writer_config(dir.path(), pg.url("127.0.0.1", &verify_ca), &pg);
    let shutdown = CancellationToken::new();
    let writer = Writer::bind(config, shutdown.clone())
        .await
        .expect("verify-ca checks the CA, not the name");
    shutdown.cancel();
    writer.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_from_the_file_is_refused_and_not_shown() {
    let pg = TlsPostgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = writer_config(dir.path(), pg.url("localhost", &pg.verify_full()), &pg);
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-pw-9f3c\n").unwrap();
    config.database.password_file = Some(wrong);
    let started = Writer::bind(config, CancellationToken::new()).await;
    let error = format!("{:#}", started.err().expect("the writer is refused"));
    assert!(
        error.contains("password authentication failed for user \"streamhost\""),
        "the server's refusal is passed on: {error}"
    );
    assert!(
        !error.contains("not-the-pw-9f3c") && error.contains("streamhost:***@"),
        "the password is masked: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_connection_is_refused_by_the_server_with_a_clear_error() {
    let pg = TlsPostgres::start().await;
    for error in [
        writer_error(&pg, pg.url("127.0.0.1", "sslmode=disable")).await,
        reader_error(&pg, pg.url("127.0.0.1", "sslmode=disable")).await,
    ] {
        assert!(
            error.contains("pg_hba.conf rejects connection") && error.contains("no encryption"),
            "the server's refusal is passed on: {error}"
        );
    }
}
