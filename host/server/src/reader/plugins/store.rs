//! Plugin state in the reader's database: cursors (with the writer's run each belongs to),
//! key-value stores, dead letters and pushes (the outbox, `reader::push`). One
//! [`PluginStore::commit`] writes all four for a group of batches in one transaction.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
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
    write_kv(&mut tx, plugin, kv).await?;
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

/// Most key-value changes in one statement: 3 bound values each, far under SQLite's 32,766.
const KV_CHUNK_MAX: usize = 512;

/// Writes a group's key-value changes (each key at most once) in multi-row statements: one
/// upsert per chunk of set keys and one delete per chunk of removed keys, instead of one
/// statement (one hop to SQLite's thread) per key.
async fn write_kv(tx: &mut SqliteConnection, plugin: &str, kv: &[KvChange]) -> anyhow::Result<()> {
    let (sets, deletes): (Vec<_>, Vec<_>) = kv.iter().partition(|(_, value)| value.is_some());
    for chunk in power_of_two_chunks(&sets) {
        let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO plugin_kv (plugin, key, value) ");
        upsert.push_values(chunk, |mut values, (key, value)| {
            values
                .push_bind(plugin)
                .push_bind(key)
                .push_bind(value.as_deref());
        });
        upsert.push(" ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value");
        upsert
            .build()
            .execute(&mut *tx)
            .await
            .context("writing a plugin's key-value store")?;
    }
    for chunk in power_of_two_chunks(&deletes) {
        let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM plugin_kv WHERE plugin = ");
        delete.push_bind(plugin).push(" AND key IN (");
        let mut keys = delete.separated(", ");
        for (key, _) in chunk {
            keys.push_bind(key);
        }
        delete.push(")");
        delete
            .build()
            .execute(&mut *tx)
            .await
            .context("deleting from a plugin's key-value store")?;
    }
    Ok(())
}

/// `items` cut into chunks whose lengths are the largest powers of two up to
/// [`KV_CHUNK_MAX`], so that a commit of any size uses a few statement shapes that stay in the
/// connection's prepared-statement cache (355 changes: 256, 64, 32, 2 and 1).
fn power_of_two_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, after) = rest.split_at((1 << rest.len().ilog2()).min(KV_CHUNK_MAX));
        rest = after;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::{PluginStore, power_of_two_chunks};
    use crate::reader::store::ReaderStore;

    /// Commits `kv` for plugin `p` with no cursors, dead letters or pushes.
    async fn commit_kv(store: &PluginStore, plugin: &str, kv: &[super::KvChange]) {
        store
            .commit(plugin, &[], kv, &[], &[])
            .await
            .expect("commit");
    }

    #[tokio::test]
    async fn multi_row_writes_set_replace_and_delete_exactly_the_named_keys() {
        let dir = tempfile::tempdir().unwrap();
        let reader = ReaderStore::open(&dir.path().join("reader.db"))
            .await
            .unwrap();
        let store = PluginStore::new(reader.pool().clone());
        let value = |i: usize| Some(format!("v{i}").into_bytes().into());
        // 700 keys: chunks of 512, 128, 32, 16, 8 and 4.
        let first: Vec<_> = (0..700).map(|i| (format!("k{i}"), value(i))).collect();
        commit_kv(&store, "p", &first).await;
        commit_kv(&store, "other", &[("k1".into(), value(0))]).await;
        // Replace the even keys, delete every third (and one that never existed).
        let second: Vec<_> = (0..700)
            .filter_map(|i| match (i % 3, i % 2) {
                (0, _) => Some((format!("k{i}"), None)),
                (_, 0) => Some((format!("k{i}"), value(i + 1_000))),
                _ => None,
            })
            .chain([("missing".to_string(), None)])
            .collect();
        commit_kv(&store, "p", &second).await;
        let mut held = store.kv("p").await.unwrap();
        held.sort();
        let mut expected: Vec<_> = (0..700)
            .filter(|i| i % 3 != 0)
            .map(|i| {
                let v = if i % 2 == 0 { i + 1_000 } else { i };
                (format!("k{i}"), format!("v{v}").into_bytes())
            })
            .collect();
        expected.sort();
        assert_eq!(held, expected);
        // Another plugin's key of the same name is untouched.
        assert_eq!(
            store.kv("other").await.unwrap(),
            vec![("k1".to_string(), b"v0".to_vec())]
        );
    }

    #[test]
    fn chunks_are_powers_of_two_that_add_up() {
        for total in [0, 1, 2, 3, 100, 511, 512, 513, 1_500] {
            let items: Vec<usize> = (0..total).collect();
            let chunks: Vec<&[usize]> = power_of_two_chunks(&items).collect();
            let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert!(
                lens.iter().all(|n| n.is_power_of_two() && *n <= 512),
                "{total}: {lens:?}"
            );
            assert!(lens.windows(2).all(|w| w[0] >= w[1]), "{total}: {lens:?}");
            assert_eq!(chunks.concat(), items, "{total}: in order, each once");
        }
        let items = [0u8; 1_500];
        let lens: Vec<usize> = power_of_two_chunks(&items).map(<[u8]>::len).collect();
        assert_eq!(lens, [512, 512, 256, 128, 64, 16, 8, 4]);
        let lens: Vec<usize> = power_of_two_chunks(&items[..100])
            .map(<[u8]>::len)
            .collect();
        assert_eq!(lens, [64, 32, 4]);
    }
}
