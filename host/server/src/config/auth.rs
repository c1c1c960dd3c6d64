//! `[reader.auth]`: who may use a reader's plugin queries and notifications
//! (`docs/security.md`). API tokens configured here (`[[reader.auth.tokens]]`) or issued by the
//! admin API, each with a scope; optionally an authorizer plugin asked per subject.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// `[reader.auth]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a token on the plugin query and notification endpoints. Unset, auth is on as
    /// soon as a token or an authorizer is configured; `true` alone (no tokens) means only
    /// tokens issued by the admin API are accepted; `false` with tokens is an error.
    pub enabled: Option<bool>,
    /// The configured tokens.
    pub tokens: Vec<TokenConfig>,
    /// A plugin exporting `authorizer` (WIT 0.2.0) asked whether a token's subject may run a
    /// query or receive a topic, after the token's scope allowed it.
    pub authorizer: Option<String>,
    /// Longest one `authorize` call may take; over it the request is denied (fail closed).
    pub authorizer_timeout_ms: u64,
    /// How long an authorizer's answer is reused for the same question; dropped whenever the
    /// authorizer plugin applies a batch.
    pub authorizer_cache_ms: u64,
    /// Longest a notification waits for the authorizer to reach the row that produced it;
    /// past it the notification is withheld (fail closed).
    pub authorizer_wait_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: None,
            tokens: Vec::new(),
            authorizer: None,
            authorizer_timeout_ms: 100,
            authorizer_cache_ms: 1_000,
            authorizer_wait_ms: 5_000,
        }
    }
}

/// One `[[reader.auth.tokens]]`.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for the operator (logs, metrics); unique.
    pub name: String,
    /// The secret a client sends as `Authorization: Bearer <token>` (serialized as `***`,
    /// like a [`Secret`](super::Secret)).
    #[serde(serialize_with = "super::secrets::serialize_masked")]
    pub token: Option<String>,
    /// A file holding the secret (its surrounding whitespace ignored), instead of `token`.
    pub token_file: Option<PathBuf>,
    /// Who the holder is, for the authorizer and `{subject}` in `topics`, e.g.
    /// `@alice:example.org`.
    pub subject: String,
    /// `plugin/query` patterns the holder may read (`*` matches any run of characters).
    pub queries: Vec<String>,
    /// Topic patterns the holder may subscribe to (`*` wildcards, `{subject}` replaced).
    pub topics: Vec<String>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("token_file", &self.token_file)
            .field("subject", &self.subject)
            .field("queries", &self.queries)
            .field("topics", &self.topics)
            .finish()
    }
}

/// Shortest accepted token secret, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

impl TokenConfig {
    /// The secret, from `token` or `token_file`.
    pub fn secret(&self) -> anyhow::Result<String> {
        let secret = match (&self.token, &self.token_file) {
            (Some(token), None) => token.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .with_context(|| format!("reading token_file {}", file.display()))?
                .trim()
                .to_owned(),
            _ => anyhow::bail!("set one of token and token_file"),
        };
        anyhow::ensure!(
            secret.len() >= MIN_TOKEN_BYTES && !secret.chars().any(char::is_whitespace),
            "the token must be at least {MIN_TOKEN_BYTES} characters, without spaces"
        );
        Ok(secret)
    }
}

impl AuthConfig {
    /// Whether the plugin query and notification endpoints require a token.
    pub fn is_enabled(&self) -> bool {
        self.enabled
            .unwrap_or(!self.tokens.is_empty() || self.authorizer.is_some())
    }

