//! Why a plugin could not be loaded ([`LoadError`]) and why a call failed ([`Failure`]).

use std::path::PathBuf;

use serde::Serialize;

use crate::limits::LimitHit;

/// A plugin that could not be loaded; the message names the plugin and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plugin's folder is not a plugin.
    #[error("plugin folder {dir}: {message}")]
    Files {
        /// The folder.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `plugin.toml` could not be read or parsed.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The manifest asks for something the operator did not grant.
    #[error("plugin {plugin} is refused: not granted: {}", missing.join(", "))]
    NotGranted {
        /// The plugin.
        plugin: String,
        /// Each request not granted.
        missing: Vec<String>,
    },
    /// The component is larger than its limit.
    #[error("plugin {plugin}: {path} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The plugin.
        plugin: String,
        /// The component.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The component's hash is not the pinned one.
    #[error("plugin {plugin}: sha256 mismatch: {pinned_by} pins {expected}, the file has {actual}")]
    HashMismatch {
        /// The plugin.
        plugin: String,
        /// `plugin.toml` or the grant.
        pinned_by: &'static str,
        /// The pinned hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The component could not be read or compiled.
    #[error("plugin {plugin}: {message}")]
    Compile {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The component imports something that is not linked for it.
    #[error("plugin {plugin}: {message}")]
    Link {
        /// The plugin.
        plugin: String,
        /// Which import, and what grant it needs.
        message: String,
    },
    /// `describe` failed or contradicts the manifest or grant.
    #[error("plugin {plugin}: {message}")]
    Describe {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
}

/// What stopped a call, for reports, metrics and the failure policy. Serialized as its
/// [`FailureReason::as_str`] name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The plugin returned `retry`.
    PluginRetry,
    /// The plugin returned `skip`.
    PluginSkip,
    /// The plugin returned `fatal`.
    PluginFatal,
    /// The guest trapped (a panic, `unreachable`, a bad access).
    Trap,
    /// A limit stopped it.
    Limit(LimitHit),
    /// It returned an effect outside its grant.
    OutsideGrant,
}

impl FailureReason {
    /// The name used in reports and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::PluginRetry => "retry",
            FailureReason::PluginSkip => "skip",
            FailureReason::PluginFatal => "fatal",
            FailureReason::Trap => "trap",
            FailureReason::Limit(limit) => limit.as_str(),
            FailureReason::OutsideGrant => "outside-grant",
        }
    }

    /// Whether the next attempt needs a fresh instance: a trap poisons a component instance,
    /// and after `fatal` or discarded effects its memory can no longer be trusted.
    pub fn needs_fresh_instance(self) -> bool {
        !matches!(self, FailureReason::PluginRetry | FailureReason::PluginSkip)
    }
}

impl Serialize for FailureReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A failed call.
#[derive(Clone, Debug, Serialize, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct Failure {
    /// What stopped it.
    pub reason: FailureReason,
    /// The plugin's message or the trap's.
    pub message: String,
    /// The guest's backtrace, when it trapped.
    pub backtrace: Option<String>,
    /// What the guest wrote to stderr (a Rust panic message lands there).
    pub stderr: String,
}

impl Failure {
    /// A failure with no backtrace or stderr.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
            backtrace: None,
            stderr: String::new(),
        }
    }
}
