//! Requests per client address on the query and notification endpoints
//! (`[reader.plugins.rate_limit]`): a token bucket per address, kept in a least-recently-used
//! map of at most `clients` addresses, so the limiter's own memory is bounded too. Past its
//! bucket a request is answered 429 `M_LIMIT_EXCEEDED` with `Retry-After` (seconds) and
//! `retry_after_ms` saying when a token will be there.
//!
//! An IPv6 client is counted by its /64 (one host usually holds a whole /64), an IPv4-mapped
//! IPv6 address as the IPv4 address. A request without a known peer (not served by
//! `http::serve`) is not limited.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{HeaderValue, RETRY_AFTER};
use axum::middleware::Next;
use lru::LruCache;

use super::PluginHost;
use crate::config::RateLimitConfig;
use crate::http::{PeerAddr, Response, json};

/// One address's tokens, as of `at`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client address (see the module docs).
pub(crate) struct RateLimiter {
    buckets: Mutex<LruCache<IpAddr, Bucket>>,
    per_second: f64,
    burst: f64,
}

/// The address a client is counted as.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

impl RateLimiter {
    /// The limiter `config` asks for; none when `per_second` is 0 (no limit).
    pub(crate) fn new(config: &RateLimitConfig) -> Option<RateLimiter> {
        if config.per_second == 0 {
            return None;
        }
        let clients = NonZeroUsize::new(config.clients).unwrap_or(NonZeroUsize::MIN);
        Some(RateLimiter {
            buckets: Mutex::new(LruCache::new(clients)),
            per_second: f64::from(config.per_second),
            burst: f64::from(config.burst.max(1)),
        })
    }

    /// Takes a token of `ip`'s bucket at `now`; when it has none, how long until it will.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.get_or_insert_mut(client_of(ip), || Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) / self.per_second,
        ))
    }

    /// Addresses remembered.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// What the middleware needs: the limiter, the host (for its metrics) and the endpoint's
/// name (a metrics label).
#[derive(Clone)]
pub(crate) struct Limited {
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) host: Arc<PluginHost>,
    pub(crate) endpoint: &'static str,
}

/// The middleware: a 429 past the client's bucket, else the request goes on.
pub(crate) async fn limit(
    State(limited): State<Limited>,
    request: Request,
    next: Next,
) -> Response {
    let Some(PeerAddr(peer)) = request.extensions().get::<PeerAddr>().copied() else {
        return next.run(request).await;
    };
    match limited.limiter.check(peer.ip(), Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            limited
                .host
                .ctx
                .metrics
                .rate_limited
                .with(&[limited.endpoint])
                .inc();
            too_many_requests(wait, &limited.limiter)
        }
    }
}

/// The 429: `M_LIMIT_EXCEEDED`, naming the limit, with when to retry.
fn too_many_requests(wait: Duration, limiter: &RateLimiter) -> Response {
    let wait_ms = wait.as_millis().max(1) as u64;
    let mut response = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({
            "errcode": "M_LIMIT_EXCEEDED",
            "error": format!(
                "more than {} requests per second (burst {}) from this address \
                 (reader.plugins.rate_limit)",
                limiter.per_second, limiter.burst
            ),
            "retry_after_ms": wait_ms,
        }),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(wait_ms.div_ceil(1_000)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32, clients: usize) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            per_second,
            burst,
            clients,
        })
        .unwrap()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = limiter(10, 3, 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check(ip, start).unwrap();
        }
        let wait = limiter.check(ip, start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        // Another address has its own bucket.
        limiter.check("10.0.0.2".parse().unwrap(), start).unwrap();
        // 150 ms later, one more (and half a token).
        let later = start + Duration::from_millis(150);
        limiter.check(ip, later).unwrap();
        assert!(limiter.check(ip, later).is_err());
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_least_recent_address() {
        let limiter = limiter(1, 1, 2);
        let now = Instant::now();
        for n in 0..1_000u32 {
            let _ = limiter.check(IpAddr::from(n.to_be_bytes()), now);
        }
        assert_eq!(limiter.clients(), 2);
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(client_of(a), client_of(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_of(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let limiter = limiter(1, 1, 10);
        let now = Instant::now();
        limiter.check(a, now).unwrap();
        assert!(limiter.check(b, now).is_err());
    }

    #[test]
    fn off_at_zero() {
        assert!(RateLimiter::new(&RateLimitConfig::default()).is_some());
        let off = RateLimitConfig {
            per_second: 0,
            ..RateLimitConfig::default()
        };
        assert!(RateLimiter::new(&off).is_none());
    }
}
