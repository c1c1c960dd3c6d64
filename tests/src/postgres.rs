//! A fresh PostgreSQL schema per test, on the server at `STREAMHOST_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`). No server is a failed test, never a skipped one.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The PostgreSQL server the tests use.
pub fn base_url() -> String {
    std::env::var("STREAMHOST_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `(prefix, host:port, rest)` of a `postgres://[user@]host[:port]/db...` URL.
fn split_host(url: &str) -> (&str, &str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    let host_start = url[after_scheme..authority_end]
        .rfind('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    (
        &url[..host_start],
        &url[host_start..authority_end],
        &url[authority_end..],
    )
}

/// The test server's address, for a [`crate::proxy::TcpProxy`] in front of it.
pub fn server_addr() -> SocketAddr {
    let base = base_url();
    let (_, host_port, _) = split_host(&base);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("STREAMHOST_TEST_POSTGRES={base}: no address for {host_port}"))
}

/// A schema of its own for one test, so tests run in parallel on one database; dropped (best
/// effort) with the value.
#[derive(Debug)]
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// Creates `sh_<pid>_<nanos>_<n>`; panics, naming the URL, when PostgreSQL does not answer.
    pub async fn create() -> Schema {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .subsec_nanos();
        let name = format!(
            "sh_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let base = base_url();
        let mut conn = PgConnection::connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required at {base} (set STREAMHOST_TEST_POSTGRES to another \
                 server); connecting failed: {e}"
            )
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE SCHEMA");
        Schema { base, name }
    }

    /// The schema's name; also the `application_name` of connections made with [`Schema::url`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections use this schema and name themselves after it.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options[search_path]={name}&application_name={name}",
            self.base,
            name = self.name
        )
    }

    /// [`Schema::url`] with the server's `host:port` replaced by `addr` (a proxy).
    pub fn url_through(&self, addr: SocketAddr) -> String {
        let url = self.url();
        let (prefix, _, rest) = split_host(&url);
        format!("{prefix}{addr}{rest}")
    }

    /// A connection of the test's own to this schema (named `<schema>_test`).
    pub async fn connect(&self) -> PgConnection {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{separator}options[search_path]={name}&application_name={name}_test",
            self.base,
            name = self.name
        );
        PgConnection::connect(&url)
            .await
            .expect("connect to the test schema")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs inside the test's runtime: block on a runtime of another thread.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&base).await {
                    let sql = format!("SET lock_timeout = '5s'; DROP SCHEMA {name} CASCADE");
                    let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn the_host_is_found_with_and_without_user_and_port() {
        assert_eq!(
            split_host("postgres://postgres@127.0.0.1:5432/test?x=1"),
            ("postgres://postgres@", "127.0.0.1:5432", "/test?x=1")
        );
        assert_eq!(
            split_host("postgresql://db/test"),
            ("postgresql://", "db", "/test")
        );
        assert_eq!(
            split_host("postgres://u:p@w@h:1"),
            ("postgres://u:p@w@", "h:1", "")
        );
    }
}
