//! `streamhost completions SHELL` and `streamhost man`: shell completion scripts
//! (`clap_complete`) and man pages (`clap_mangen`), both generated from the command
//! definitions in `cli` (handed in as a `clap::Command`), so they never drift from the flags
//! the binary takes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

/// Flags of `streamhost completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example: \
`streamhost completions bash > ~/.local/share/bash-completion/completions/streamhost`, \
`streamhost completions zsh > ~/.zfunc/_streamhost` (with ~/.zfunc in $fpath), \
`streamhost completions fish > ~/.config/fish/completions/streamhost.fish`.")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Flags of `streamhost man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write streamhost.1 and one page per subcommand (streamhost-writer.1,
    /// streamhost-plugin-run.1, ...) into this folder, made if missing; without it,
    /// streamhost.1 goes to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Writes the completion script of `command` (the whole command line) for `args.shell` to
/// `out`.
pub fn completions(args: &CompletionsArgs, mut command: clap::Command, out: &mut dyn Write) {
    clap_complete::generate(args.shell, &mut command, "streamhost", out);
}

/// Writes the man pages of `command` (the whole command line) as `args` asks; with `--out`,
/// lists the files written on `out`.
pub fn man(args: &ManArgs, command: clap::Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let Some(dir) = &args.out else {
        return clap_mangen::Man::new(command)
            .render(out)
            .context("writing the man page");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(command, dir, &mut written)?;
    for path in written {
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

/// Writes the page of `command` and of each of its subcommands, depth first, into `dir`
/// (each named after its display name: `streamhost-plugin-run.1`).
fn write_pages(
    command: clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(command.clone());
    let path = page
        .generate_to(dir)
        .with_context(|| format!("writing {} into {}", page.get_filename(), dir.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    Ok(())
}
