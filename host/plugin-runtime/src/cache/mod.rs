//! Compiled components cached on disk by content hash, so a restart or a reload of an
//! unchanged plugin skips compilation (a Python component takes seconds to compile).
//! Compilations of one component are serialised by a lock file, so readers (threads or
//! processes) sharing the folder compile it once and the others load the result.
//!
//! Loading an artifact runs its native code, so the cache trusts nothing but its own key
//! (`trust`): the folder must be writable by this user only, and each artifact starts with an
//! HMAC-SHA256 of its name and bytes under the folder's secret key. An artifact that fails the
//! check (torn, truncated, tampered, from another installation) is logged, deleted and
//! compiled again, never loaded. All access goes through one `cap_std` handle on the folder.

mod trust;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtime::Engine;
use wasmtime::component::Component;

use trust::{CacheKey, MAC_LEN, check_folder, private_new_file, sync_dir};

/// A folder of `<sha256>-<engine>.cwasm` files (each its MAC, then wasmtime's artifact) and
/// the key they are signed with.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: Arc<Dir>,
    path: PathBuf,
    key: CacheKey,
    engine_tag: String,
}

impl CompileCache {
    /// A cache in `dir` for artifacts of `engine` (whose settings are part of every name, so a
    /// differently configured engine never loads them). The folder is created owner-only
    /// (0700); an existing one that its group, others or another user can write is refused.
    pub fn new(dir: &Path, engine: &Engine) -> anyhow::Result<CompileCache> {
        let context = || format!("compile cache folder {}", dir.display());
        if !dir.is_dir() {
            let mut builder = std::fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(builder.recursive(true), 0o700);
            builder
                .create(dir)
                .map_err(anyhow::Error::from)
                .map_err(|e| {
                    e.context(format!(
                        "creating the compile cache folder {}",
                        dir.display()
                    ))
                })?;
        }
        let handle = Dir::open_ambient_dir(dir, ambient_authority())
            .map_err(|e| anyhow::Error::from(e).context(context()))?;
        check_folder(&handle, dir)?;
        let key = CacheKey::load_or_create(&handle, dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache {
            dir: Arc::new(handle),
            path: dir.to_path_buf(),
            key,
            engine_tag: format!("{:016x}", hasher.finish()),
        })
    }

    /// The artifact's file name.
    fn name(&self, sha256: &str) -> String {
        format!("{sha256}-{}.cwasm", self.engine_tag)
    }

    /// The cached compilation of `sha256`, or `compile`'s result, stored for next time. While
    /// one caller compiles, the others wait and then load what it stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        compile: impl FnOnce() -> anyhow::Result<Component>,
    ) -> anyhow::Result<Component> {
        let name = self.name(sha256);
        if let Some(component) = self.load(engine, &name) {
            return Ok(component);
        }
        let lock_name = format!("{name}.lock");
        // Without the lock (an unwritable folder) the only cost is compiling twice.
        let lock = self.lock(&lock_name);
        if let Err(error) = &lock {
            tracing::debug!(path = %self.path.join(&lock_name).display(), %error, "compiling without the cache lock");
        }
        if let Some(component) = self.load(engine, &name) {
            return Ok(component);
        }
        let component = compile()?;
        self.store(&name, &component);
        if lock.is_ok() {
            // Later callers find the artifact first; a waiter holding the unlinked file loads it.
            let _ = self.dir.remove_file(&lock_name);
        }
        Ok(component)
    }

    /// Takes the lock file `name` (owner-only), waiting while another holder has it.
    fn lock(&self, name: &str) -> std::io::Result<std::fs::File> {
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create(true);
        cap_std::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = self.dir.open_with(name, &options)?.into_std();
        file.lock()?;
        Ok(file)
    }

    /// The component in artifact `name`, if there is one and its MAC is right. The bytes are
    /// read once and checked, and those same bytes are loaded; a bad artifact is deleted.
    fn load(&self, engine: &Engine, name: &str) -> Option<Component> {
        let mut bytes = Vec::new();
        match self.dir.open(name) {
            Ok(file) => {
                if let Err(error) = file.into_std().read_to_end(&mut bytes) {
                    return self.discard(name, &format!("cannot read it: {error}"));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => return self.discard(name, &format!("cannot open it: {error}")),
        }
        if bytes.len() < MAC_LEN {
            return self.discard(name, "shorter than its MAC (truncated)");
        }
        let (mac, artifact) = bytes.split_at(MAC_LEN);
        if !self.key.verify(&[name.as_bytes(), &[0], artifact], mac) {
            return self.discard(
                name,
                "its MAC does not match (torn, truncated, altered, or not made with this cache's key)",
            );
        }
        #[allow(unsafe_code)]
        // SAFETY: `deserialize` trusts its bytes to be wasmtime's own output for this engine.
        // These are: they carry an HMAC-SHA256, under the cache's secret key, of the artifact's
        // name (the source's sha256 and this engine's settings) and of exactly these bytes,
        // checked just above on the same in-memory copy that is loaded (no second read). Only
        // this cache knows the key: it lives in an owner-only file (0600) in a folder that only
        // this user can write (both checked in `new`), and `store` signs only what wasmtime
        // serialised. So these bytes are an artifact this cache wrote for this component.
        let component = unsafe { Component::deserialize(engine, artifact) };
        match component {
            Ok(component) => Some(component),
            Err(error) => self.discard(name, &format!("wasmtime cannot use it: {error:#}")),
        }
    }

    /// Logs why artifact `name` is unusable and deletes it, so it is compiled again.
    fn discard(&self, name: &str, why: &str) -> Option<Component> {
        let path = self.path.join(name);
        tracing::warn!(path = %path.display(), why, "compiling again instead of loading a bad compiled component");
        if let Err(error) = self.dir.remove_file(name)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), %error, "could not delete a bad compiled component");
        }
        None
    }

    /// Stores `component`'s compilation as `name`, signed; failures only cost a recompilation
    /// later, so they are logged, not returned.
    fn store(&self, name: &str, component: &Component) {
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|bytes| self.write_signed(name, &bytes));
        if let Err(error) = result {
            tracing::warn!(path = %self.path.join(name).display(), %error, "could not cache a compiled component");
        }
    }

    /// Writes MAC and artifact to a private temporary file, syncs it, renames it to `name`
    /// and syncs the folder: after an OS crash `name` is the whole artifact or absent.
    fn write_signed(&self, name: &str, artifact: &[u8]) -> std::io::Result<()> {
        let mac = self.key.mac(&[name.as_bytes(), &[0], artifact]);
        let temporary = format!("{name}.tmp{}", std::process::id());
        let _ = self.dir.remove_file(&temporary);
        let written = self.write_then_rename(&temporary, name, &[&mac, artifact]);
        if written.is_err() {
            let _ = self.dir.remove_file(&temporary);
        }
        written
    }

    /// Writes `parts` to the new private file `temporary`, syncs it, renames it to `name` and
    /// syncs the folder.
    fn write_then_rename(
        &self,
        temporary: &str,
        name: &str,
        parts: &[&[u8]],
    ) -> std::io::Result<()> {
        let mut file = self.dir.open_with(temporary, &private_new_file())?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        drop(file);
        self.dir.rename(temporary, &self.dir, name)?;
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests;
