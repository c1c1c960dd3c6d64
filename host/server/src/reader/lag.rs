//! How long a reader has been behind, in seconds: [`LagClock`] remembers when each writer
//! position the reader has not yet applied was first seen, so the lag is the age of the oldest
//! row still waiting, not the time since the reader was last fully caught up (which, under
//! steady traffic, may never happen while every row is applied within milliseconds).

use std::collections::VecDeque;
use std::time::Instant;

use streamhost_proto::Token;

/// Most marks kept per (stream, instance); past it, the newest mark absorbs later positions
/// (its time stays the older one, so the lag is over-, never under-stated).
const MAX_MARKS: usize = 64;

/// When each not-yet-applied writer position was first seen.
#[derive(Clone, Debug, Default)]
pub(crate) struct LagClock {
    /// Writer positions in rising order with when each was first seen; all above the applied
    /// position.
    marks: VecDeque<(Token, Instant)>,
}

impl LagClock {
    /// Notes the writer's position and the applied one, at `now`.
    pub(crate) fn observe(&mut self, writer_position: Token, position: Token, now: Instant) {
        while self.marks.front().is_some_and(|(t, _)| *t <= position) {
            self.marks.pop_front();
        }
        if writer_position <= position {
            return;
        }
        let full = self.marks.len() >= MAX_MARKS;
        match self.marks.back_mut() {
            Some((newest, _)) if writer_position <= *newest => {}
            Some((newest, _)) if full => *newest = writer_position,
            _ => self.marks.push_back((writer_position, now)),
        }
    }

    /// Seconds the oldest unapplied position has waited at `now`; 0 when caught up.
    pub(crate) fn seconds(&self, now: Instant) -> f64 {
        self.marks.front().map_or(0.0, |(_, seen)| {
            now.saturating_duration_since(*seen).as_secs_f64()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_lag_is_the_age_of_the_oldest_unapplied_position() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut clock = LagClock::default();
        clock.observe(Token(10), Token(10), at(0));
        assert_eq!(clock.seconds(at(5_000)), 0.0, "caught up");
        clock.observe(Token(20), Token(10), at(1_000));
        clock.observe(Token(30), Token(10), at(2_000));
        assert_eq!(clock.seconds(at(3_000)), 2.0, "20 waits since 1 s");
        // Applying up to 20 leaves 30, seen at 2 s, although the reader was never caught up.
        clock.observe(Token(30), Token(20), at(3_000));
        assert_eq!(clock.seconds(at(3_500)), 1.5);
        clock.observe(Token(30), Token(30), at(4_000));
        assert_eq!(clock.seconds(at(9_000)), 0.0);
    }

    #[test]
    fn past_the_cap_the_newest_mark_absorbs_later_positions_and_keeps_its_time() {
        let start = Instant::now();
        let mut clock = LagClock::default();
        for i in 0..(MAX_MARKS as i64 + 10) {
            clock.observe(
                Token(i + 1),
                Token(0),
                start + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(clock.marks.len(), MAX_MARKS);
        // Everything but the absorbing mark applied: its time is the older one it kept.
        let last = Token(MAX_MARKS as i64 + 10);
        clock.observe(
            last,
            Token(MAX_MARKS as i64 - 1),
            start + Duration::from_secs(100),
        );
        let waited = clock.seconds(start + Duration::from_secs(100));
        assert_eq!(waited, (100 - (MAX_MARKS as u64 - 1)) as f64);
        clock.observe(last, last, start + Duration::from_secs(101));
        assert_eq!(clock.seconds(start + Duration::from_secs(101)), 0.0);
    }
}
