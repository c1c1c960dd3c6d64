//! Database URLs: which backend a URL names, a URL made safe to show, and a password (read
//! from a file) put into a URL.

use crate::{LogError, Result};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (`sqlite:PATH`, `sqlite://PATH`).
    Sqlite,
    /// A PostgreSQL database (`postgres://...`, `postgresql://...`).
    Postgres,
}

impl Backend {
    /// The backend of `url`, or an error naming the schemes this log takes (the URL itself
    /// is not repeated: it may hold a password).
    pub fn of_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
            Err(LogError::Url(format!(
                "scheme {scheme:?} is not supported: use sqlite:PATH or postgres://USER@HOST/DB"
            )))
        }
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `url` with any password replaced by `***`, for logs, error messages and status: the one in
/// the authority (`user:secret@`) and a `password=`/`pass=` query parameter (PostgreSQL's and
/// the `redis` crate's UNIX-socket form).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***{}", &rest[at..]),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let query = query.map(|query| {
        let pairs: Vec<&str> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***",
                Some(("pass", _)) => "pass=***",
                _ => pair,
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{scheme}://{rest}{}", query.unwrap_or_default())
}

/// Whether `url` holds a password: in the authority (`user:secret@`) or as a `password=` or
/// `pass=` query parameter.
pub fn has_password(url: &str) -> bool {
    let Some(parts) = UrlParts::of(url) else {
        return false;
    };
    parts.userinfo.is_some_and(|user| user.contains(':'))
        || parts.query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| matches!(pair.split_once('='), Some(("password" | "pass", _))))
        })
}

/// `url` with `password` (percent-encoded) put in: in the authority (`scheme://user:PASSWORD@host`,
/// `scheme://:PASSWORD@host` without a user), or as the `pass=` parameter of a Redis UNIX-socket
/// URL (`redis+unix://`, `unix://`). Refused when `url` already holds a password or has no
/// `scheme://` (a `sqlite:` URL); errors repeat neither the URL nor the password.
pub fn with_password(url: &str, password: &str) -> Result<String> {
    let Some(parts) = UrlParts::of(url) else {
        return Err(LogError::Url(
            "a password goes in a postgres:// or redis URL only".into(),
        ));
    };
    if has_password(url) {
        return Err(LogError::Url(
            "the URL already holds a password: give it in the URL or in the file, not both".into(),
        ));
    }
    let password = percent_encode(password);
    if matches!(parts.scheme, "redis+unix" | "unix") {
        let separator = if parts.query.is_some() { '&' } else { '?' };
        return Ok(format!("{url}{separator}pass={password}"));
    }
    let (user, host) = match parts.userinfo {
        Some(user) => (user, &parts.after_scheme[user.len() + 1..]),
        None => ("", parts.after_scheme),
    };
    Ok(format!("{}://{user}:{password}@{host}", parts.scheme))
}

/// The pieces of a `scheme://[userinfo@]host[/path][?query]` URL this module looks at.
struct UrlParts<'a> {
    scheme: &'a str,
    /// Everything after `://`.
    after_scheme: &'a str,
    /// What comes before the authority's last `@`, if there is one.
    userinfo: Option<&'a str>,
    /// What comes after the first `?`.
    query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, after_scheme) = url.split_once("://")?;
        let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
        let userinfo = after_scheme[..authority_end]
            .rfind('@')
            .map(|at| &after_scheme[..at]);
        let query = after_scheme.split_once('?').map(|(_, query)| query);
        Some(UrlParts {
            scheme,
            after_scheme,
            userinfo,
            query,
        })
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any password is a
/// valid userinfo or query value (and a stream name one path segment).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_password_goes_into_the_authority_or_a_unix_socket_query() {
        for (url, with) in [
            (
                "postgres://streamhost@db:5432/log?sslmode=verify-full",
                "postgres://streamhost:p%40ss%20w%3Ard@db:5432/log?sslmode=verify-full",
            ),
            ("postgres://db/log", "postgres://:p%40ss%20w%3Ard@db/log"),
            (
                "rediss://redis:6380/2",
                "rediss://:p%40ss%20w%3Ard@redis:6380/2",
            ),
            (
                "redis+unix:///run/r.sock?db=1",
                "redis+unix:///run/r.sock?db=1&pass=p%40ss%20w%3Ard",
            ),
            (
                "unix:///run/r.sock",
                "unix:///run/r.sock?pass=p%40ss%20w%3Ard",
            ),
        ] {
            assert!(!has_password(url), "{url}");
            let got = with_password(url, "p@ss w:rd").unwrap();
            assert_eq!(got, with);
            assert!(has_password(&got), "{got}");
            assert!(!redact_url(&got).contains("p%40ss"), "{got}");
        }
    }

    #[test]
    fn a_second_password_or_a_sqlite_url_is_refused_without_repeating_either() {
        for url in [
            "postgres://u:inurl@db/log",
            "postgres://u@db/log?password=inurl",
            "redis+unix:///run/r.sock?pass=inurl",
            "sqlite:inurl.db",
        ] {
            let err = with_password(url, "fromfile").unwrap_err().to_string();
            assert!(!err.contains("inurl") && !err.contains("fromfile"), "{err}");
        }
    }
}
