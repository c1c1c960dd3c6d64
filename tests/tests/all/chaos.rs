//! `streamhost chaos`, the real binary, for a short run: faults are injected (writer and
//! reader SIGKILLs, link faults, a Redis restart, plugin reloads and traps, and PostgreSQL
//! restarts on `--db postgres`) and every check passes. CI's short version of the 600-s soaks in
//! RELIABILITY.md.

use std::process::Command;

use streamhost_integration_tests::plugins::PLUGINS_DIR;

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

/// Runs `streamhost chaos ARGS` and returns its stdout, after asserting it passed.
fn chaos(args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .arg("chaos")
        .args(args)
        .output()
        .expect("run streamhost chaos");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "streamhost chaos failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The count printed on the report line for `kind` (`  writer SIGKILL   12`), 0 when absent.
fn faults_of(report: &str, kind: &str) -> u64 {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix(kind))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

fn assert_passed_with_faults(report: &str, kinds: &[&str]) {
    assert!(report.contains("result: PASSED, 0 violations"), "{report}");
    assert!(!report.contains("VIOLATED"), "{report}");
    let total: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("faults injected: "))
        .expect("the faults line")
        .parse()
        .unwrap();
    assert!(total >= 10, "at least 10 faults in the run: {report}");
    for kind in kinds {
        assert!(
            faults_of(report, kind) > 0,
            "no {kind} in the run: {report}"
        );
    }
    for check in [
        "no acknowledged row lost",
        "every row applied once, in order",
        "at the writer's positions",
    ] {
        assert!(
            report.contains(check),
            "the report lacks {check:?}: {report}"
        );
    }
}

#[test]
fn a_short_chaos_run_on_sqlite_injects_faults_and_finds_no_violation() {
    let report = chaos(&["--duration", "25", "--seed", "18", "--plugins", PLUGINS_DIR]);
    assert!(report.contains("seed 18"), "{report}");
    assert_passed_with_faults(
        &report,
        &[
            "writer SIGKILL",
            "reader SIGKILL",
            "link cut",
            "link delayed",
            "link reset",
            "redis restart",
            "plugin reload",
            "plugin trap",
        ],
    );
    for reader in ["reader-1", "reader-2", "reader-3"] {
        for plugin in ["stream-stats", "evil"] {
            let check = format!("{reader} {plugin}: every row applied once (row counts)");
            assert!(report.contains(&check), "no {check:?}: {report}");
        }
    }
    // The trap faults made the plugin fail, and each failure it had was on a trap row's batch
    // at least once: `plugins: N failed batches written to plugin-failures/, M of them ...`.
    let trapped: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("plugins: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.split(' ').next())
        .expect("the plugins line")
        .parse()
        .expect("a count");
    assert!(trapped > 0, "no batch trapped on a marked row: {report}");
}

#[test]
fn a_short_chaos_run_on_postgres_injects_faults_and_finds_no_violation() {
    let report = chaos(&["--duration", "25", "--seed", "58", "--db", "postgres"]);
    assert_passed_with_faults(
        &report,
        &["writer SIGKILL", "reader SIGKILL", "postgres restart"],
    );
}
