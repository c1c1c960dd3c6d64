//! [`HttpPolicy`]: the targets one plugin was granted, resolved at load (origins parsed,
//! destination names looked up), and the check of each request's URL against them.

use http::{HeaderName, HeaderValue, Uri};

use super::HttpBackend;
use crate::push::Destinations;

/// An origin: scheme, host (lower case) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `uri`, if it is an absolute `http` or `https` URL.
    fn of(uri: &Uri) -> Option<Origin> {
        let https = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("https") => true,
            s if s.eq_ignore_ascii_case("http") => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Origin {
            https,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

/// A granted destination: its origin, its path prefix and the headers the host adds.
#[derive(Debug)]
struct DestinationTarget {
    origin: Origin,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl DestinationTarget {
    /// Whether `path` (of a request to the same origin) lies under this destination.
    fn covers(&self, path: &str) -> bool {
        match path.strip_prefix(self.path.as_str()) {
            None => false,
            Some(rest) => {
                self.path.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?'])
            }
        }
    }
}

/// What one plugin may call, and who answers.
#[derive(Debug)]
pub(crate) struct HttpPolicy {
    origins: Vec<Origin>,
    destinations: Vec<DestinationTarget>,
    backend: HttpBackend,
}

impl HttpPolicy {
    /// The policy of a plugin granted `targets` (origins `http[s]://host[:port]` or names of
    /// `destinations`). `Err` names a target that is neither.
    pub(crate) fn new(
        targets: &[String],
        destinations: &Destinations,
        backend: HttpBackend,
    ) -> Result<HttpPolicy, String> {
        let mut policy = HttpPolicy {
            origins: Vec::new(),
            destinations: Vec::new(),
            backend,
        };
        for target in targets {
            if target.contains("://") {
                let uri: Uri = target
                    .parse()
                    .map_err(|e| format!("http target {target:?} is not a URL: {e}"))?;
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
                let origin = Origin::of(&uri).filter(|_| path.is_empty() || path == "/");
                let origin = origin.ok_or_else(|| {
                    format!("http target {target:?} is not an origin (http[s]://host[:port])")
                })?;
                policy.origins.push(origin);
                continue;
            }
            let destination = destinations.get(target).ok_or_else(|| {
                format!("http target {target:?} is neither an origin nor a declared destination")
            })?;
            let uri: Uri = destination
                .url
                .parse()
                .map_err(|e| format!("destination {target}: url is not a URL: {e}"))?;
            let origin = Origin::of(&uri)
                .ok_or_else(|| format!("destination {target}: url is not http[s]://…"))?;
            let mut headers = Vec::new();
            for (name, value) in &destination.headers {
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|e| format!("destination {target}: header {name:?}: {e}"))?;
                let mut value = HeaderValue::try_from(value.as_str())
                    .map_err(|e| format!("destination {target}: header {name}: {e}"))?;
                value.set_sensitive(true);
                headers.push((name, value));
            }
            policy.destinations.push(DestinationTarget {
                origin,
                path: uri.path().to_string(),
                headers,
            });
        }
        // The most specific destination first.
        policy
            .destinations
            .sort_by_key(|d| std::cmp::Reverse(d.path.len()));
        Ok(policy)
    }

    /// Who answers admitted requests.
    pub(crate) fn backend(&self) -> &HttpBackend {
        &self.backend
    }

    /// Whether `name` is a header one of the plugin's destinations sets (the plugin may not).
    pub(crate) fn hides(&self, name: &HeaderName) -> bool {
        self.destinations
            .iter()
            .any(|d| d.headers.iter().any(|(n, _)| n == name))
    }

    /// The headers to add to a request to `uri`, or why it is refused.
    pub(crate) fn admit(&self, uri: &Uri) -> Result<&[(HeaderName, HeaderValue)], String> {
        let origin = Origin::of(uri).ok_or_else(|| format!("{uri} is not an http[s] URL"))?;
        let path = uri.path();
        if let Some(destination) = self
            .destinations
            .iter()
            .find(|d| d.origin == origin && d.covers(path))
        {
            return Ok(&destination.headers);
        }
        if self.origins.contains(&origin) {
            return Ok(&[]);
        }
        Err(format!("{uri} is not a granted origin or destination"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::push::Destination;

    fn policy(targets: &[&str]) -> Result<HttpPolicy, String> {
        let destinations = Arc::new(BTreeMap::from([(
            "hook".to_string(),
            Destination {
                url: "https://hooks.example.org/v1/in".into(),
                headers: vec![("Authorization".into(), "Bearer s3cret".into())],
                max_body_bytes: 1 << 20,
            },
        )]));
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        HttpPolicy::new(&targets, &destinations, HttpBackend::Network)
    }

    fn admit(policy: &HttpPolicy, url: &str) -> Result<usize, String> {
        policy.admit(&url.parse().unwrap()).map(|h| h.len())
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let p = policy(&["https://api.example.org", "http://127.0.0.1:8080"]).unwrap();
        assert_eq!(admit(&p, "https://API.example.org/x?y"), Ok(0));
        assert_eq!(admit(&p, "https://api.example.org:443/"), Ok(0));
        assert_eq!(admit(&p, "http://127.0.0.1:8080/a"), Ok(0));
        for refused in [
            "http://api.example.org/x",
            "https://api.example.org:8443/x",
            "https://api.example.org.evil.net/x",
            "https://evil.net/https://api.example.org",
            "http://127.0.0.1:8081/a",
            "http://user@127.0.0.1:8080/a",
        ] {
            assert!(admit(&p, refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn destinations_match_under_their_url_and_carry_their_headers() {
        let p = policy(&["hook"]).unwrap();
        assert_eq!(admit(&p, "https://hooks.example.org/v1/in"), Ok(1));
        assert_eq!(admit(&p, "https://hooks.example.org/v1/in/room?x=1"), Ok(1));
        assert_eq!(admit(&p, "https://hooks.example.org/v1/in?x=1"), Ok(1));
        assert!(admit(&p, "https://hooks.example.org/v1/inside").is_err());
        assert!(admit(&p, "https://hooks.example.org/v1/").is_err());
        assert!(p.hides(&HeaderName::from_static("authorization")));
        assert!(!p.hides(&HeaderName::from_static("content-type")));
    }

    #[test]
    fn targets_must_be_origins_or_declared_destinations() {
        assert!(policy(&["nope"]).unwrap_err().contains("neither"));
        assert!(
            policy(&["https://h/path"])
                .unwrap_err()
                .contains("not an origin")
        );
        assert!(policy(&["ftp://h"]).is_err());
    }
}
