//! `streamhost config check FILE`: the configuration a writer or reader would start with
//! (the file, then the `STREAMHOST_…` environment), checked as the start checks it (secret
//! files read, values validated, the listeners' secure-defaults check), then printed whole as
//! TOML, defaults included, with every secret as `***`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use streamhost_server::config::{ConfigFile, Environment};

/// Flags of `streamhost config check`.
#[derive(Debug, clap::Args)]
pub struct ConfigCheckArgs {
    /// The TOML configuration file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Check and print only this role's table [default: both].
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<Role>,
}

/// Which process's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// `[writer]`.
    Writer,
    /// `[reader]`.
    Reader,
}

/// Checks the configuration in `args.file` with `env` over it and writes the effective
/// settings to `out`; an invalid configuration is an error saying what is wrong.
pub fn run(args: &ConfigCheckArgs, env: &Environment, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut config = ConfigFile::resolve(Some(&args.file), env)?;
    let (writer, reader) = match args.role {
        None => (true, true),
        Some(Role::Writer) => (true, false),
        Some(Role::Reader) => (false, true),
    };
    let file = args.file.display();
    if writer {
        let w = &mut config.writer;
        w.load_secrets()
            .and_then(|()| w.validate())
            .and_then(|()| w.check_exposure(w.http.address, w.replication.address))
            .with_context(|| format!("{file}: [writer] is not valid"))?;
    }
    if reader {
        let r = &mut config.reader;
        r.load_secrets()
            .and_then(|()| r.validate())
            .and_then(|()| r.check_exposure(r.http.address))
            .with_context(|| format!("{file}: [reader] is not valid"))?;
    }
    let text = match args.role {
        None => config.to_masked_toml()?,
        Some(Role::Writer) => masked_table("writer", &config.writer)?,
        Some(Role::Reader) => masked_table("reader", &config.reader)?,
    };
    writeln!(
        out,
        "# {file}: valid. The effective settings (file, then STREAMHOST_ environment; \
         command-line flags not included),\n# every default included; unset keys are left \
         out, secrets are shown as ***.\n"
    )?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// `value` as the TOML table `name`, masked as [`ConfigFile::to_masked_toml`] masks.
fn masked_table(name: &str, value: &impl serde::Serialize) -> anyhow::Result<String> {
    let mut table = toml::Table::new();
    table.insert(name.to_owned(), toml::Value::try_from(value)?);
    Ok(toml::to_string_pretty(&table)?)
}
