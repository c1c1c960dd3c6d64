//! `streamhost completions SHELL` and `streamhost man`, from the real binary: the bash script
//! names the subcommands and their flags and `bash -n` accepts it; every shell gets a script;
//! the man pages are roff with the title, name and options sections, one per subcommand, and
//! `man -l` renders them when `man` is installed.

use std::path::Path;
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

fn streamhost(args: &[&str]) -> Output {
    let output = Command::new(BINARY)
        .args(args)
        .output()
        .expect("run streamhost");
    assert!(
        output.status.success(),
        "streamhost {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

#[test]
fn the_bash_script_completes_subcommands_and_flags_and_parses() {
    let script = text(&streamhost(&["completions", "bash"]));
    for word in [
        "writer",
        "reader",
        "demo",
        "plugin",
        "admin",
        "quarantine",
        "dead-letters",
        "completions",
        "--token-file",
        "--reason",
        "--plugins",
        "--verbose",
        "--log-format",
    ] {
        assert!(script.contains(word), "the bash script lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamhost.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("run bash -n");
    assert!(
        check.status.success(),
        "bash -n refused the script: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_refused() {
    for (shell, marker) in [
        ("zsh", "#compdef streamhost"),
        ("fish", "complete -c streamhost"),
        ("elvish", "edit:completion:arg-completer[streamhost]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = text(&streamhost(&["completions", shell]));
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(script.contains("quarantine"), "{shell}: no subcommands");
    }
    let refused = Command::new(BINARY)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("bash"),
        "lists the shells"
    );
}

/// The roff of one page: its title line names it, and it has the usual sections.
fn assert_page(roff: &str, title: &str) {
    let th = format!(".TH {title} 1 ");
    assert!(
        roff.lines().any(|l| l.starts_with(&th)),
        "{title}: no {th:?} in {}",
        &roff[..roff.len().min(300)]
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS"] {
        assert!(roff.contains(section), "{title} has no {section}");
    }
}

#[test]
fn man_writes_a_page_for_streamhost_and_each_subcommand() {
    let page = text(&streamhost(&["man"]));
    assert_page(&page, "streamhost");
    assert!(
        page.contains(".SH SUBCOMMANDS") && page.contains("admin"),
        "{page}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let listed = text(&streamhost(&["man", "--out", out.to_str().unwrap()]));
    for name in [
        "streamhost",
        "streamhost-writer",
        "streamhost-reader",
        "streamhost-demo",
        "streamhost-plugin-run",
        "streamhost-admin",
        "streamhost-admin-quarantine",
        "streamhost-completions",
        "streamhost-man",
    ] {
        let path = out.join(format!("{name}.1"));
        assert!(
            listed.lines().any(|l| Path::new(l) == path),
            "{name}.1 not listed:\n{listed}"
        );
        let roff = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert_page(&roff, name);
    }
    let quarantine = std::fs::read_to_string(out.join("streamhost-admin-quarantine.1")).unwrap();
    assert!(quarantine.contains("reason"), "{quarantine}");
    assert!(
        !out.join("streamhost-help.1").exists(),
        "no page for `help`"
    );

    // Rendered by man(1) itself when the machine has it.
    let Ok(rendered) = Command::new("man")
        .arg("-l")
        .arg(out.join("streamhost-admin.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    else {
        return;
    };
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let rendered = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.contains("streamhost-admin") && rendered.contains("dead-letters"),
        "{rendered}"
    );
}
