//! Plugin state in the reader's database: cursors (with the writer's run each belongs to),
//! key-value stores, dead letters and pushes (the outbox, `reader::push`). One
//! [`PluginStore::commit`] writes all four for a group of batches in one transaction.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::{Row, SqlitePool};
use streamhost_plugin_runtime::KvChange;
use streamhost_proto::{InstanceName, StreamName, Token};

use super::feed::{Key, Run};
use crate::clock::unix_ms;
use crate::reader::push::outbox::{self, Staged};

/// A batch a plugin asked to skip.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DeadLetter {
    pub(crate) stream: String,
    pub(crate) instance: String,
    pub(crate) from_token: i64,
    pub(crate) to_token: i64,
    pub(crate) reason: String,
    pub(crate) at_ms: i64,
}

/// The plugin tables of the reader's database.
#[derive(Clone, Debug)]
pub(crate) struct PluginStore {
    pool: SqlitePool,
}

impl PluginStore {
    pub(crate) fn new(pool: SqlitePool) -> PluginStore {
        PluginStore { pool }
    }

    /// The plugin's persisted cursors, and the runs of those not in run 0.
    pub(crate) async fn cursors(
        &self,
        plugin: &str,
    ) -> anyhow::Result<(HashMap<Key, Token>, HashMap<Key, Run>)> {
        let rows =
            sqlx::query("SELECT stream, instance, token, run FROM plugin_cursors WHERE plugin = ?")
                .bind(plugin)
                .fetch_all(&self.pool)
                .await
                .context("reading plugin cursors")?;
        let mut cursors = HashMap::new();
        let mut runs = HashMap::new();
        for row in rows {
            let stream = StreamName::new(row.get::<String, _>(0).as_str())?;
            let instance = InstanceName::new(row.get::<String, _>(1).as_str())?;
            let key = (stream, instance);
            let run = Run(row.get(3));
            if run != Run::default() {
                runs.insert(key.clone(), run);
            }
            cursors.insert(key, Token(row.get(2)));
        }
        Ok((cursors, runs))
    }

    /// The plugin's key-value entries.
    pub(crate) async fn kv(&self, plugin: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT key, value FROM plugin_kv WHERE plugin = ?")
            .bind(plugin)
            .fetch_all(&self.pool)
            .await
            .context("reading a plugin's key-value store")?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The plugin's dead letters, newest first (at most `limit`).
    pub(crate) async fn dead_letters(
        &self,
        plugin: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT stream, instance, from_token, to_token, reason, at_ms FROM plugin_dead_letters \
             WHERE plugin = ? ORDER BY rowid DESC LIMIT ?",
        )
        .bind(plugin)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading dead letters")?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                stream: r.get(0),
                instance: r.get(1),
                from_token: r.get(2),
                to_token: r.get(3),
                reason: r.get(4),
                at_ms: r.get(5),
            })
            .collect())
    }

    /// Deletes dead letters older than `before_ms` (ms since the epoch; 0: none by age) and,
    /// per plugin, all but the newest `keep` (0: none by count); returns how many went.
    pub(crate) async fn prune_dead_letters(
        &self,
        keep: u64,
        before_ms: i64,
    ) -> anyhow::Result<u64> {
        let mut pruned = 0;
        if before_ms > 0 {
            pruned += sqlx::query("DELETE FROM plugin_dead_letters WHERE at_ms < ?")
                .bind(before_ms)
                .execute(&self.pool)
                .await
                .context("pruning dead letters by age")?
                .rows_affected();
        }
        if keep > 0 {
            pruned += sqlx::query(
                "DELETE FROM plugin_dead_letters WHERE rowid IN (SELECT rowid FROM \
                 (SELECT rowid, ROW_NUMBER() OVER (PARTITION BY plugin ORDER BY rowid DESC) AS n \
                 FROM plugin_dead_letters) WHERE n > ?)",
            )
            .bind(keep as i64)
            .execute(&self.pool)
            .await
            .context("pruning dead letters by count")?
            .rows_affected();
        }
        Ok(pruned)
    }

    /// Writes cursors (token and run), key-value changes, dead letters and pushes of one group
    /// in one transaction. A cursor may move backwards (to a writer's new run). The connection
    /// of a failed transaction is closed, not pooled again: SQLite may leave its transaction
    /// open (a full disk), and it would go on reading an old snapshot.
    pub(crate) async fn commit(
        &self,
        plugin: &str,
        cursors: &[(Key, Token, Run)],
        kv: &[KvChange],
        dead: &[DeadLetter],
        pushes: &[Staged],
    ) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await.context("taking a connection")?;
        let result = commit_on(&mut conn, plugin, cursors, kv, dead, pushes).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }
}

/// [`PluginStore::commit`]'s transaction on `conn`.
async fn commit_on(
    conn: &mut sqlx::SqliteConnection,
    plugin: &str,
    cursors: &[(Key, Token, Run)],
    kv: &[KvChange],
    dead: &[DeadLetter],
    pushes: &[Staged],
) -> anyhow::Result<()> {
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .context("beginning a transaction")?;
    for ((stream, instance), token, run) in cursors {
        sqlx::query(
            "INSERT INTO plugin_cursors (plugin, stream, instance, token, run) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (plugin, stream, instance) \
             DO UPDATE SET token = excluded.token, run = excluded.run",
        )
        .bind(plugin)
        .bind(stream.as_str())
        .bind(instance.as_str())
        .bind(token.0)
        .bind(run.0)
        .execute(&mut *tx)
        .await
        .context("writing a plugin cursor")?;
    }
    for (key, value) in kv {
        match value {
            Some(value) => {
                sqlx::query(
                    "INSERT INTO plugin_kv (plugin, key, value) VALUES (?, ?, ?) \
                     ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                )
                .bind(plugin)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await
            }
            None => {
                sqlx::query("DELETE FROM plugin_kv WHERE plugin = ? AND key = ?")
                    .bind(plugin)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
            }
        }
        .context("writing a plugin's key-value store")?;
    }
    for letter in dead {
        sqlx::query(
            "INSERT INTO plugin_dead_letters \
             (plugin, stream, instance, from_token, to_token, reason, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(plugin)
        .bind(&letter.stream)
        .bind(&letter.instance)
        .bind(letter.from_token)
        .bind(letter.to_token)
        .bind(&letter.reason)
        .bind(letter.at_ms)
        .execute(&mut *tx)
        .await
        .context("writing a dead letter")?;
    }
    outbox::insert(&mut tx, plugin, pushes, unix_ms()).await?;
    tx.commit().await.context("committing plugin state")?;
    Ok(())
}
