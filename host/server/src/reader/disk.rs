//! A full disk under the reader: telling a failed commit of `reader.sqlite` (the processor's
//! group commits, the plugins' cursor and key-value commits) that ran out of space from other
//! failures. A full disk fails the whole transaction, so nothing is applied without being
//! recorded; the caller keeps its committed positions and tries again after a back-off.

/// Whether `error` (or one of its causes) says the disk is full: SQLite's `SQLITE_FULL`, or
/// an I/O error `ENOSPC`.
pub(crate) fn is_disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(streamhost_log::is_disk_full)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use anyhow::Context;
    use sqlx::Connection;

    use super::*;

    #[tokio::test]
    async fn a_database_out_of_pages_is_a_full_disk_and_a_bad_statement_is_not() {
        // `max_page_count` makes SQLite answer SQLITE_FULL as it does for ENOSPC.
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x TEXT)")
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("PRAGMA max_page_count = 3")
            .execute(&mut db)
            .await
            .unwrap();
        let full = sqlx::query("INSERT INTO t VALUES (?)")
            .bind("x".repeat(100_000))
            .execute(&mut db)
            .await
            .context("inserting")
            .unwrap_err();
        assert!(is_disk_full(&full), "{full:#}");

        let bad = sqlx::query("INSERT INTO nowhere VALUES (1)")
            .execute(&mut db)
            .await
            .context("inserting")
            .unwrap_err();
        assert!(!is_disk_full(&bad), "{bad:#}");
        let io = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(is_disk_full(&io.context("writing")));
    }
}
