//! `streamhost admin`: a reader's admin API from the command line (`docs/admin.md`). Each
//! subcommand is one request to the reader at `--url` (or `STREAMHOST_ADMIN_URL`), with the
//! admin token from `STREAMHOST_ADMIN_TOKEN` or `--token-file` (never a flag's value: `ps`
//! shows flags to every user), printed as a table or, with `--json`, as the API's JSON.
//!
//! Files: `show` (the tables and lines each answer is printed as), `table` (column alignment).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use streamhost_server::client::ApiClient;
use streamhost_server::config::Secret;
use streamhost_server::reader::plugins::ADMIN_REQUEST_TIMEOUT;

mod show;
mod table;

/// The reader's HTTP address when neither `--url` nor `STREAMHOST_ADMIN_URL` names one: the
/// reader's own default (`[reader.http] address`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8481";

/// Dead letters one `dead-letters` asks for at most: the reader's own bound.
const MAX_DEAD_LETTERS: u32 = 1_000;

/// How much longer than the admin API's own bound an answer is waited for.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// Flags of `streamhost admin`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The admin token comes from STREAMHOST_ADMIN_TOKEN or the file \
--token-file names (a flag's value would show in `ps`); `status` goes without one when the \
reader has no read token. An https:// URL is verified against the system's roots \
(SSL_CERT_FILE or SSL_CERT_DIR replace them)."
)]
pub struct AdminArgs {
    /// The reader's HTTP API: http://HOST:PORT or https://HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "STREAMHOST_ADMIN_URL",
        default_value = DEFAULT_URL,
        value_name = "URL"
    )]
    pub url: String,
    /// A file holding the admin token (instead of STREAMHOST_ADMIN_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's answer as indented JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to ask the reader.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The `streamhost admin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Every plugin: state, version, lag, counts, and why it is not running.
    Plugins,
    /// One plugin in detail: cursors, grants, failures, its last failure report.
    Plugin {
        /// The plugin's name.
        name: String,
    },
    /// Reload a plugin from its folder; the old version runs on if the new one fails.
    Reload {
        /// The plugin's name.
        name: String,
    },
    /// Stop a plugin at its next batch boundary, as repeated failures would; `resume` lifts it.
    Quarantine {
        /// The plugin's name.
        name: String,
        /// Why, shown in the plugin's state as "by operator: REASON" (one line).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Lift a plugin's quarantine: it runs again from its cursor.
    Resume {
        /// The plugin's name.
        name: String,
    },
    /// The batches a plugin skipped, newest first.
    DeadLetters {
        /// The plugin's name.
        name: String,
        /// How many to show, newest first (1 to 1000).
        #[arg(long, default_value_t = 100, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DEAD_LETTERS)))]
        limit: u32,
    },
    /// The reader: its connection to the writer, each stream's position and lag, its plugins.
    Status,
}

/// Where the admin token came from, for the errors that concern it.
struct Token {
    secret: Secret,
    source: String,
}

/// The admin token: `--token-file` first, then `STREAMHOST_ADMIN_TOKEN` (from `env`); `None`
/// when neither is given.
fn token(
    token_file: Option<&PathBuf>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Token>> {
    if let Some(path) = token_file {
        let secret = streamhost_server::config::secrets::read(path, "--token-file")?;
        return Ok(Some(Token {
            secret,
            source: format!("the file {}", path.display()),
        }));
    }
    match env("STREAMHOST_ADMIN_TOKEN") {
        Some(value) if value.is_empty() => anyhow::bail!("STREAMHOST_ADMIN_TOKEN is set but empty"),
        Some(value) => Ok(Some(Token {
            secret: value.into(),
            source: "STREAMHOST_ADMIN_TOKEN".into(),
        })),
        None => Ok(None),
    }
}

/// The characters a plugin name keeps in a URL path: letters, digits, `-`, `_`, `.`, `~`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `/v1/admin/plugins/NAME/rest`, the name percent-encoded.
fn plugin_path(name: &str, rest: &str) -> String {
    format!(
        "/v1/admin/plugins/{}{rest}",
        utf8_percent_encode(name, PATH_SEGMENT)
    )
}

/// Runs one `streamhost admin` command and returns what to print.
pub async fn run(args: &AdminArgs) -> anyhow::Result<String> {
    run_with(args, |name| std::env::var(name).ok()).await
}

/// [`run`] with the environment variables `env` gives.
async fn run_with(
    args: &AdminArgs,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let url = args.url.trim_end_matches('/');
    let valid = url.parse::<hyper::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some()
            && uri
                .path_and_query()
                .is_none_or(|p| p.as_str().is_empty() || p == "/")
    });
    anyhow::ensure!(
        valid,
        "--url (or STREAMHOST_ADMIN_URL) must be http://HOST:PORT or https://HOST:PORT, not {url:?}"
    );
    let token = token(args.token_file.as_ref(), env)?;
    let needs_token = !matches!(args.command, AdminCommand::Status);
    if needs_token && token.is_none() {
        anyhow::bail!(
            "no admin token: set STREAMHOST_ADMIN_TOKEN or pass --token-file FILE (the \
             reader's reader.plugins.admin_token)"
        );
    }
    // Past the admin API's own bound it answers 503; the margin lets that answer arrive.
    let client = ApiClient::new(url).with_timeout(ADMIN_REQUEST_TIMEOUT + ANSWER_MARGIN);
    let reader = Reader {
        client: match &token {
            Some(token) => client.with_bearer(token.secret.clone()),
            None => client,
        },
        url: url.to_owned(),
        token_source: token.map(|t| t.source),
    };
    let (answer, printed) = match &args.command {
        AdminCommand::Plugins => {
            let answer = reader.call(Method::GET, "/v1/admin/plugins", None).await?;
            let printed = show::plugins(&answer);
            (answer, printed)
        }
        AdminCommand::Plugin { name } => {
            let all = reader.call(Method::GET, "/v1/admin/plugins", None).await?;
            let answer = all
                .as_array()
                .and_then(|plugins| plugins.iter().find(|p| p["name"] == name.as_str()))
                .cloned()
                .with_context(|| format!("the reader at {url} has no plugin named {name}"))?;
            let printed = show::plugin(&answer);
            (answer, printed)
        }
        AdminCommand::Reload { name } => {
            let answer = reader
                .call(Method::POST, &plugin_path(name, "/reload"), None)
                .await?;
            let printed = format!(
                "reloaded {name}: version {}\n",
                answer["sha256"].as_str().unwrap_or("?")
            );
            (answer, printed)
        }
        AdminCommand::Quarantine { name, reason } => {
            let body = serde_json::json!({ "reason": reason });
            let answer = reader
                .call(Method::POST, &plugin_path(name, "/quarantine"), Some(body))
                .await?;
            let printed = format!(
                "quarantined {name} ({}); `streamhost admin resume {name}` lifts it\n",
                answer["reason"].as_str().unwrap_or("by operator")
            );
            (answer, printed)
        }
        AdminCommand::Resume { name } => {
            let answer = reader
                .call(Method::POST, &plugin_path(name, "/resume"), None)
                .await?;
            (
                answer,
                format!("resumed {name}: it runs again from its cursor\n"),
            )
        }
        AdminCommand::DeadLetters { name, limit } => {
            let path = plugin_path(name, &format!("/dead-letters?limit={limit}"));
            let answer = reader.call(Method::GET, &path, None).await?;
            let printed = show::dead_letters(name, &answer, streamhost_server::clock::unix_ms());
            (answer, printed)
        }
        AdminCommand::Status => {
            let answer = reader.call(Method::GET, "/v1/status", None).await?;
            let printed = show::status(&answer);
            (answer, printed)
        }
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&answer)?;
        text.push('\n');
        return Ok(text);
    }
    Ok(printed)
}

