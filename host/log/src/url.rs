//! Database URLs: which backend a URL names, and a URL made safe to show.

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
