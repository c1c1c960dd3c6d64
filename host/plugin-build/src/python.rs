//! Builds a python plugin folder. (Contract placeholder: the helper that owns this file
//! replaces it.)

use std::path::Path;

use crate::{BuildOptions, BuiltPlugin};

/// Builds the python plugin in `dir` into `options.out`.
pub(crate) fn build(dir: &Path, _options: &BuildOptions) -> anyhow::Result<BuiltPlugin> {
    anyhow::bail!("{}: python builds are not written yet", dir.display())
}
