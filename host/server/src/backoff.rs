//! [`Backoff`]: how long to wait before trying again after a failure.
//!
//! Exponential and capped, with full jitter: the n-th wait is drawn uniformly from
//! `[0, min(max, first × 2ⁿ)]`. Many readers that lose their writer (or Redis) at the same
//! moment then spread their reconnects over the window instead of retrying in lockstep, the
//! "full jitter" rule of AWS's *Exponential Backoff and Jitter*.

use std::time::Duration;

use rand::Rng;

/// The first reconnect window of every reconnecting loop (a reader's upstream, the writer's
/// Redis publisher); it doubles up to `reconnect_max_ms`.
pub const FIRST_RECONNECT: Duration = Duration::from_millis(100);

/// An exponential, capped, jittered retry schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    ceiling: Duration,
    floor: Duration,
}

impl Backoff {
    /// A schedule whose first window is `first`, doubling up to `max` (at least `first`).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            ceiling: first,
            floor: Duration::ZERO,
        }
    }

    /// The same schedule never waiting less than `floor` (at most the first window): each
    /// wait is drawn from `[floor, window]`. For a wait that promises a minimum, such as a
    /// plugin's `retry_backoff_ms` before its first retry.
    pub fn with_floor(mut self, floor: Duration) -> Backoff {
        self.floor = floor.min(self.first);
        self
    }

    /// The next wait, drawn from the current window; the window then doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.floor + full_jitter(self.ceiling - self.floor, &mut rand::rng());
        self.ceiling = self.ceiling.saturating_mul(2).min(self.max);
        delay
    }

    /// Starts again from the first window (after a success).
    pub fn reset(&mut self) {
        self.ceiling = self.first;
    }

    /// The window the next wait is drawn from.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }
}

/// A wait drawn uniformly from `[0, ceiling]`, at millisecond resolution when the ceiling is
/// a millisecond or more.
fn full_jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rng.random_range(0..=micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_up_to_the_cap_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let mut ceilings = Vec::new();
        for _ in 0..5 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay();
        }
        assert_eq!(ceilings, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn a_floor_bounds_every_wait_from_below() {
        let first = Duration::from_millis(100);
        let mut backoff = Backoff::new(first, first * 8).with_floor(first);
        assert_eq!(backoff.next_delay(), first, "the first window is the floor");
        for _ in 0..100 {
            let window = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(
                first <= delay && delay <= window,
                "{delay:?} outside [{first:?}, {window:?}]"
            );
        }
    }

    #[test]
    fn a_cap_below_the_first_window_is_the_first_window() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(10));
        backoff.next_delay();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }

    /// Many readers reconnecting at once: their waits stay inside the window and spread over
    /// it, rather than all landing on the same instant.
    #[test]
    fn reconnecting_readers_spread_their_retries_over_the_window() {
        let window = Duration::from_millis(1_000);
        let delays: Vec<Duration> = (0..1_000)
            .map(|_| Backoff::new(window, window).next_delay())
            .collect();
        assert!(
            delays.iter().all(|d| *d <= window),
            "a wait beyond the window"
        );
        // Ten equal slices of the window: each should hold about 100 of the 1,000 waits. A
        // schedule without jitter puts all of them in the last one.
        let mut slices = [0usize; 10];
        for delay in &delays {
            let slice = (delay.as_micros() * 10 / (window.as_micros() + 1)) as usize;
            slices[slice] += 1;
        }
        assert!(
            slices.iter().all(|n| (40..=200).contains(n)),
            "waits bunched up: {slices:?}"
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 900,
            "only {} distinct waits",
            distinct.len()
        );
    }
}