/// The reader being asked, and what the errors say about it.
struct Reader {
    client: ApiClient,
    url: String,
    /// Where the token came from, when one is sent.
    token_source: Option<String>,
}

impl Reader {
    /// Sends one request and returns its JSON answer; any other answer is an error saying
    /// what went wrong in the operator's terms.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let body = match body {
            Some(body) => Bytes::from(serde_json::to_vec(&body)?),
            None => Bytes::new(),
        };
        let (status, answer) = self
            .client
            .send(method.clone(), path, body)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the reader at {}: {e:#} (is it running? --url or \
                     STREAMHOST_ADMIN_URL names it)",
                    self.url
                )
            })?;
        if status.is_success() {
            return serde_json::from_slice(&answer)
                .with_context(|| format!("{method} {path}: the reader's answer is not JSON"));
        }
        Err(self.refusal(status, &answer))
    }

    /// The error for an answer that is not a success.
    fn refusal(&self, status: StatusCode, body: &[u8]) -> anyhow::Error {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v["error"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        let source = self.token_source.as_deref();
        match (status, source) {
            (StatusCode::UNAUTHORIZED, Some(source)) => anyhow::anyhow!(
                "the reader at {} refused the token from {source} (401): {message}",
                self.url
            ),
            (StatusCode::UNAUTHORIZED, None) => anyhow::anyhow!(
                "the reader at {} wants a token (401): set STREAMHOST_ADMIN_TOKEN or pass \
                 --token-file FILE",
                self.url
            ),
            (StatusCode::FORBIDDEN, _) => anyhow::anyhow!(
                "the reader at {} refused (403): {message}{}",
                self.url,
                source.map_or(String::new(), |s| format!(" (the token from {s})"))
            ),
            (StatusCode::NOT_FOUND, _) => anyhow::anyhow!("{message} (404 from {})", self.url),
            (StatusCode::CONFLICT, _) => anyhow::anyhow!("{message} (409)"),
            (status, _) => {
                anyhow::anyhow!("the reader at {} answered {status}: {message}", self.url)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_one_path_segment() {
        assert_eq!(
            plugin_path("room-timeline", "/reload"),
            "/v1/admin/plugins/room-timeline/reload"
        );
        assert_eq!(plugin_path("../x y", ""), "/v1/admin/plugins/..%2Fx%20y");
    }

    #[test]
    fn the_token_file_beats_the_environment_and_an_empty_variable_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").expect("write");
        let env = |_: &str| Some("from-env".to_string());
        let t = token(Some(&file), env).expect("token").expect("some");
        assert_eq!(
            (t.secret.expose(), t.source.contains("token")),
            ("from-file", true)
        );
        let t = token(None, env).expect("token").expect("some");
        assert_eq!(
            (t.secret.expose(), t.source.as_str()),
            ("from-env", "STREAMHOST_ADMIN_TOKEN")
        );
        assert!(token(None, |_| None).expect("no token").is_none());
        let err = token(None, |_| Some(String::new()))
            .err()
            .expect("empty refused");
        assert!(err.to_string().contains("set but empty"), "{err}");
    }
}
