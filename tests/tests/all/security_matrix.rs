//! The security matrix of `docs/security.md`: every listener (the writer's HTTP and
//! replication listeners, the reader's HTTP listener), all three with TLS and client
//! certificates required, against every kind of client: no credentials, wrong credentials,
//! right credentials, a client certificate from a CA the listener does not trust, and no client
//! certificate at all. Each cell gets the documented answer, and no client that is not allowed
//! ever sees a row, a position or a notification. (Event streams' tokens are checked in
//! `reader_auth`, a reader that cannot verify its writer in `tls`.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use streamhost_integration_tests::certs::{TestCa, tls_connect};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{TestReader, TestWriter, rows_body, wait_until};
use streamhost_server::client::ApiClient;
use streamhost_server::config::{AuthConfig, ClientTlsConfig, TokenConfig};
use streamhost_server::net::tls::ClientTls;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);
/// Longest one probe's request waits for its answer.
const PROBE: Duration = Duration::from_secs(10);
const WRITE: &str = "matrix-write-token-0123";
const CATCHUP: &str = "matrix-replication-secret";
const READ: &str = "matrix-read-token-0123";
const ADMIN: &str = "matrix-admin-token-0123";
const ALICE: &str = "matrix-alice-token-0123";
const WRONG: &str = "not-the-token-0123456789";
/// The text of the one row written: no refused answer may contain it.
const SECRET_ROW: &str = "the secret row";

/// What a client brings.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// A certificate the listener trusts, no token.
    NoCredentials,
    /// A trusted certificate with a wrong token (HTTP), or a certificate for a name not in
    /// `allowed_clients` (replication).
    WrongCredentials,
    /// A trusted certificate and the right token.
    RightCredentials,
    /// A certificate signed by a CA the listener does not trust, and the right token.
    UntrustedCa,
    /// No client certificate, and the right token.
    NoCertificate,
}

const CLIENTS: [Client; 5] = [
    Client::NoCredentials,
    Client::WrongCredentials,
    Client::RightCredentials,
    Client::UntrustedCa,
    Client::NoCertificate,
];

/// The certificates of the test: the deployment's CA and a stranger's.
struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    stranger: TestCa,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let stranger = TestCa::new(dir.path(), "stranger");
        Pki { dir, ca, stranger }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The client certificate `client` presents (signed for `name`), if any.
    fn certificate(&self, client: Client, name: &str) -> Option<(PathBuf, PathBuf)> {
        match client {
            Client::NoCertificate => None,
            Client::UntrustedCa => Some(self.stranger.client_certificate(self.path(), name)),
            Client::WrongCredentials => Some(self.ca.client_certificate(self.path(), "intruder")),
            Client::NoCredentials | Client::RightCredentials => {
                Some(self.ca.client_certificate(self.path(), name))
            }
        }
    }

    /// An HTTPS client of `addr` as `client`, with `token` for the right credentials.
    fn https(&self, addr: SocketAddr, client: Client, token: &str) -> ApiClient {
        // On HTTP the name is not checked: the token is the wrong credential there.
        let certificate = match client {
            Client::WrongCredentials => Some(self.ca.client_certificate(self.path(), "app")),
            other => self.certificate(other, "app"),
        };
        let tls: ClientTlsConfig = self.ca.client_tls(certificate);
        // A refused client certificate can leave hyper's request waiting on a dead connection
        // (see `streamhost_server::client::REQUEST_TIMEOUT`): a short bound keeps such a cell from taking 90 s.
        let api = ApiClient::with_tls(
            format!("https://{addr}"),
            &ClientTls::new(&tls, "matrix").unwrap(),
        )
        .with_timeout(PROBE);
        match client {
            Client::NoCredentials => api,
            Client::WrongCredentials => api.with_bearer(WRONG),
            _ => api.with_bearer(token),
        }
    }
}

