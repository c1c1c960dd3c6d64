//! A small filesystem of a test's own: a tmpfs of a few MiB mounted on a temporary folder (the
//! suite runs as root), filled with one filler file so that whatever writes there meets
//! `ENOSPC`, emptied again by deleting the filler, and unmounted when dropped.
//!
//! [`SmallTablespace`] puts a PostgreSQL log there too. A test that needs either and cannot
//! have it fails with a message saying why; it never skips.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The filler's name on the small disk.
const FILLER: &str = "filler";

/// A mounted tmpfs; unmounted (lazily, should a file still be open) on drop.
pub struct SmallDisk {
    path: PathBuf,
    // Dropped after `drop` unmounted it: removes the then-empty mount point.
    _mount_point: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB on a new temporary folder; panics, saying why, when this
    /// process may not mount.
    pub fn mount(mib: u64) -> SmallDisk {
        let mount_point = tempfile::tempdir().expect("temp dir for the mount point");
        let path = mount_point.path().to_path_buf();
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("running mount(8)");
        assert!(
            output.status.success(),
            "mounting a {mib} MiB tmpfs on {} failed ({}): the full-disk tests need to mount a \
             small filesystem of their own, which takes root (or CAP_SYS_ADMIN)",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        SmallDisk {
            path,
            _mount_point: mount_point,
        }
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the filler until the filesystem has not one byte left; returns its size.
    pub fn fill(&self) -> u64 {
        let mut filler = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(FILLER))
            .expect("creating the filler");
        let mut written = 0u64;
        // Large writes first, then smaller ones, down to one byte: the last partial page too.
        for chunk in [1 << 20, 1 << 12, 1] {
            let bytes = vec![0xa5u8; chunk];
            while write_all_or_full(&mut filler, &bytes) {
                written += chunk as u64;
            }
        }
        written
    }

    /// Deletes the filler: the space it held is free again.
    pub fn free(&self) {
        std::fs::remove_file(self.path.join(FILLER)).expect("deleting the filler");
    }
}

/// Writes `bytes` whole; false when the filesystem is full (a short write counts as full).
fn write_all_or_full(file: &mut File, bytes: &[u8]) -> bool {
    match file.write_all(bytes) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => false,
        Err(e) if e.kind() == std::io::ErrorKind::WriteZero => false,
        Err(e) => panic!("writing the filler: {e}"),
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a server still shutting down may hold a file open for a moment.
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            eprintln!(
                "could not unmount the small disk at {}",
                self.path.display()
            );
        }
    }
}

/// A PostgreSQL tablespace on a [`SmallDisk`], and a schema whose tables go there: a log in
/// it fills the small disk while the server's WAL and catalogs stay on its own. Dropped (the
/// schema, then the tablespace) with the value, before the disk is unmounted.
pub struct SmallTablespace {
    base: String,
    name: String,
}

impl SmallTablespace {
    /// Creates the tablespace in `disk` (a folder the server's user owns) and a schema of the
    /// same name; panics, saying why, when the test server cannot.
    pub async fn create(disk: &SmallDisk) -> SmallTablespace {
        use sqlx::{AssertSqlSafe, Connection, PgConnection};

        let folder = disk.path().join("pg");
        std::fs::create_dir(&folder).expect("the tablespace's folder");
        let output = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&folder)
            .output()
            .expect("running chown(1)");
        assert!(
            output.status.success(),
            "giving {} to the user postgres: {} (the server's user must own a tablespace's \
             folder)",
            folder.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let name = format!(
            "sh_full_{}_{}",
            std::process::id(),
            disk.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("disk")
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
                .to_lowercase()
        );
        let base = crate::postgres::base_url();
        let mut conn = PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required at {base}: {e}"));
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLESPACE {name} LOCATION '{}'",
            folder.display()
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating a tablespace on the small disk at {} failed: {e} (the test needs \
                 a local PostgreSQL superuser that can reach the folder)",
                folder.display()
            )
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE SCHEMA");
        SmallTablespace { base, name }
    }

    /// A log URL whose tables go in the schema and the tablespace.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options[search_path]={name}&options[default_tablespace]={name}\
             &application_name={name}",
            self.base,
            name = self.name
        )
    }
}

impl Drop for SmallTablespace {
    fn drop(&mut self) {
        use sqlx::{AssertSqlSafe, Connection, PgConnection};

        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs inside the test's runtime: block on a runtime of another thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&base)
                    .await
                    .map_err(|e| e.to_string())?;
                // The writer's connections may still be closing: ask them to go first.
                let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = '{name}'"
                )))
                .execute(&mut conn)
                .await;
                // Two statements: DROP TABLESPACE may not run in a transaction block.
                for statement in [
                    format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
                    format!("DROP TABLESPACE IF EXISTS {name}"),
                ] {
                    sqlx::raw_sql(AssertSqlSafe(statement))
                        .execute(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the tablespace {}: {dropped:?}", self.name);
        }
    }
}
