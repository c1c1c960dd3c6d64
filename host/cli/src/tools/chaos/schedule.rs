//! The fault schedule: which fault comes next, after what pause and for how long, drawn from
//! a seeded generator (SplitMix64, written out here so a seed means the same schedule in
//! every build) so that `--seed` replays the same sequence of faults.

use std::time::Duration;

/// A deterministic generator: SplitMix64.
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

impl Rng {
    /// The generator for `seed`.
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A duration between `lo_ms` and `hi_ms` milliseconds.
    pub(super) fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms + 1))
    }
}

/// One fault the chaos tool injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// SIGKILL the writer, then start it again on its data.
    KillWriter,
    /// SIGKILL reader `n`, then start it again on its data.
    KillReader(usize),
    /// Close TCP reader `n`'s replication connection and refuse new ones for a while.
    CutLink(usize),
    /// Delay every chunk on TCP reader `n`'s replication connection for a while.
    DelayLink(usize),
    /// Reset TCP reader `n`'s replication connection (RST) and let it reconnect at once.
    ResetLink(usize),
    /// SIGKILL the Redis server, then start it again on its port.
    RestartRedis,
    /// Crash the PostgreSQL server (immediate shutdown), then start it again.
    RestartPostgres,
    /// Replace reader `n`'s plugin component with a new version (a custom section appended):
    /// a hot reload.
    ReloadPlugin(usize),
    /// Append a row that makes every reader's `evil` plugin trap on its batch, and on every
    /// retry, until the hold has passed.
    TrapPlugin,
}

impl Fault {
    /// Every kind's name, in the order the report lists them.
    pub(super) const KINDS: [&'static str; 9] = [
        "writer SIGKILL",
        "reader SIGKILL",
        "link cut",
        "link delayed",
        "link reset",
        "redis restart",
        "postgres restart",
        "plugin reload",
        "plugin trap",
    ];

    /// This fault's kind, one of [`Fault::KINDS`].
    pub(super) fn kind(self) -> &'static str {
        let index = match self {
            Fault::KillWriter => 0,
            Fault::KillReader(_) => 1,
            Fault::CutLink(_) => 2,
            Fault::DelayLink(_) => 3,
            Fault::ResetLink(_) => 4,
            Fault::RestartRedis => 5,
            Fault::RestartPostgres => 6,
            Fault::ReloadPlugin(_) => 7,
            Fault::TrapPlugin => 8,
        };
        Fault::KINDS[index]
    }
}

/// What the cluster under test has, which decides the faults that can be drawn.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    /// Readers in all (TCP ones first).
    pub(super) readers: usize,
    /// TCP readers, each behind its own proxy.
    pub(super) tcp_readers: usize,
    /// A Redis server of the tool's own is running.
    pub(super) redis: bool,
    /// A PostgreSQL server of the tool's own holds the log.
    pub(super) postgres: bool,
    /// Every reader runs plugins (`stream-stats` and `evil`) from a folder of its own.
    pub(super) plugins: bool,
}

/// The next fault: wait `pause`, inject `fault`, heal it after `hold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Step {
    /// Quiet time before the fault.
    pub(super) pause: Duration,
    /// The fault.
    pub(super) fault: Fault,
    /// How long the fault lasts (the process stays dead, the link cut or slow).
    pub(super) hold: Duration,
}

/// The faults of one run, in order.
#[derive(Clone, Debug)]
pub(super) struct Schedule {
    rng: Rng,
    shape: Shape,
    /// The first faults: one of every kind the shape allows, in an order drawn from the seed,
    /// so that even a short run covers every kind.
    opening: Vec<Fault>,
}

impl Schedule {
    /// The schedule of `seed` for a cluster of `shape`.
    pub(super) fn new(seed: u64, shape: Shape) -> Schedule {
        let mut schedule = Schedule {
            rng: Rng::new(seed),
            shape,
            opening: Vec::new(),
        };
        let mut opening: Vec<Fault> = schedule.choices().into_iter().map(|(_, f)| f).collect();
        // Fisher-Yates; popped from the end.
        for i in (1..opening.len()).rev() {
            let j = schedule.rng.below(i as u64 + 1) as usize;
            opening.swap(i, j);
        }
        schedule.opening = opening;
        schedule
    }

