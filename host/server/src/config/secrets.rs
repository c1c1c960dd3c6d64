//! Secrets in the configuration: [`Secret`] (a token never shown: its `Debug` is `***`),
//! [`SecretUrl`] (a URL whose password is never shown), and the `*_file` keys that read them
//! from files ([`load`], [`load_password`]).
//!
//! Serializing a configuration (`streamhost config check`) writes every secret as `***` and
//! every URL with its password as `***`: the values never leave through serde.
//!
//! A secret is set in the file, by an environment variable, or by a file named in the
//! configuration, never on the command line (which `ps` shows to every user). Files are read
//! once, at start; the value replaces the `*_file` key, so a configuration that has been
//! loaded holds each secret in one place.

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize, Serializer};

/// A secret value (a bearer token, a password): `Debug` prints `***`, and there is no
/// `Display`, so a configuration can be logged whole. The value is read with
/// [`Secret::expose`] (or through `Deref`, so `Option<Secret>::as_deref()` gives the
/// `Option<&str>` a check compares against).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Always `***`: a serialized configuration shows that the secret is set, never its value.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

/// What a serialized configuration shows in place of a secret.
pub const MASK: &str = "***";

/// Serializes a secret kept as a plain `Option<String>` as [`Secret`] does: `***` when set.
pub fn serialize_masked<S: Serializer>(
    value: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(MASK),
        None => serializer.serialize_none(),
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// A database or Redis URL that may carry a password: `Debug` shows it with the password as
/// `***` ([`streamhost_log::redact_url`]). `Deref` gives the URL itself, to connect with.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL, password included, for the one place that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password as `***`, for logs, errors and status.
    pub fn redacted(&self) -> String {
        streamhost_log::redact_url(&self.0)
    }
}

impl Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

/// The URL with its password as `***` ([`SecretUrl::redacted`]).
impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> SecretUrl {
        SecretUrl(value)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> SecretUrl {
        SecretUrl(value.to_owned())
    }
}

/// Resolves the pair `key` / `file_key` (`writer.write_token` / `writer.write_token_file`):
/// both set is an error, and so is an empty value (a bearer token `""` would let anyone in);
/// a file alone is read ([`read`]) into `value` and the file key cleared, so loading twice is
/// harmless.
pub fn load(
    value: &mut Option<Secret>,
    file: &mut Option<PathBuf>,
    key: &str,
    file_key: &str,
) -> anyhow::Result<()> {
    match (&*value, file.take()) {
        (Some(_), Some(_)) => anyhow::bail!("set {key} or {file_key}, not both"),
        (None, Some(path)) => *value = Some(read(&path, file_key)?),
        (Some(secret), None) => anyhow::ensure!(!secret.is_empty(), "{key} is empty"),
        (None, None) => {}
    }
    Ok(())
}

/// Puts the password in `password_file` (`file_key`) into `url` (`url_key`), then clears the
/// file key. Refused without a URL, or when the URL already holds a password; errors never
/// repeat the URL or the password.
pub fn load_password(
    url: Option<&mut SecretUrl>,
    file: &mut Option<PathBuf>,
    url_key: &str,
    file_key: &str,
) -> anyhow::Result<()> {
    let Some(path) = file.take() else {
        return Ok(());
    };
    let Some(url) = url else {
        anyhow::bail!("{file_key} is the password of {url_key}: set {url_key} too");
    };
    let password = read(&path, file_key)?;
    let with = streamhost_log::with_password(url, password.expose())
        .with_context(|| format!("{url_key} with {file_key}"))?;
    *url = SecretUrl(with);
    Ok(())
}

/// The secret in the file at `path`, named `key` in errors: its contents less one trailing
/// newline (`\n` or `\r\n`, as `echo` and editors leave); an empty secret is refused.
pub fn read(path: &Path, key: &str) -> anyhow::Result<Secret> {
    let mut text = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: reading {}", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    anyhow::ensure!(!text.is_empty(), "{key}: {} is empty", path.display());
    Ok(Secret(text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_its_contents_less_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        for (text, value) in [
            ("tok\n", "tok"),
            ("tok\r\n", "tok"),
            ("tok", "tok"),
            ("tok\n\n", "tok\n"),
            (" spaced tok \n", " spaced tok "),
        ] {
            let path = dir.path().join("secret");
            std::fs::write(&path, text).unwrap();
            assert_eq!(read(&path, "k").unwrap().expose(), value, "{text:?}");
        }
    }

    #[test]
    fn an_empty_or_missing_file_is_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, "\n").unwrap();
        let err = format!("{:#}", read(&path, "writer.write_token_file").unwrap_err());
        assert!(
            err.contains("writer.write_token_file") && err.contains("empty"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            read(&dir.path().join("absent"), "reader.replication_secret_file").unwrap_err()
        );
        assert!(err.contains("reader.replication_secret_file"), "{err}");
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn a_value_and_its_file_together_are_refused_and_loading_twice_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let mut value = Some(Secret::from("inline"));
        let mut file = Some(path.clone());
        let err = load(&mut value, &mut file, "a.token", "a.token_file").unwrap_err();
        assert_eq!(err.to_string(), "set a.token or a.token_file, not both");
        assert!(!err.to_string().contains("inline"));
        let (mut value, mut file) = (None, Some(path));
        load(&mut value, &mut file, "a.token", "a.token_file").unwrap();
        assert_eq!(value.as_deref(), Some("from-file"));
        assert_eq!(file, None);
        load(&mut value, &mut file, "a.token", "a.token_file").unwrap();
        assert_eq!(value.as_deref(), Some("from-file"));
    }

    #[test]
    fn a_password_file_goes_into_the_url_and_debug_shows_neither() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret/pw\n").unwrap();
        let mut url = SecretUrl::from("postgres://streamhost@db/log?sslmode=verify-full");
        let mut file = Some(path.clone());
        load_password(Some(&mut url), &mut file, "u", "u_file").unwrap();
        assert_eq!(
            url.expose(),
            "postgres://streamhost:s3cret%2Fpw@db/log?sslmode=verify-full"
        );
        let shown = format!("{url:?} {:?}", Secret::from("s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
        let err = load_password(None, &mut Some(path.clone()), "w.url", "w.password_file")
            .unwrap_err()
            .to_string();
        assert!(err.contains("set w.url too"), "{err}");
        let mut inline = SecretUrl::from("postgres://u:inline@db/log");
        let err = format!(
            "{:#}",
            load_password(
                Some(&mut inline),
                &mut Some(path),
                "w.url",
                "w.password_file"
            )
            .unwrap_err()
        );
        assert!(
            err.contains("not both") && err.contains("w.password_file"),
            "{err}"
        );
        assert!(!err.contains("inline") && !err.contains("s3cret"), "{err}");
    }
}
