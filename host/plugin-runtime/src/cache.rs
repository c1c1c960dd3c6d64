//! Compiled components cached on disk by content hash, so a restart or a reload of an
//! unchanged plugin skips compilation (a Python component takes seconds to compile).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of `<sha256>-<engine>.cwasm` files.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
    engine_tag: String,
}

impl CompileCache {
    /// A cache in `dir` for artifacts of `engine` (whose settings are part of every name, so a
    /// differently configured engine never loads them).
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<CompileCache> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_tag))
    }

    /// The cached compilation of the component whose bytes hash to `sha256`, if any.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.is_file() {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. Only this
        // cache writes these files, under a name binding the source's hash and this engine's
        // settings, written to a temporary name and renamed into place so a torn write is
        // never read. The folder is the operator's (inside the reader's data folder).
        let component = unsafe { Component::deserialize_file(engine, &path) };
        match component {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "ignoring an unusable compiled component");
                None
            }
        }
    }

    /// Stores `component`'s compilation under `sha256`; failures only cost a recompilation
    /// later, so they are logged, not returned.
    pub fn store(&self, sha256: &str, component: &Component) {
        let path = self.path(sha256);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|bytes| {
                let temporary = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&temporary, bytes)?;
                std::fs::rename(&temporary, &path)
            });
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "could not cache a compiled component");
        }
    }
}
