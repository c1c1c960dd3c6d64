//! The `streamhost` command line: parse flags over the config file, set up logging and
//! signals, run the chosen command.
//!
//! File map:
//! - `logging`: where log lines go (stderr, the demo's file) and their format.
//! - `cli`: the commands and their flags (writer, reader, tail, demo, chaos, bench, plugin,
//!   config, synapse, admin, completions, man).
//! - `tools/`: what runs beside the product: `tail` (decoded replication traffic), `demo` (a
//!   writer, two readers and traffic in one process), `chaos` (a soak under faults with
//!   exactly-once checks), `plugin_*` (plugins without a reader), `config_check` (a
//!   configuration checked and printed, secrets masked), `synapse_import` (a reader's
//!   configuration from Synapse's YAML), `admin` (a reader's admin API from the command line)
//!   and `manual` (completions and man pages).
//!
//! The writer and the reader are `streamhost_server`; `streamhost bench` is `streamhost_bench`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Cli, Command, ConfigArgs, ConfigCommand, PluginArgs, PluginCommand, SynapseArgs, SynapseCommand,
};
use crate::logging::{LogFormat, LogOutput, init_tracing};

pub mod cli;
pub mod logging;
pub mod tools;

/// Parses the command line, runs the command, and maps failure to a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo keeps stdout for its status lines and opens its log file itself.
    if !matches!(cli.command, Command::Demo(_)) {
        init_tracing(
            cli.log_format,
            LogOutput {
                file: None,
                stderr: true,
            },
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, cli.log_format)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, log_format: LogFormat) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match command {
        Command::Writer(args) => streamhost_server::writer::run(args.resolve()?, shutdown).await,
        Command::Reader(args) => streamhost_server::reader::run(args.resolve()?, shutdown).await,
        Command::Tail(args) => {
            tools::tail::run(
                args.connect,
                args.name,
                args.json,
                shutdown,
                std::io::stdout(),
            )
            .await
        }
        Command::Demo(args) => tools::demo::run(args, log_format, shutdown).await,
        Command::Chaos(args) => tools::chaos::run(args, shutdown).await,
        Command::Bench(args) => streamhost_bench::run(args).await,
        Command::Plugin(PluginArgs {
            command: PluginCommand::Run(args),
        }) => {
            let stop = shutdown.clone();
            let summary = tokio::task::spawn_blocking(move || {
                tools::plugin_run::run(&args, &mut std::io::stdout().lock(), &stop)
            })
            .await??;
            summary.ensure_no_failures()
        }
        Command::Plugin(PluginArgs {
            command: PluginCommand::New(args),
        }) => tools::plugin_new::run(&args, &mut std::io::stdout().lock()),
        Command::Plugin(PluginArgs {
            command: PluginCommand::Build(args),
        }) => {
            tokio::task::spawn_blocking(move || {
                tools::plugin_build::run(&args, &mut std::io::stdout().lock())
            })
            .await?
        }
        Command::Plugin(PluginArgs {
            command: PluginCommand::Test(args),
        }) => {
            let stop = shutdown.clone();
            tokio::task::spawn_blocking(move || {
                tools::plugin_test::run(&args, &mut std::io::stdout().lock(), &stop)
            })
            .await?
        }
        Command::Plugin(PluginArgs {
            command: PluginCommand::Dev(args),
        }) => tools::plugin_dev::run(args, shutdown).await,
        Command::Config(ConfigArgs {
            command: ConfigCommand::Check(args),
        }) => tools::config_check::run(
            &args,
            &streamhost_server::config::Environment::from_process()?,
            &mut std::io::stdout().lock(),
        ),
        Command::Synapse(SynapseArgs {
            command: SynapseCommand::Import(args),
        }) => tools::synapse_import::run(&args, &mut std::io::stdout().lock()),
        Command::Admin(args) => {
            let printed = tools::admin::run(&args).await?;
            print_out(printed.as_bytes())
        }
        Command::Completions(args) => {
            let mut script = Vec::new();
            tools::manual::completions(&args, Cli::command(), &mut script);
            print_out(&script)
        }
        Command::Man(args) => {
            let mut text = Vec::new();
            tools::manual::man(&args, Cli::command(), &mut text)?;
            print_out(&text)
        }
    }
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn print_out(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM; a second signal exits at once.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if round == 0 {
            tracing::info!("shutting down (signal again to exit at once)");
            shutdown.cancel();
        } else {
            std::process::exit(130);
        }
    }
}