    /// Checks the table: names unique and non-empty, each secret readable and unique, each
    /// pattern well-formed, the authorizer's times positive.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.enabled != Some(false) || (self.tokens.is_empty() && self.authorizer.is_none()),
            "reader.auth.enabled = false, but tokens or an authorizer are configured"
        );
        let mut names = std::collections::BTreeSet::new();
        let mut secrets = std::collections::BTreeSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let what = format!("reader.auth.tokens[{i}]");
            anyhow::ensure!(!token.name.is_empty(), "{what}.name is required");
            anyhow::ensure!(
                names.insert(token.name.as_str()),
                "{what}: another token is named {:?}",
                token.name
            );
            anyhow::ensure!(
                !token.subject.is_empty(),
                "{what} ({}): subject is required",
                token.name
            );
            let secret = token
                .secret()
                .with_context(|| format!("{what} ({})", token.name))?;
            anyhow::ensure!(
                secrets.insert(secret),
                "{what} ({}): another token has the same secret",
                token.name
            );
            super::Scope::new(&token.subject, &token.queries, &token.topics)
                .with_context(|| format!("{what} ({})", token.name))?;
        }
        if let Some(name) = &self.authorizer {
            anyhow::ensure!(!name.is_empty(), "reader.auth.authorizer: a plugin name");
        }
        anyhow::ensure!(
            self.authorizer_timeout_ms > 0 && self.authorizer_wait_ms > 0,
            "reader.auth.authorizer_timeout_ms and authorizer_wait_ms must be > 0"
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    #[test]
    fn tokens_turn_auth_on_and_parse() {
        let config = ConfigFile::parse(
            "[[reader.auth.tokens]]\nname = \"alice\"\ntoken = \"0123456789abcdef0\"\n\
             subject = \"@alice:x\"\nqueries = [\"room-timeline/*\"]\ntopics = [\"user:{subject}\"]\n",
        )
        .unwrap();
        assert!(config.reader.auth.is_enabled());
        config.reader.auth.validate().unwrap();
        assert!(!ConfigFile::parse("").unwrap().reader.auth.is_enabled());
        let only_issued = ConfigFile::parse("[reader.auth]\nenabled = true\n").unwrap();
        assert!(only_issued.reader.auth.is_enabled());
        let secret = format!("{:?}", config.reader.auth);
        assert!(!secret.contains("0123456789abcdef0"), "{secret}");
    }

    #[test]
    fn bad_tokens_are_named() {
        for (toml, expected) in [
            ("name = \"a\"\nsubject = \"s\"\n", "token_file"),
            (
                "name = \"a\"\nsubject = \"s\"\ntoken = \"short\"\n",
                "at least",
            ),
            (
                "name = \"\"\nsubject = \"s\"\ntoken = \"0123456789abcdef0\"\n",
                "name",
            ),
            ("name = \"a\"\ntoken = \"0123456789abcdef0\"\n", "subject"),
            (
                "name = \"a\"\nsubject = \"s\"\ntoken = \"0123456789abcdef0\"\nqueries = [\"noslash\"]\n",
                "plugin/query",
            ),
            (
                "name = \"a\"\nsubject = \"s\"\ntoken_file = \"/nonexistent/x\"\n",
                "/nonexistent/x",
            ),
        ] {
            let config = ConfigFile::parse(&format!("[[reader.auth.tokens]]\n{toml}")).unwrap();
            let err = format!("{:#}", config.reader.auth.validate().unwrap_err());
            assert!(err.contains(expected), "{toml}: {err}");
        }
        let twice = "[[reader.auth.tokens]]\nname = \"a\"\nsubject = \"s\"\ntoken = \"0123456789abcdef0\"\n";
        let config = ConfigFile::parse(&format!("{twice}{twice}")).unwrap();
        let err = format!("{:#}", config.reader.auth.validate().unwrap_err());
        assert!(err.contains("another token"), "{err}");
        let off = format!("[reader.auth]\nenabled = false\n{twice}");
        let err = format!(
            "{:#}",
            ConfigFile::parse(&off)
                .unwrap()
                .reader
                .auth
                .validate()
                .unwrap_err()
        );
        assert!(err.contains("enabled = false"), "{err}");
    }

    #[test]
    fn an_authorizer_needs_plugins() {
        let config = ConfigFile::parse("[reader.auth]\nauthorizer = \"a\"\n").unwrap();
        assert!(config.reader.auth.is_enabled());
        let err = format!("{:#}", config.reader.validate().unwrap_err());
        assert!(err.contains("reader.plugins.dir"), "{err}");
        let config =
            ConfigFile::parse("[reader.auth]\nauthorizer = \"a\"\n[reader.plugins]\ndir = \"p\"\n")
                .unwrap();
        config.reader.validate().unwrap();
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alice.token");
        std::fs::write(&file, "0123456789abcdef0\n").unwrap();
        let token = TokenConfig {
            name: "a".into(),
            token_file: Some(file),
            subject: "s".into(),
            ..TokenConfig::default()
        };
        assert_eq!(token.secret().unwrap(), "0123456789abcdef0");
    }
}
