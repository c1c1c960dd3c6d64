//! Compiled components cached on disk by content hash, so a restart or a reload of an
//! unchanged plugin skips compilation (a Python component takes seconds to compile).
//! Compilations of one component are serialised by a lock file, so readers (threads or
//! processes) sharing the folder compile it once and the others load the result.

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

    /// The cached compilation of `sha256`, or `compile`'s result, stored for next time. While
    /// one caller compiles, the others wait and then load what it stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        compile: impl FnOnce() -> anyhow::Result<Component>,
    ) -> anyhow::Result<Component> {
        if let Some(component) = self.load(engine, sha256) {
            return Ok(component);
        }
        let lock_path = self.path(sha256).with_extension("lock");
        // Without the lock (an unwritable folder) the only cost is compiling twice.
        let lock = std::fs::File::create(&lock_path).and_then(|file| file.lock().map(|()| file));
        if let Err(error) = &lock {
            tracing::debug!(path = %lock_path.display(), %error, "compiling without the cache lock");
        }
        if let Some(component) = self.load(engine, sha256) {
            return Ok(component);
        }
        let component = compile()?;
        self.store(sha256, &component);
        if lock.is_ok() {
            // Later callers find the artifact first; a waiter holding the unlinked file loads it.
            let _ = std::fs::remove_file(&lock_path);
        }
        Ok(component)
    }

    /// The cached compilation of the component whose bytes hash to `sha256`, if any.
    fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
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
    fn store(&self, sha256: &str, component: &Component) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::*;

    /// The smallest component: the preamble of the component binary format.
    const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    fn concurrent_loads_compile_once_and_later_ones_hit_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let compiled = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (engine, compiled, barrier) =
                    (engine.clone(), compiled.clone(), barrier.clone());
                let cache = CompileCache::new(dir.path(), &engine).unwrap();
                std::thread::spawn(move || {
                    barrier.wait();
                    cache
                        .load_or_compile(&engine, "abc", || {
                            compiled.fetch_add(1, Ordering::SeqCst);
                            // Long enough for every other thread to find the lock taken.
                            std::thread::sleep(Duration::from_millis(200));
                            Ok(Component::new(&engine, EMPTY_COMPONENT)?)
                        })
                        .unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(compiled.load(Ordering::SeqCst), 1);
        let cache = CompileCache::new(dir.path(), &engine).unwrap();
        cache
            .load_or_compile(&engine, "abc", || panic!("compiled although cached"))
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1, "only the artifact remains: {names:?}");
        assert!(names[0].ends_with(".cwasm"), "{names:?}");
    }
}
