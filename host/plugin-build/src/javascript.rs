//! Builds a javascript plugin folder. (Contract placeholder: the helper that owns this file
//! replaces it.)

use std::path::Path;

use crate::{BuildOptions, BuiltPlugin};

/// Builds the javascript plugin in `dir` into `options.out`.
pub(crate) fn build(dir: &Path, _options: &BuildOptions) -> anyhow::Result<BuiltPlugin> {
    anyhow::bail!("{}: javascript builds are not written yet", dir.display())
}
