//! Commit-time stamps: a Streamhost writer's `PING` whose text is the commit time of the next
//! line with a token, in microseconds since the Unix epoch, zero-padded to [`STAMP_DIGITS`]
//! digits. Synapse takes a `PING`'s text as opaque (and sends a 13-digit millisecond time), so
//! the line stays one Synapse accepts; a reader tells a stamp from an ordinary `PING` by its
//! length and uses it to measure write-to-apply latency (`docs/design.md`, decision 51).

/// Digits of a stamp: 16, where Synapse's own `PING`s carry 13 (milliseconds).
pub const STAMP_DIGITS: usize = 16;

/// The `PING` text of a commit at `stamp_us` microseconds since the epoch.
pub fn encode_stamp(stamp_us: u64) -> String {
    format!("{stamp_us:0width$}", width = STAMP_DIGITS)
}

/// The commit time a `PING`'s text carries (at least [`STAMP_DIGITS`] digits); `None` for an
/// ordinary `PING`.
pub fn decode_stamp(text: &str) -> Option<u64> {
    if text.len() < STAMP_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_long_all_digit_ping_is_a_commit_stamp() {
        assert_eq!(
            decode_stamp("0001733450000123456"),
            Some(1_733_450_000_123_456)
        );
        assert_eq!(
            decode_stamp("1733450000123456"),
            Some(1_733_450_000_123_456)
        );
        assert_eq!(
            decode_stamp("1733450000123"),
            None,
            "Synapse's milliseconds"
        );
        assert_eq!(decode_stamp("17334500001234x6"), None);
        assert_eq!(decode_stamp("hello there, friend"), None);
        assert_eq!(
            decode_stamp("99999999999999999999999"),
            None,
            "overflows u64"
        );
    }

    #[test]
    fn a_stamp_round_trips_and_is_never_shorter_than_its_digits() {
        for us in [0, 1, 1_733_450_000_123_456, u64::MAX] {
            let text = encode_stamp(us);
            assert!(text.len() >= STAMP_DIGITS, "{text}");
            assert_eq!(decode_stamp(&text), Some(us));
        }
    }
}
