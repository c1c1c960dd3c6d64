//! The reader's own SQLite database (`reader.sqlite`): the applied position of every
//! (stream, instance), with the writer's run it belongs to, and, with the recording sink,
//! every delivered row, and the gaps it moved past (`reader_gaps`).
//!
//! WAL with `synchronous = NORMAL`: a `kill -9` loses nothing committed; an OS crash may lose
//! the last commits, but positions and the sink's writes share each transaction, so they
//! rewind together and the reader fetches those rows again.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqliteConnection, SqlitePool};
use streamhost_proto::{InstanceName, RowJson, StreamName, Token};

/// Which run of a writer a token belongs to: how many times the reader saw that writer
/// restart its tokens (a Synapse process restarting resets its `typing`, `federation` and
/// `presence_federation` counters to 0). Starts at 0 and only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Run(pub i64);

impl Run {
    /// The run after this one.
    pub fn next(self) -> Run {
        Run(self.0 + 1)
    }
}

/// Where a writer's new run starts: its first token after a restart is above it (Synapse's
/// in-memory counters start again at 0).
pub(crate) const RUN_START: Token = Token(0);

/// Positions per multi-row upsert: 4 bound values each.
const UPSERT_CHUNK: usize = 1_000;

/// A token range `(from, to]` of a (stream, instance) the reader moved past without its rows
/// (a row of `reader_gaps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The stream.
    pub stream: StreamName,
    /// The writer instance.
    pub instance: InstanceName,
    /// The reader's position when it found the gap (excluded).
    pub from: Token,
    /// The position it moved on to (included).
    pub to: Token,
    /// `trimmed` (the writer's retention deleted the rows: a 410) or `unavailable` (no
    /// source has them).
    pub reason: String,
    /// When it was found, in ms since the Unix epoch.
    pub at_ms: i64,
}

/// The reader's database. Cloning shares the connection pool.
#[derive(Clone, Debug)]
pub struct ReaderStore {
    pool: SqlitePool,
}

