//! What the log's tests share: a log on a fresh SQLite file or a fresh PostgreSQL schema,
//! and `on_both_backends!`, which runs a case on each.
//!
//! PostgreSQL is at `STREAMHOST_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a schema of its own, so tests
//! run in parallel. A missing server fails the test.

#![allow(clippy::unwrap_used, dead_code)] // each test binary uses part of it

use std::sync::atomic::{AtomicU32, Ordering};

use streamhost_log::{Backend, Log};
use streamhost_proto::{InstanceName, RowJson, StreamName};

pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

pub fn rows(values: &[&str]) -> Vec<RowJson> {
    values
        .iter()
        .map(|v| RowJson::parse(v.as_bytes()).unwrap())
        .collect()
}

/// The PostgreSQL server the tests use.
pub fn postgres_base_url() -> String {
    std::env::var("STREAMHOST_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema on the test server, dropped (best effort) when the fixture is.
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    pub async fn create() -> Schema {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "sh_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let base = postgres_base_url();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required at {base} (set STREAMHOST_TEST_POSTGRES to another \
                     server); connecting failed: {e}"
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Schema { base, name }
    }

    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{separator}options[search_path]={}", self.base, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a thread of its own may block on another.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await
                {
                    let sql = format!("SET lock_timeout = '5s'; DROP SCHEMA {name} CASCADE");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Where a test's log lives; `open` may be called again to reopen the same log.
pub enum Fixture {
    Sqlite(tempfile::TempDir),
    Postgres(Schema),
}

impl Fixture {
    pub async fn new(backend: Backend) -> Fixture {
        match backend {
            Backend::Sqlite => Fixture::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres => Fixture::Postgres(Schema::create().await),
        }
    }

    pub async fn open(&self) -> Log {
        let instance = InstanceName::new("master").unwrap();
        let log = match self {
            Fixture::Sqlite(dir) => Log::open(&dir.path().join("log.sqlite"), instance)
                .await
                .unwrap(),
            Fixture::Postgres(schema) => Log::open_url(&schema.url(), instance).await.unwrap(),
        };
        log.declare_streams(&[stream("events"), stream("typing")])
            .await
            .unwrap();
        log
    }
}

/// Runs `case(fixture)` as two tests, `case::sqlite` and `case::postgres`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                super::$case(super::Fixture::new(super::Backend::Sqlite).await).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$case(super::Fixture::new(super::Backend::Postgres).await).await;
            }
        }
    )*};
}
