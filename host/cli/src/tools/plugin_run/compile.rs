//! The compile cache of the plugin tools (`plugin run`, `plugin test`, `plugin dev`): one
//! folder shared by them all, and by readers configured with the same `compile_cache`, so a
//! component is compiled once per machine. And the spinner shown while a compile takes long.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use streamhost_plugin_runtime::RuntimeConfig;

/// How long a load runs before the spinner appears.
const SPINNER_AFTER: Duration = Duration::from_secs(1);

/// The environment variable naming the tools' compile cache folder.
pub const CACHE_ENV: &str = "STREAMHOST_COMPILE_CACHE";

/// The compile cache flags of the plugin tools.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CacheArgs {
    /// Folder of compiled components, shared with the other plugin tools (and with readers
    /// whose `compile_cache` names it) [default: $XDG_CACHE_HOME/streamhost/compiled].
    #[arg(long = "cache", value_name = "DIR", env = CACHE_ENV)]
    pub cache: Option<PathBuf>,
    /// Compile the component without the compile cache (neither load nor store).
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache folder these flags choose, or `None` for `--no-cache`.
    pub fn folder(&self) -> Option<PathBuf> {
        match (self.no_cache, &self.cache) {
            (true, _) => None,
            (false, Some(dir)) => Some(dir.clone()),
            (false, None) => Some(default_cache_dir()),
        }
    }
}

/// `$XDG_CACHE_HOME/streamhost/compiled` (else `~/.cache/streamhost/compiled`).
pub fn default_cache_dir() -> PathBuf {
    streamhost_plugin_build::cache_home()
        .join("streamhost")
        .join("compiled")
}

/// The runtime settings of a plugin tool: the defaults, with the compile cache `cache` chooses.
pub fn runtime_config_with_cache(cache: &CacheArgs) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: cache.folder(),
        ..RuntimeConfig::default()
    }
}

/// Runs `work` (a load that may compile), showing a spinner with the elapsed time on stderr
/// if it takes more than a second and stderr is a terminal.
pub fn with_spinner<T>(message: String, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let (done, finished) = mpsc::channel::<()>();
    let spinner = std::thread::Builder::new()
        .name("streamhost-spinner".into())
        .spawn(move || {
            if finished.recv_timeout(SPINNER_AFTER) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            {
                bar.set_style(style);
            }
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(100));
            let _ = finished.recv();
            bar.finish_and_clear();
        });
    let result = work();
    let _ = done.send(());
    if let Ok(spinner) = spinner {
        let _ = spinner.join();
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_choose_the_cache_folder() {
        let default = CacheArgs::default();
        assert!(default.folder().unwrap().ends_with("streamhost/compiled"));
        let chosen = CacheArgs {
            cache: Some("/tmp/c".into()),
            no_cache: false,
        };
        assert_eq!(chosen.folder(), Some(PathBuf::from("/tmp/c")));
        let none = CacheArgs {
            cache: None,
            no_cache: true,
        };
        assert_eq!(runtime_config_with_cache(&none).cache_dir, None);
    }

    #[test]
    fn the_spinner_returns_what_the_work_returns() {
        assert_eq!(with_spinner("compiling".into(), || 7), 7);
    }
}
