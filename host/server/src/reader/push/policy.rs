//! The retry policy of a push, as pure functions: what an answer (or its absence) means
//! ([`Verdict`]), when to try again (capped exponential back-off with jitter, never before a
//! `Retry-After`), and how to read `Retry-After` (seconds or an HTTP-date).

use std::time::Duration;

use rand::Rng;

/// What one attempt's outcome asks of the delivery worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: delivered; the push leaves the outbox.
    Delivered,
    /// A connection error, a timeout, 429 or 5xx: try again later, not before `not_before_ms`
    /// (a `Retry-After`) if it is set.
    Retry {
        /// Why the attempt failed, kept in `last_error`.
        error: String,
        /// The destination asked not to be called before this time (Unix ms).
        not_before_ms: Option<u64>,
    },
    /// Any other answer: the push goes to the dead pushes at once.
    Reject {
        /// Why, kept as the dead push's reason.
        reason: String,
    },
}

/// The verdict on an answer with `status` and `retry_after` (the header's value, if any),
/// received at `now_ms`; `body` is a prefix of the answer, for the error text.
pub(crate) fn judge(status: u16, retry_after: Option<&str>, body: &str, now_ms: u64) -> Verdict {
    let error = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match status {
        200..=299 => Verdict::Delivered,
        429 | 500..=599 => Verdict::Retry {
            error,
            not_before_ms: retry_after.and_then(|v| parse_retry_after(v, now_ms)),
        },
        _ => Verdict::Reject { reason: error },
    }
}

/// The wait before attempt `attempts + 1` after `attempts` failed ones (at least 1): a window
/// of `initial × 2^(attempts-1)` capped at `max`, the wait drawn uniformly from its upper half
/// (so it grows with every failure, yet pushes that failed together do not retry together).
pub(crate) fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32);
    let window = initial
        .saturating_mul(1u32 << doublings.min(31))
        .min(max.max(initial));
    let half = window / 2;
    let micros = u64::try_from((window - half).as_micros()).unwrap_or(u64::MAX);
    half + Duration::from_micros(rand::rng().random_range(0..=micros))
}

/// When a `Retry-After` value lets the caller call again, in Unix ms: `now_ms` plus its
/// seconds, or its HTTP-date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`). `None` for a value
/// that is neither.
pub(crate) fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(now_ms.saturating_add(seconds.saturating_mul(1_000)));
    }
    parse_http_date(value).map(|seconds| seconds.saturating_mul(1_000))
}

/// Seconds since the Unix epoch of an IMF-fixdate (RFC 9110 §5.6.7).
fn parse_http_date(value: &str) -> Option<u64> {
    let (_, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let day: u64 = day.parse().ok()?;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3_600 + m * 60 + s)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`, for years from 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_delivered_retried_or_rejected() {
        assert_eq!(judge(204, None, "", 0), Verdict::Delivered);
        assert!(matches!(
            judge(503, None, "", 0),
            Verdict::Retry {
                not_before_ms: None,
                ..
            }
        ));
        assert_eq!(
            judge(429, Some("3"), "slow down", 1_000),
            Verdict::Retry {
                error: "HTTP 429: slow down".into(),
                not_before_ms: Some(4_000)
            }
        );
        assert_eq!(
            judge(400, None, "bad", 0),
            Verdict::Reject {
                reason: "HTTP 400: bad".into()
            }
        );
        assert!(matches!(judge(301, None, "", 0), Verdict::Reject { .. }));
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after("120", 5_000), Some(125_000));
        assert_eq!(parse_retry_after(" 0 ", 5_000), Some(5_000));
        // RFC 9110's example date.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 0),
            Some(784_111_777_000)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 9),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Tue, 29 Feb 2028 12:00:00 GMT", 0),
            Some(1_835_438_400_000)
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_grows_per_attempt_up_to_the_cap_with_jitter() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1_000));
        for attempts in 1..20 {
            let window = (initial * (1 << (attempts - 1).min(10))).min(max);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let wait = backoff(attempts, initial, max);
                assert!(
                    window / 2 <= wait && wait <= window,
                    "{attempts}: {wait:?} outside {window:?}"
                );
                seen.insert(wait);
            }
            assert!(seen.len() > 50, "no jitter at attempt {attempts}");
        }
        assert!(backoff(u32::MAX, initial, max) <= max);
    }
}
