//! The plugin host's own files, reached through `cap_std` directory handles: the reader's
//! data folder is opened once, and `plugin-failures/` (failing batches kept for
//! `streamhost plugin run`) is a handle beneath it. A name that came from the network or a
//! plugin (a stream, an instance, a plugin) becomes a file-name part only through
//! [`file_name_part`], so it can never name another folder (`docs/design.md`, decision 33).
//! The folder is pruned by count and age (`FailureFiles::prune`, `[reader.plugins.retention]`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, OpenOptions, OpenOptionsExt};

/// The folder of failing batches, inside the reader's data folder.
pub(crate) const FAILURES_FOLDER: &str = "plugin-failures";

/// Longest encoded name part kept whole; longer ones are cut and suffixed with a hash.
const MAX_PART: usize = 64;

/// The reader's `plugin-failures/` folder, opened beneath its data folder.
pub(crate) struct FailureFiles {
    dir: Dir,
    path: PathBuf,
}

impl FailureFiles {
    /// Opens (creating owner-only, 0700) `plugin-failures/` in the data folder `data`.
    pub(crate) fn open(data: &Path) -> std::io::Result<FailureFiles> {
        let root = Dir::open_ambient_dir(data, ambient_authority())?;
        let mut builder = DirBuilder::new();
        builder.mode(0o700);
        if let Err(error) = root.create_dir_with(FAILURES_FOLDER, &builder)
            && error.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(error);
        }
        Ok(FailureFiles {
            dir: root.open_dir(FAILURES_FOLDER)?,
            path: data.join(FAILURES_FOLDER),
        })
    }

    /// Writes `contents` (owner-only, 0600) as `<parts, each encoded, joined by '-'>.rdata`;
    /// returns the file's path.
    pub(crate) fn write(&self, parts: &[&str], contents: &[u8]) -> std::io::Result<PathBuf> {
        let name = format!(
            "{}.rdata",
            parts
                .iter()
                .map(|part| file_name_part(part))
                .collect::<Vec<_>>()
                .join("-")
        );
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(0o600);
        let mut file = self.dir.open_with(&name, &options)?;
        file.write_all(contents)?;
        Ok(self.path.join(name))
    }
}

impl FailureFiles {
    /// Deletes the files older than `before` (none by age when `None`) and all but the newest
    /// `keep` (0: none by count), by modification time; returns how many went. Blocking.
    pub(crate) fn prune(&self, keep: u64, before: Option<SystemTime>) -> std::io::Result<u64> {
        let mut files = Vec::new();
        for entry in self.dir.entries()? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_file() {
                files.push((metadata.modified()?.into_std(), entry.file_name()));
            }
        }
        // Newest first; a name breaks ties so the order is stable.
        files.sort_by(|a, b| b.cmp(a));
        let mut pruned = 0;
        for (i, (modified, name)) in files.iter().enumerate() {
            let too_many = keep > 0 && i as u64 >= keep;
            let too_old = before.is_some_and(|before| *modified < before);
            if too_many || too_old {
                match self.dir.remove_file(name) {
                    Ok(()) => pruned += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(pruned)
    }
}

/// `name` as one file-name component: ASCII letters, digits, `.`, `_` and `-` are kept (so an
/// ordinary name reads as itself), every other byte becomes `%XX`, a name of only dots has
/// them encoded (so it is never `.` or `..`), and a long one is cut and given a hash of the
/// whole so that different names stay different.
pub(crate) fn file_name_part(name: &str) -> String {
    let only_dots = name.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'_' | b'-')
            || (byte == b'.' && !only_dots)
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.len() > MAX_PART {
        let hash = streamhost_plugin_runtime::sha256_hex(name.as_bytes());
        let mut cut = MAX_PART - 17;
        // Never cut an escape (`%XX`, three characters) in half.
        if let Some(escape) = out[..cut].rfind('%')
            && escape + 3 > cut
        {
            cut = escape;
        }
        out.truncate(cut);
        out.push('~');
        out.push_str(&hash[..16]);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_read_as_themselves() {
        for name in [
            "events",
            "room-timeline",
            "un_partial_stated_room",
            "master",
            "v1.2",
        ] {
            assert_eq!(file_name_part(name), name);
        }
    }

    #[test]
    fn no_name_becomes_a_path() {
        for name in [
            "../../x",
            "/etc/passwd",
            ".",
            "..",
            "...",
            "a/b",
            "a\\b",
            "é",
            "%2F",
        ] {
            let part = file_name_part(name);
            assert!(!part.contains(['/', '\\']), "{name:?} → {part}");
            assert!(!part.trim_matches('.').is_empty(), "{name:?} → {part}");
            assert!(part != "." && part != "..", "{name:?} → {part}");
        }
        assert_eq!(file_name_part("../../x"), "..%2F..%2Fx");
        assert_eq!(file_name_part(".."), "%2E%2E");
        assert_eq!(
            file_name_part("%2F"),
            "%252F",
            "an escape is escaped, so names stay apart"
        );
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let a = file_name_part(&format!("{}a", "/".repeat(300)));
        let b = file_name_part(&format!("{}b", "/".repeat(300)));
        assert!(a.len() <= MAX_PART, "{a}");
        assert_ne!(a, b);
        assert!(!a.contains("%2~") && !a.contains("%~"), "{a}");
    }

    #[test]
    fn pruning_keeps_the_newest_files_and_drops_old_ones() {
        let root = tempfile::tempdir().unwrap();
        let files = FailureFiles::open(root.path()).unwrap();
        let folder = root.path().join(FAILURES_FOLDER);
        let now = SystemTime::now();
        for (i, age_s) in [(0, 40), (1, 30), (2, 20), (3, 10)] {
            let path = files.write(&["p", &i.to_string()], b"x").unwrap();
            let at = now - std::time::Duration::from_secs(age_s);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
        let names = || {
            let mut names: Vec<String> = std::fs::read_dir(&folder)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(files.prune(3, None).unwrap(), 1, "the oldest goes");
        assert_eq!(names(), ["p-1.rdata", "p-2.rdata", "p-3.rdata"]);
        let before = now - std::time::Duration::from_secs(15);
        assert_eq!(files.prune(0, Some(before)).unwrap(), 2);
        assert_eq!(names(), ["p-3.rdata"]);
        assert_eq!(files.prune(0, None).unwrap(), 0, "no limits, nothing goes");
    }

    #[test]
    fn failure_files_stay_inside_their_folder() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let files = FailureFiles::open(&data).unwrap();
        let path = files
            .write(&["evil", "../../x", "master", "1", "2"], b"RDATA\n")
            .unwrap();
        assert_eq!(path.parent().unwrap(), data.join(FAILURES_FOLDER));
        assert_eq!(std::fs::read(&path).unwrap(), b"RDATA\n");
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["data"], "nothing beside the data folder");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.join(FAILURES_FOLDER)), 0o700);
        assert_eq!(mode(&path), 0o600);
    }
}
