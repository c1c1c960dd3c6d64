//! Where the command's log lines go and how they look: stderr by default, a file (the demo's
//! log) with or without stderr, as text or JSON lines, filtered by `RUST_LOG`.

use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where log lines go.
pub(crate) struct LogOutput {
    /// A file (lines without colours), as the demo's log.
    pub(crate) file: Option<std::fs::File>,
    /// Stderr.
    pub(crate) stderr: bool,
}

/// Logs to `output`, filtered by `RUST_LOG` (default `streamhost=info`, which also covers the
/// `streamhost_server`, `streamhost_cli` and other `streamhost_*` crates: a target prefix).
pub(crate) fn init_tracing(format: LogFormat, output: LogOutput) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("streamhost=info"));
    let mut layers = Vec::new();
    if let Some(file) = output.file {
        // A line is one write to the file; the lock keeps lines whole across threads.
        layers.push(log_layer(format, Mutex::new(file), false));
    }
    if output.stderr {
        layers.push(log_layer(format, std::io::stderr, true));
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .init();
}

/// One destination's formatting layer; `ansi` allows colours (still off under `NO_COLOR`).
fn log_layer<W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer = if ansi { layer } else { layer.with_ansi(false) };
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}
