//! What makes the compile cache trustworthy: a folder only its owner can write, and a secret
//! key (`cache.key`, 32 random bytes, mode 0600) under which every artifact carries an
//! HMAC-SHA256. Whoever can write artifacts but cannot read the key cannot forge one, and a
//! torn, truncated or altered artifact fails the check (`docs/design.md`, decision 32).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The key file's name inside the cache folder.
pub(super) const KEY_FILE: &str = "cache.key";

/// Length of the key and of a MAC, in bytes.
pub(super) const MAC_LEN: usize = 32;

/// SHA-256's block size, HMAC's key block.
const BLOCK: usize = 64;

/// Refuses a cache folder that someone else could write: group- or world-writable, or owned
/// by another user. `path` names it in the message.
pub(super) fn check_folder(dir: &Dir, path: &Path) -> anyhow::Result<()> {
    let meta = dir.dir_metadata()?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "the compile cache folder {} is writable by its group or by others (mode {mode:04o}): \
             whoever can write it could run native code in this process. Run `chmod 700 {}` \
             (or point `compile_cache` at a folder only this user can write)",
            path.display(),
            path.display()
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        anyhow::bail!(
            "the compile cache folder {} belongs to uid {}, not to this process's uid {me}: \
             its owner could run native code in this process. Run `chown {me} {}` and \
             `chmod 700 {}` (or point `compile_cache` at a folder of this user's)",
            path.display(),
            meta.uid(),
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// The installation's secret key.
#[derive(Clone)]
pub(super) struct CacheKey([u8; MAC_LEN]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    /// The key in `dir` (the cache folder at `path`), created if missing. A key file readable
    /// or writable by others, or another user's, is refused: its key may be known.
    pub(super) fn load_or_create(dir: &Dir, path: &Path) -> anyhow::Result<CacheKey> {
        let key_path = path.join(KEY_FILE);
        for _ in 0..3 {
            match dir.open(KEY_FILE) {
                Ok(file) => {
                    let meta = file.metadata()?;
                    let mode = meta.mode() & 0o7777;
                    let me = rustix::process::geteuid().as_raw();
                    if mode & 0o077 != 0 || meta.uid() != me {
                        anyhow::bail!(
                            "the compile cache key {} is not this user's alone (mode {mode:04o}, \
                             uid {}): delete it (a new key is made and every component is \
                             compiled again) and check who can reach {}",
                            key_path.display(),
                            meta.uid(),
                            path.display()
                        );
                    }
                    let mut bytes = Vec::with_capacity(MAC_LEN);
                    file.take(MAC_LEN as u64 + 1).read_to_end(&mut bytes)?;
                    if let Ok(key) = <[u8; MAC_LEN]>::try_from(bytes.as_slice()) {
                        return Ok(CacheKey(key));
                    }
                    tracing::warn!(path = %key_path.display(), "replacing a malformed compile cache key");
                    dir.remove_file(KEY_FILE)?;
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    create_key(dir)?;
                }
                Err(error) => {
                    return Err(anyhow::Error::from(error)
                        .context(format!("reading {}", key_path.display())));
                }
            }
        }
        anyhow::bail!("could not create {}", key_path.display())
    }

    /// HMAC-SHA256 (RFC 2104) of `parts`, concatenated, under this key.
    pub(super) fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut block = [0u8; BLOCK];
        block[..MAC_LEN].copy_from_slice(&self.0);
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let mut inner = Sha256::new();
        inner.update(pad(0x36));
        for part in parts {
            inner.update(part);
        }
        let mut outer = Sha256::new();
        outer.update(pad(0x5c));
        outer.update(inner.finalize());
        outer.finalize().into()
    }

    /// Whether `mac` is the MAC of `parts`, compared in constant time.
    pub(super) fn verify(&self, parts: &[&[u8]], mac: &[u8]) -> bool {
        let expected = self.mac(parts);
        mac.len() == MAC_LEN && expected.iter().zip(mac).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

/// Writes a new random key to a private temporary file, syncs it and links it into place
/// (so a concurrent creator's key, if it won, is the one both use). The temporary file is
/// named by process and by call, so that two engines of one process opening the same new
/// folder at once do not remove each other's file.
fn create_key(dir: &Dir) -> anyhow::Result<()> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut key = [0u8; MAC_LEN];
    rand::rng().fill_bytes(&mut key);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let temporary = format!("{KEY_FILE}.tmp{}-{call}", std::process::id());
    let _ = dir.remove_file(&temporary);
    let mut file = dir.open_with(&temporary, &private_new_file())?;
    file.write_all(&key)?;
    file.sync_all()?;
    drop(file);
    let linked = dir.hard_link(&temporary, dir, KEY_FILE);
    dir.remove_file(&temporary)?;
    match linked {
        Ok(()) => sync_dir(dir).unwrap_or_else(|error| {
            tracing::warn!(%error, "could not sync the compile cache folder after creating its key");
        }),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Options for a new file only its owner can read and write; an existing one is an error.
pub(super) fn private_new_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    options
}

/// Flushes `dir`'s entries (a rename or link in it) to disk. The handle itself is opened
/// `O_PATH`, which cannot be synced, so the folder is opened again for reading.
pub(super) fn sync_dir(dir: &Dir) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true);
    dir.open_with(".", &options)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_hmac_sha256() {
        // RFC 4231, test case 2 (a key shorter than the block), with our fixed-length key:
        // the key "Jefe" padded with zeros is the same HMAC key as "Jefe".
        let mut key = [0u8; MAC_LEN];
        key[..4].copy_from_slice(b"Jefe");
        let mac = CacheKey(key).mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(CacheKey(key).verify(&[b"what do ya want for nothing?"], &mac));
        assert!(!CacheKey(key).verify(&[b"what do ya want for nothing!"], &mac));
        assert!(!CacheKey(key).verify(&[b"what do ya want for nothing?"], &mac[..31]));
    }

    #[test]
    fn engines_of_one_process_opening_a_new_folder_at_once_share_one_key() {
        let folder = tempfile::tempdir().unwrap();
        let barrier = std::sync::Barrier::new(8);
        let keys: Vec<[u8; MAC_LEN]> = std::thread::scope(|scope| {
            let opened: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let dir =
                            Dir::open_ambient_dir(folder.path(), cap_std::ambient_authority())
                                .unwrap();
                        barrier.wait();
                        CacheKey::load_or_create(&dir, folder.path()).unwrap().0
                    })
                })
                .collect();
            opened.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|key| *key == keys[0]));
        let left: Vec<_> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [KEY_FILE], "no temporary file is left behind");
    }
}