/// The answer to one HTTP request: a status and body, or no answer (the TLS handshake
/// failed).
async fn answer(api: &ApiClient, method: Method, path: &str, body: Bytes) -> Option<(u16, String)> {
    api.send(method, path, body)
        .await
        .ok()
        .map(|(status, body)| (status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

/// The documented answer of an HTTP listener with client certificates required and bearer
/// tokens on its endpoints: no answer without a trusted certificate, 401 without or with a
/// wrong token, the endpoint's own answer with both.
fn expected_http(client: Client, success: u16) -> Option<u16> {
    match client {
        Client::UntrustedCa | Client::NoCertificate => None,
        Client::NoCredentials | Client::WrongCredentials => Some(401),
        Client::RightCredentials => Some(success),
    }
}

/// The lines a replication client gets until the writer closes, or until it has seen a
/// `POSITION` (so an allowed client stops there); empty when the handshake fails.
async fn replication_lines(addr: SocketAddr, pki: &Pki, client: Client) -> Vec<String> {
    let certificate = pki.certificate(client, "reader-ok");
    let connect = tokio::time::timeout(PROBE, tls_connect(addr, &pki.ca, certificate.as_ref()));
    let Ok(mut stream) = connect
        .await
        .unwrap_or_else(|_| panic!("{client:?}: no TLS handshake within {PROBE:?}"))
    else {
        return Vec::new();
    };
    // With TLS 1.3 a refused client certificate shows on the first read, not the handshake.
    if stream.write_all(b"NAME matrix\nREPLICATE\n").await.is_err() {
        return Vec::new();
    }
    let mut lines = BufReader::new(stream).lines();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(PROBE, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                let position = line.starts_with("POSITION");
                got.push(line);
                if position {
                    return got;
                }
            }
            Ok(Ok(None) | Err(_)) => return got,
            Err(_) => panic!("{client:?}: the writer kept the connection open: {got:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_answers_every_kind_of_client_as_documented() {
    let pki = Pki::new();
    let writer = TestWriter::spawn_with(&["messages"], |c| {
        c.http.tls = Some(pki.ca.server_tls(pki.path(), "writer-http", Some(&pki.ca)));
        c.replication.tls = Some(pki.ca.server_tls(pki.path(), "writer-repl", Some(&pki.ca)));
        c.replication.allowed_clients = vec!["reader-ok".into()];
        c.write_token = Some(WRITE.into());
        c.replication_secret = Some(CATCHUP.into());
        c.read_token = Some(READ.into());
    })
    .await;
    let folder = PluginFolder::with(&["room-timeline", "notifier"]);
    let reader_certificate = pki.ca.client_certificate(pki.path(), "reader-ok");
    let folder_path = folder.path().to_path_buf();
    let reader_http = pki.ca.server_tls(pki.path(), "reader-http", Some(&pki.ca));
    let writer_tls = pki.ca.client_tls(Some(reader_certificate));
    let reader = TestReader::spawn_with(&writer, "reader-ok", None, move |c| {
        c.writer_tls = Some(writer_tls);
        c.replication_secret = Some(CATCHUP.into());
        c.http.tls = Some(reader_http);
        c.read_token = Some(READ.into());
        c.plugins.dir = Some(folder_path);
        c.plugins.grants = grants_for(&["room-timeline", "notifier"]);
        c.plugins.admin_token = Some(ADMIN.into());
        c.plugins.compile_cache = Some(PathBuf::from(concat!(env!("OUT_DIR"), "/compiled")));
        c.auth = AuthConfig {
            tokens: vec![TokenConfig {
                name: "alice".into(),
                token: Some(ALICE.into()),
                subject: "@alice:x".into(),
                queries: vec!["room-timeline/*".into()],
                topics: vec!["room:*".into()],
                ..TokenConfig::default()
            }],
            ..AuthConfig::default()
        };
    })
    .await;
    let reader_addr = reader.reader().http_addr();
    let admin = pki.https(reader_addr, Client::RightCredentials, ADMIN);
    wait_until(WAIT, "the plugins to run", || async {
        let Ok(plugins) = admin.get_json("/v1/admin/plugins").await else {
            return false;
        };
        plugins
            .as_array()
            .is_some_and(|all| all.len() == 2 && all.iter().all(|p| p["state"] == "running"))
    })
    .await;

    // The writer's HTTP listener: appends, catch-up and the read endpoints.
    let writer_addr = writer.http_addr();
    let row = json!({"room": "!a:x", "sender": "@b:x", "body": SECRET_ROW});
    for client in CLIENTS {
        let api = |token| pki.https(writer_addr, client, token);
        let appended = answer(
            &api(WRITE),
            Method::POST,
            "/v1/streams/messages/rows",
            rows_body(std::slice::from_ref(&row)),
        )
        .await;
        assert_eq!(
            appended.as_ref().map(|a| a.0),
            expected_http(client, 200),
            "writer append, {client:?}: {appended:?}"
        );
    }
    // Exactly one append went through (the right credentials'): the row is at token 1.
    reader
        .wait_for("messages", streamhost_proto::Token(1), WAIT)
        .await;
    for client in CLIENTS {
        let api = |token| pki.https(writer_addr, client, token);
        let catchup = answer(
            &api(CATCHUP),
            Method::GET,
            "/_synapse/replication/get_repl_stream_updates/messages/matrix1?from_token=0&upto_token=1",
            Bytes::new(),
        )
        .await;
        assert_eq!(
            catchup.as_ref().map(|a| a.0),
            expected_http(client, 200),
            "writer catch-up, {client:?}: {catchup:?}"
        );
        for path in ["/v1/streams", "/metrics"] {
            let read = answer(&api(READ), Method::GET, path, Bytes::new()).await;
            assert_eq!(
                read.as_ref().map(|a| a.0),
                expected_http(client, 200),
                "writer {path}, {client:?}: {read:?}"
            );
        }
        let refused = !matches!(client, Client::RightCredentials);
        if refused && let Some((_, body)) = catchup {
            assert!(!body.contains(SECRET_ROW), "{client:?} saw the row: {body}");
        }
    }

    // The writer's replication listener: only the allowed name gets SERVER and positions (and
    // rows: the reader, connected with that name, has the row).
    for client in CLIENTS {
        let lines = replication_lines(writer.replication_addr(), &pki, client).await;
        match client {
            Client::RightCredentials => {
                assert!(lines[0].starts_with("SERVER "), "{lines:?}");
                assert!(
                    lines.iter().any(|l| l.starts_with("POSITION messages")),
                    "{lines:?}"
                );
            }
            Client::WrongCredentials => {
                assert_eq!(
                    lines,
                    ["ERROR client certificate not allowed"],
                    "{client:?}"
                );
            }
            Client::NoCredentials => {
                // The replication protocol has no token: a trusted certificate for the allowed
                // name is the credential, so this client is the right one without a token.
                assert!(lines.iter().any(|l| l.starts_with("POSITION")), "{lines:?}");
            }
            Client::UntrustedCa | Client::NoCertificate => {
                assert!(lines.is_empty(), "{client:?} got {lines:?}");
            }
        }
    }

    // The reader's HTTP listener: status, metrics and the plugin list (read token), the admin API (admin
    // token), a query, a long-poll and an event stream (Alice's API token).
    let timeline = "/v1/query/room-timeline/timeline?room=!a:x&min_token=messages:1";
    let poll = "/v1/notifications?topics=room:!a:x&since=0&timeout_ms=100";
    for client in CLIENTS {
        let api = |token| pki.https(reader_addr, client, token);
        for (path, token) in [
            ("/v1/status", READ),
            ("/metrics", READ),
            ("/v1/plugins", READ),
            ("/v1/admin/plugins", ADMIN),
            (timeline, ALICE),
            (poll, ALICE),
        ] {
            let got = answer(&api(token), Method::GET, path, Bytes::new()).await;
            assert_eq!(
                got.as_ref().map(|a| a.0),
                expected_http(client, 200),
                "reader {path}, {client:?}: {got:?}"
            );
            let body = got.map(|a| a.1).unwrap_or_default();
            let sees_rows = path == timeline || path == poll;
            if sees_rows {
                assert_eq!(
                    body.contains(SECRET_ROW),
                    matches!(client, Client::RightCredentials),
                    "reader {path}, {client:?}: {body}"
                );
            }
        }
    }
    // A right token outside its scope: 403, nothing of the row.
    let alice = pki.https(reader_addr, Client::RightCredentials, ALICE);
    for path in [
        "/v1/notifications?topics=user:@bob:x&since=0&timeout_ms=100",
        "/v1/query/notifier/sent",
    ] {
        let (status, body) = answer(&alice, Method::GET, path, Bytes::new())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN.as_u16(), "{path}: {body}");
        assert!(!body.contains(SECRET_ROW), "{path}: {body}");
    }
}