impl ReaderStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> anyhow::Result<ReaderStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("opening reader database {}", path.display()))?;
        sqlx::migrate!("./migrations/reader")
            .run(&pool)
            .await
            .context("migrating the reader database")?;
        Ok(ReaderStore { pool })
    }

    /// The connection pool (the processor opens its group-commit transactions on it).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Every applied position, ordered by stream then instance.
    pub async fn positions(&self) -> anyhow::Result<Vec<(StreamName, InstanceName, Token)>> {
        let rows = sqlx::query(
            "SELECT stream, instance, token FROM reader_positions ORDER BY stream, instance",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (stream, instance) = key_of(row)?;
                Ok((stream, instance, Token(row.try_get("token")?)))
            })
            .collect()
    }

    /// Every row the recording sink kept for `stream`, in (token, instance, seq) order.
    pub async fn recorded_rows(
        &self,
        stream: &StreamName,
    ) -> anyhow::Result<Vec<(InstanceName, Token, RowJson)>> {
        let rows = sqlx::query(
            "SELECT instance, token, row_json FROM recorded_rows WHERE stream = ? \
             ORDER BY token, instance, seq",
        )
        .bind(stream.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let instance = InstanceName::new(row.try_get::<String, _>("instance")?)?;
                let json: String = row.try_get("row_json")?;
                let json = RowJson::parse(json.as_bytes())
                    .map_err(|e| anyhow::anyhow!("recorded row is not canonical JSON: {e}"))?;
                Ok((instance, Token(row.try_get("token")?), json))
            })
            .collect()
    }

    /// The writer's run of every (stream, instance) whose writer restarted its tokens at
    /// least once (see [`Run`]); the others are in run 0.
    pub async fn runs(&self) -> anyhow::Result<Vec<(StreamName, InstanceName, Run)>> {
        let rows = sqlx::query(
            "SELECT stream, instance, run FROM reader_positions WHERE run <> 0 \
             ORDER BY stream, instance",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (stream, instance) = key_of(row)?;
                Ok((stream, instance, Run(row.try_get("run")?)))
            })
            .collect()
    }

    /// Writes `positions` (token and run) inside the caller's transaction. A position may
    /// move backwards: after a writer's restart its new run starts again at 0.
    pub(crate) async fn write_positions(
        tx: &mut SqliteConnection,
        positions: &[(StreamName, InstanceName, Token, Run)],
    ) -> anyhow::Result<()> {
        for chunk in positions.chunks(UPSERT_CHUNK) {
            let mut upsert =
                QueryBuilder::new("INSERT INTO reader_positions (stream, instance, token, run) ");
            upsert.push_values(chunk, |mut values, (stream, instance, token, run)| {
                values
                    .push_bind(stream.as_str())
                    .push_bind(instance.as_str())
                    .push_bind(token.0)
                    .push_bind(run.0);
            });
            upsert.push(
                " ON CONFLICT (stream, instance) DO UPDATE SET token = excluded.token, \
                 run = excluded.run",
            );
            upsert.build().execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Every recorded gap, oldest first.
    pub async fn gaps(&self) -> anyhow::Result<Vec<Gap>> {
        let rows = sqlx::query(
            "SELECT stream, instance, from_token, to_token, reason, at_ms FROM reader_gaps \
             ORDER BY rowid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (stream, instance) = key_of(row)?;
                Ok(Gap {
                    stream,
                    instance,
                    from: Token(row.try_get("from_token")?),
                    to: Token(row.try_get("to_token")?),
                    reason: row.try_get("reason")?,
                    at_ms: row.try_get("at_ms")?,
                })
            })
            .collect()
    }

    /// Records `gaps` inside the caller's transaction (the one that moves past them).
    pub(crate) async fn write_gaps(tx: &mut SqliteConnection, gaps: &[Gap]) -> anyhow::Result<()> {
        for gap in gaps {
            sqlx::query(
                "INSERT INTO reader_gaps (stream, instance, from_token, to_token, reason, at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(gap.stream.as_str())
            .bind(gap.instance.as_str())
            .bind(gap.from.0)
            .bind(gap.to.0)
            .bind(&gap.reason)
            .bind(gap.at_ms)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Closes the pool, waiting for open connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The (stream, instance) of a `reader_positions` row.
fn key_of(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<(StreamName, InstanceName)> {
    let stream = StreamName::new(row.try_get::<String, _>("stream")?)?;
    let instance = InstanceName::new(row.try_get::<String, _>("instance")?)?;
    Ok((stream, instance))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::reader::sink::{Batch, BatchSink, RecordingSink};

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    fn instance(s: &str) -> InstanceName {
        InstanceName::new(s).unwrap()
    }

    fn row(s: &str) -> RowJson {
        RowJson::parse(s.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn positions_and_recorded_rows_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reader.sqlite");
        {
            let store = ReaderStore::open(&path).await.unwrap();
            let batches = vec![
                Batch {
                    stream: name("events"),
                    instance: instance("master"),
                    prev: Token(1),
                    token: Token(2),
                    rows: vec![row(r#"["a"]"#), row(r#"["b"]"#)],
                },
                Batch {
                    stream: name("typing"),
                    instance: instance("master"),
                    prev: Token(0),
                    token: Token(5),
                    rows: vec![row("[1]")],
                },
            ];
            let mut tx = store.pool().begin().await.unwrap();
            RecordingSink.apply(&batches, &mut tx).await.unwrap();
            ReaderStore::write_positions(
                &mut tx,
                &[
                    (name("events"), instance("master"), Token(2), Run(0)),
                    (name("typing"), instance("master"), Token(5), Run(0)),
                ],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            // A later position replaces the earlier one, even a lower one of a new run (the
            // writer restarted its typing tokens).
            let mut tx = store.pool().begin().await.unwrap();
            ReaderStore::write_positions(
                &mut tx,
                &[
                    (name("events"), instance("master"), Token(7), Run(0)),
                    (name("typing"), instance("master"), Token(1), Run(1)),
                ],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            store.close().await;
        }
        let store = ReaderStore::open(&path).await.unwrap();
        assert_eq!(
            store.positions().await.unwrap(),
            vec![
                (name("events"), instance("master"), Token(7)),
                (name("typing"), instance("master"), Token(1)),
            ]
        );
        assert_eq!(
            store.runs().await.unwrap(),
            vec![(name("typing"), instance("master"), Run(1))]
        );
        assert_eq!(
            store.recorded_rows(&name("events")).await.unwrap(),
            vec![
                (instance("master"), Token(2), row(r#"["a"]"#)),
                (instance("master"), Token(2), row(r#"["b"]"#)),
            ]
        );
        assert!(
            store
                .recorded_rows(&name("nothing"))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn recording_the_same_batch_twice_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReaderStore::open(&dir.path().join("reader.sqlite"))
            .await
            .unwrap();
        let batch = Batch {
            stream: name("events"),
            instance: instance("master"),
            prev: Token(1),
            token: Token(2),
            rows: vec![row("[1]")],
        };
        let mut tx = store.pool().begin().await.unwrap();
        RecordingSink
            .apply(std::slice::from_ref(&batch), &mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        let err = RecordingSink.apply(&[batch], &mut tx).await.unwrap_err();
        assert!(format!("{err:#}").contains("UNIQUE"), "{err:#}");
    }

    #[tokio::test]
    async fn a_reset_makes_room_for_the_writers_new_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReaderStore::open(&dir.path().join("reader.sqlite"))
            .await
            .unwrap();
        let typing = |token: i64, r: &str| Batch {
            stream: name("typing"),
            instance: instance("master"),
            prev: Token(token - 1),
            token: Token(token),
            rows: vec![row(r)],
        };
        let mut tx = store.pool().begin().await.unwrap();
        RecordingSink
            .apply(&[typing(1, "[1]"), typing(2, "[2]")], &mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        RecordingSink
            .reset(&name("typing"), &instance("master"), Token(0), &mut tx)
            .await
            .unwrap();
        RecordingSink
            .apply(&[typing(1, r#"["new"]"#)], &mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.recorded_rows(&name("typing")).await.unwrap(),
            vec![(instance("master"), Token(1), row(r#"["new"]"#))]
        );
    }
}