    /// The next step: the opening's faults first, then drawn by weight.
    pub(super) fn next_step(&mut self) -> Step {
        let fault = match self.opening.pop() {
            Some(fault) => fault,
            None => self.draw(),
        };
        let pause = self.rng.millis(50, 600);
        let hold = match fault {
            Fault::DelayLink(_) => self.rng.millis(200, 1_500),
            Fault::CutLink(_) => self.rng.millis(100, 1_000),
            Fault::ResetLink(_) => Duration::ZERO,
            Fault::TrapPlugin => self.rng.millis(500, 1_500),
            _ => self.rng.millis(0, 400),
        };
        Step { pause, fault, hold }
    }

    /// A fault drawn by weight from [`Schedule::choices`].
    fn draw(&mut self) -> Fault {
        let choices = self.choices();
        let total: u64 = choices.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.below(total);
        for (weight, choice) in &choices {
            if pick < *weight {
                return *choice;
            }
            pick -= weight;
        }
        choices[0].1
    }

    /// Every kind the shape allows, with its weight and a target drawn for it. Process kills
    /// and link faults are common, server restarts rarer (each takes a while).
    fn choices(&mut self) -> Vec<(u64, Fault)> {
        let shape = self.shape;
        let mut choices: Vec<(u64, Fault)> = vec![(3, Fault::KillWriter)];
        if shape.readers > 0 {
            let n = self.rng.below(shape.readers as u64) as usize;
            choices.push((3, Fault::KillReader(n)));
        }
        if shape.tcp_readers > 0 {
            let n = self.rng.below(shape.tcp_readers as u64) as usize;
            choices.push((2, Fault::CutLink(n)));
            choices.push((2, Fault::DelayLink(n)));
            choices.push((2, Fault::ResetLink(n)));
        }
        if shape.redis {
            choices.push((1, Fault::RestartRedis));
        }
        if shape.postgres {
            choices.push((1, Fault::RestartPostgres));
        }
        if shape.plugins && shape.readers > 0 {
            let n = self.rng.below(shape.readers as u64) as usize;
            choices.push((1, Fault::ReloadPlugin(n)));
            choices.push((1, Fault::TrapPlugin));
        }
        choices
    }
}

/// A fresh seed when none is given: the clock's nanoseconds and the process id.
pub(super) fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng::new(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        readers: 3,
        tcp_readers: 2,
        redis: true,
        postgres: true,
        plugins: true,
    };

    #[test]
    fn a_seed_replays_the_same_schedule() {
        let run = |seed| {
            let mut schedule = Schedule::new(seed, SHAPE);
            (0..200).map(|_| schedule.next_step()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn every_kind_is_drawn_and_targets_exist() {
        let mut schedule = Schedule::new(1, SHAPE);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let step = schedule.next_step();
            seen.insert(step.fault.kind());
            match step.fault {
                Fault::KillReader(n) => assert!(n < SHAPE.readers),
                Fault::CutLink(n) | Fault::DelayLink(n) | Fault::ResetLink(n) => {
                    assert!(n < SHAPE.tcp_readers)
                }
                Fault::ReloadPlugin(n) => assert!(n < SHAPE.readers),
                _ => {}
            }
        }
        assert_eq!(seen.len(), Fault::KINDS.len(), "{seen:?}");
    }

    #[test]
    fn the_opening_covers_every_kind() {
        for seed in 0..20 {
            let mut schedule = Schedule::new(seed, SHAPE);
            let kinds: std::collections::BTreeSet<_> = (0..Fault::KINDS.len())
                .map(|_| schedule.next_step().fault.kind())
                .collect();
            assert_eq!(kinds.len(), Fault::KINDS.len(), "seed {seed}: {kinds:?}");
        }
    }

    #[test]
    fn servers_that_are_not_there_are_never_restarted() {
        let shape = Shape {
            redis: false,
            postgres: false,
            plugins: false,
            ..SHAPE
        };
        let mut schedule = Schedule::new(3, shape);
        for _ in 0..1_000 {
            let fault = schedule.next_step().fault;
            assert!(!matches!(
                fault,
                Fault::RestartRedis | Fault::RestartPostgres
            ));
        }
    }
}
