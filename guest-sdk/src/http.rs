//! Outbound HTTP through the standard `wasi:http/outgoing-handler` import (wasi 0.2).
//!
//! A small synchronous client: [`get`], [`post`] and [`request`] send one request and return
//! the whole [`Response`] (status, headers and body). A plugin that calls none of them does
//! not import `wasi:http` at all; one that does must ask for the targets in its `plugin.toml`
//! (`http = ["https://api.example.org", "my-destination"]`) and be granted them by the
//! operator, or the reader refuses to load it.
//!
//! The host checks every request: its scheme, host and port must match a granted origin, or
//! its URL must start with a granted destination's URL (the host then adds the destination's
//! headers, such as an `Authorization` the plugin never sees). A refused request, a timeout,
//! a response over the host's size cap or one request too many in a call come back as an
//! [`HttpError`], which the plugin may handle like any other error. Outbound requests are
//! allowed in `on_batch` only (not in queries, `init` or `restore`).
//!
//! ```no_run
//! use streamhost_guest_sdk::{PluginError, http};
//!
//! fn lookup(user: &str) -> Result<String, PluginError> {
//!     let response = http::get(&format!("https://directory.example.org/users/{user}"))?;
//!     if response.status != 200 {
//!         return Err(PluginError::retry(format!("directory answered {}", response.status)));
//!     }
//!     Ok(response.text())
//! }
//! ```

use std::fmt;

use crate::PluginError;
use crate::http_bindings::wasi::http::outgoing_handler;
use crate::http_bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::http_bindings::wasi::io::streams::StreamError;

/// A whole HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (`200`, `404`, …).
    pub status: u16,
    /// The header fields in the order received, names in lower case; values that are not
    /// UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The body, complete.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossily, if it is not UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Other(format!("response body is not the JSON expected: {e}")))
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The host refused the request: its target was not granted, the call already made as
    /// many requests as it may, or requests are not allowed in this call (only `on_batch`
    /// may make them).
    Denied,
    /// The URL could not be parsed or used (only `http://` and `https://` URLs are).
    InvalidUrl(String),
    /// A header name or value was not valid.
    InvalidHeader(String),
    /// No complete response in time (the host's per-request timeout or what was left of
    /// the call's deadline).
    Timeout,
    /// The response body was larger than the host allows.
    TooLarge,
    /// Anything else: the connection failed, the server broke the protocol, …
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied => f.write_str("HTTP request denied by the host"),
            HttpError::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            HttpError::InvalidHeader(m) => write!(f, "invalid header: {m}"),
            HttpError::Timeout => f.write_str("HTTP request timed out"),
            HttpError::TooLarge => f.write_str("HTTP response too large"),
            HttpError::Other(m) => write!(f, "HTTP request failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for PluginError {
    /// A denied request or a bad URL or header is a mistake a retry does not fix (fatal);
    /// anything else may be transient (retry).
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied | HttpError::InvalidUrl(_) | HttpError::InvalidHeader(_) => {
                PluginError::fatal(e.to_string())
            }
            _ => PluginError::retry(e.to_string()),
        }
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied,
            ErrorCode::HttpRequestUriInvalid => HttpError::InvalidUrl("refused by the host".into()),
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => HttpError::Timeout,
            ErrorCode::HttpResponseBodySize(_) => HttpError::TooLarge,
            ErrorCode::InternalError(Some(m)) => HttpError::Other(m),
            other => HttpError::Other(format!("{other:?}")),
        }
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    request("GET", url, &[], &[])
}

/// `POST url` with `body` of the given content type.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Result<Response, HttpError> {
    request("POST", url, &[("content-type", content_type)], body)
}

/// Sends one request and waits for the whole response. `method` is any HTTP method
/// (`"GET"`, `"POST"`, `"PUT"`, …); `body` is sent when not empty.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let target = Target::parse(url)?;
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let fields =
        Fields::from_list(&fields).map_err(|e| HttpError::InvalidHeader(format!("{e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let bad = |what: &str| HttpError::InvalidUrl(format!("{what} of {url}"));
    request
        .set_method(&method_of(method))
        .map_err(|()| bad("method"))?;
    request
        .set_scheme(Some(&target.scheme))
        .map_err(|()| bad("scheme"))?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| bad("authority"))?;
    request
        .set_path_with_query(Some(&target.path))
        .map_err(|()| bad("path"))?;
    let outgoing = if body.is_empty() {
        None
    } else {
        Some(
            request
                .body()
                .map_err(|()| HttpError::Other("no request body".into()))?,
        )
    };
    let future = outgoing_handler::handle(request, None)?;
    if let Some(outgoing) = outgoing {
        write_body(&outgoing, body)?;
        OutgoingBody::finish(outgoing, None)?;
    }
    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = response.map_err(|()| HttpError::Other("response taken twice".into()))??;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| HttpError::Other("response body taken twice".into()))?;
    let body = read_body(incoming)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn write_body(outgoing: &OutgoingBody, body: &[u8]) -> Result<(), HttpError> {
    let stream = outgoing
        .write()
        .map_err(|()| HttpError::Other("request body stream taken twice".into()))?;
    // blocking-write-and-flush takes at most 4096 bytes at a time.
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(stream_error)?;
    }
    Ok(())
}

fn read_body(incoming: IncomingBody) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| HttpError::Other("response body stream taken twice".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(e)),
            }
        }
    }
    let trailers = IncomingBody::finish(incoming);
    let _ = trailers.get();
    Ok(body)
}

fn stream_error(e: StreamError) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Other("stream closed".into()),
        StreamError::LastOperationFailed(error) => {
            // The host's reason (a body over the cap, a timeout) comes as an error-code.
            match crate::http_bindings::wasi::http::types::http_error_code(&error) {
                Some(code) => code.into(),
                None => HttpError::Other(error.to_debug_string()),
            }
        }
    }
}

fn method_of(method: &str) -> Method {
    match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(method.to_string()),
    }
}

/// A URL split the way `outgoing-request` wants it.
struct Target {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HttpError> {
        let invalid = || HttpError::InvalidUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid());
        }
        // The fragment is never sent.
        let path = path.split('#').next().unwrap_or_default();
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Target {
            scheme,
            authority: authority.to_string(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let t = Target::parse("https://api.example.org:8443/v1/x?y=1#frag").unwrap();
        assert!(matches!(t.scheme, Scheme::Https));
        assert_eq!(t.authority, "api.example.org:8443");
        assert_eq!(t.path, "/v1/x?y=1");
        let t = Target::parse("http://h").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("h", "/"));
        let t = Target::parse("http://h?q").unwrap();
        assert_eq!(t.path, "/?q");
        for bad in ["ftp://h/", "h/x", "https:///x", "https://user@h/"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_map_to_plugin_errors() {
        assert!(matches!(
            PluginError::from(HttpError::Denied).kind,
            crate::ErrorKind::Fatal
        ));
        assert!(matches!(
            PluginError::from(HttpError::Timeout).kind,
            crate::ErrorKind::Retry
        ));
        assert_eq!(
            HttpError::from(ErrorCode::HttpRequestDenied),
            HttpError::Denied
        );
        assert_eq!(
            HttpError::from(ErrorCode::HttpResponseBodySize(None)),
            HttpError::TooLarge
        );
    }
}
