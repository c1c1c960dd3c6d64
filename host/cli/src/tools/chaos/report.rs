//! The run's summary on stdout: the seed, the faults injected by kind, the clients' history,
//! each check with what it looked at, and the result.

use std::collections::BTreeMap;
use std::io::Write;

use super::checks::Check;
use super::history::History;
use super::plugins::Failures;
use super::schedule::Fault;

/// What the report needs from the run.
pub(super) struct Summary<'a> {
    /// The seed (`--seed` replays the schedule).
    pub(super) seed: u64,
    /// `sqlite` or `postgres`.
    pub(super) db: &'a str,
    /// Seconds the faults ran.
    pub(super) seconds: u64,
    /// Faults injected, by kind.
    pub(super) faults: &'a BTreeMap<&'static str, u64>,
    /// The clients' history.
    pub(super) history: &'a History,
    /// With `--plugins`: the batches the readers' plugins failed on.
    pub(super) failures: Option<Failures>,
    /// Problems outside the checks: processes that exited on their own, readers that did not
    /// catch up, unclean exits.
    pub(super) problems: &'a [String],
    /// The checks.
    pub(super) checks: &'a [Check],
}

impl Summary<'_> {
    /// Whether the run found nothing wrong.
    pub(super) fn passed(&self) -> bool {
        self.problems.is_empty() && self.checks.iter().all(|c| c.violations.is_empty())
    }

    /// Writes the report.
    pub(super) fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let total: u64 = self.faults.values().sum();
        writeln!(
            out,
            "streamhost chaos: seed {} on {}, {} s of faults",
            self.seed, self.db, self.seconds
        )?;
        writeln!(out, "faults injected: {total}")?;
        for kind in Fault::KINDS {
            if let Some(n) = self.faults.get(kind) {
                writeln!(out, "  {kind:<18} {n:>6}")?;
            }
        }
        let h = self.history;
        writeln!(
            out,
            "history: {} rows acknowledged; {} appends failed and were read back ({} of them had committed)",
            h.acked.len(),
            h.ambiguous,
            h.found_committed
        )?;
        if let Some(f) = self.failures {
            writeln!(
                out,
                "plugins: {} failed batches written to plugin-failures/, {} of them evil's on a trap row",
                f.batches, f.trapped
            )?;
        }
        writeln!(out, "checks:")?;
        for check in self.checks {
            let verdict = match check.violations.len() {
                0 => "ok".to_string(),
                n => format!("VIOLATED ({n})"),
            };
            writeln!(
                out,
                "  {:<60} {:>9} checked  {verdict}",
                check.name, check.checked
            )?;
            for v in check.violations.iter().take(10) {
                writeln!(out, "      {v}")?;
            }
        }
        for problem in self.problems {
            writeln!(out, "problem: {problem}")?;
        }
        let violations: usize = self.checks.iter().map(|c| c.violations.len()).sum();
        match self.passed() {
            true => writeln!(out, "result: PASSED, 0 violations (seed {})", self.seed),
            false => writeln!(
                out,
                "result: FAILED, {violations} violations, {} problems (replay: --seed {})",
                self.problems.len(),
                self.seed
            ),
        }
    }
}
