//! The outbox tables (`push_outbox`, `push_dead`) of the reader's database: written by a
//! plugin's commit ([`insert`]), read and emptied by the delivery worker, listed and edited by
//! the admin API.

use anyhow::Context;
use serde::Serialize;
use sqlx::{Row, SqliteConnection, SqlitePool};
use streamhost_plugin_runtime::Push;

/// A push as a plugin's commit writes it: the push and the batch that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Staged {
    /// The push.
    pub(crate) push: Push,
    /// The batch's stream.
    pub(crate) stream: String,
    /// The batch's last token.
    pub(crate) token: i64,
}

/// Writes `pushes` of `plugin` to the outbox inside the caller's transaction (the plugin's
/// commit), in order: their ids are the order they are delivered in.
pub(crate) async fn insert(
    tx: &mut SqliteConnection,
    plugin: &str,
    pushes: &[Staged],
    now_ms: u64,
) -> anyhow::Result<()> {
    for staged in pushes {
        sqlx::query(
            "INSERT INTO push_outbox (plugin, destination, key, body, stream, token, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(plugin)
        .bind(&staged.push.destination)
        .bind(&staged.push.key)
        .bind(&staged.push.body)
        .bind(&staged.stream)
        .bind(staged.token)
        .bind(now_ms as i64)
        .execute(&mut *tx)
        .await
        .context("writing a push to the outbox")?;
    }
    Ok(())
}

/// A push waiting in the outbox, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) created_ms: u64,
    pub(crate) attempts: u32,
    pub(crate) next_attempt_ms: u64,
}

/// A dead push, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DeadPush {
    pub(crate) id: i64,
    pub(crate) plugin: String,
    pub(crate) destination: String,
    pub(crate) key: String,
    /// The body as text when it is UTF-8.
    pub(crate) body: Option<String>,
    pub(crate) body_bytes: usize,
    pub(crate) stream: String,
    pub(crate) token: i64,
    pub(crate) created_ms: i64,
    pub(crate) attempts: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) died_ms: i64,
    pub(crate) reason: String,
}

/// How much waits for one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Depth {
    pub(crate) destination: String,
    /// Pushes in the outbox.
    pub(crate) depth: i64,
    /// When the oldest of them was committed (Unix ms), if any.
    pub(crate) oldest_ms: Option<i64>,
    /// Dead pushes.
    pub(crate) dead: i64,
}

/// The outbox tables.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    pool: SqlitePool,
}

impl Outbox {
    pub(crate) fn new(pool: SqlitePool) -> Outbox {
        Outbox { pool }
    }

    /// At most `limit` pushes for `destination` with an id above `after`, in id order.
    pub(crate) async fn waiting(
        &self,
        destination: &str,
        after: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<Waiting>> {
        let rows = sqlx::query(
            "SELECT id, key, created_ms, attempts, next_attempt_ms FROM push_outbox \
             WHERE destination = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(destination)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .context("reading the outbox")?;
        Ok(rows
            .iter()
            .map(|r| Waiting {
                id: r.get(0),
                key: r.get(1),
                created_ms: r.get::<i64, _>(2).max(0) as u64,
                attempts: r.get::<i64, _>(3).clamp(0, i64::from(u32::MAX)) as u32,
                next_attempt_ms: r.get::<i64, _>(4).max(0) as u64,
            })
            .collect())
    }

    /// The body of push `id`, if it is still in the outbox.
    pub(crate) async fn body(&self, id: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT body FROM push_outbox WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("reading a push's body")?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Removes a delivered push.
    pub(crate) async fn delete(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM push_outbox WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .context("removing a delivered push")?;
        Ok(())
    }

    /// Records a failed attempt: the count, the error and when to try again.
    pub(crate) async fn reschedule(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: u64,
        error: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE push_outbox SET attempts = ?, next_attempt_ms = ?, last_error = ? WHERE id = ?",
        )
        .bind(i64::from(attempts))
        .bind(next_attempt_ms as i64)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        .context("rescheduling a push")?;
        Ok(())
    }

    /// Moves push `id` to the dead pushes, with its last `attempts` and `error`.
    pub(crate) async fn bury(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        reason: &str,
        now_ms: u64,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await.context("beginning a transaction")?;
        sqlx::query(
            "INSERT INTO push_dead (id, plugin, destination, key, body, stream, token, \
             created_ms, attempts, next_attempt_ms, last_error, died_ms, reason) \
             SELECT id, plugin, destination, key, body, stream, token, created_ms, ?, \
             next_attempt_ms, ?, ?, ? FROM push_outbox WHERE id = ?",
        )
        .bind(i64::from(attempts))
        .bind(error)
        .bind(now_ms as i64)
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("writing a dead push")?;
        sqlx::query("DELETE FROM push_outbox WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("removing a dead push from the outbox")?;
        tx.commit().await.context("committing a dead push")?;
        Ok(())
    }

    /// The dead pushes (of `destination`, or all), newest first, at most `limit`.
    pub(crate) async fn dead(
        &self,
        destination: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<DeadPush>> {
        let rows = sqlx::query(
            "SELECT id, plugin, destination, key, body, stream, token, created_ms, attempts, \
             last_error, died_ms, reason FROM push_dead \
             WHERE (?1 IS NULL OR destination = ?1) ORDER BY died_ms DESC, id DESC LIMIT ?2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading dead pushes")?;
        Ok(rows
            .iter()
            .map(|r| {
                let body: Vec<u8> = r.get(4);
                DeadPush {
                    id: r.get(0),
                    plugin: r.get(1),
                    destination: r.get(2),
                    key: r.get(3),
                    body_bytes: body.len(),
                    body: String::from_utf8(body).ok(),
                    stream: r.get(5),
                    token: r.get(6),
                    created_ms: r.get(7),
                    attempts: r.get(8),
                    last_error: r.get(9),
                    died_ms: r.get(10),
                    reason: r.get(11),
                }
            })
            .collect())
    }

    /// Moves dead push `id` back to the outbox (behind every waiting push, attempts from 0);
    /// returns its destination, or `None` if there is no such dead push.
    pub(crate) async fn revive(&self, id: i64) -> anyhow::Result<Option<String>> {
        let mut tx = self.pool.begin().await.context("beginning a transaction")?;
        let destination: Option<String> =
            sqlx::query_scalar("SELECT destination FROM push_dead WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .context("reading a dead push")?;
        if destination.is_none() {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO push_outbox (plugin, destination, key, body, stream, token, created_ms) \
             SELECT plugin, destination, key, body, stream, token, ? FROM push_dead WHERE id = ?",
        )
        .bind(crate::clock::unix_ms() as i64)
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("putting a dead push back in the outbox")?;
        sqlx::query("DELETE FROM push_dead WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("removing a revived dead push")?;
        tx.commit().await.context("committing a revived push")?;
        Ok(destination)
    }

    /// Deletes dead push `id`; false if there was none.
    pub(crate) async fn drop_dead(&self, id: i64) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM push_dead WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .context("dropping a dead push")?;
        Ok(done.rows_affected() > 0)
    }

    /// Depth, oldest push and dead pushes of every destination that has any.
    pub(crate) async fn depths(&self) -> anyhow::Result<Vec<Depth>> {
        let rows = sqlx::query(
            "SELECT destination, SUM(depth), MIN(oldest), SUM(dead) FROM ( \
               SELECT destination, COUNT(*) AS depth, MIN(created_ms) AS oldest, 0 AS dead \
               FROM push_outbox GROUP BY destination \
               UNION ALL SELECT destination, 0, NULL, COUNT(*) FROM push_dead GROUP BY destination \
             ) GROUP BY destination ORDER BY destination",
        )
        .fetch_all(&self.pool)
        .await
        .context("counting the outbox")?;
        Ok(rows
            .iter()
            .map(|r| Depth {
                destination: r.get(0),
                depth: r.get(1),
                oldest_ms: r.get(2),
                dead: r.get(3),
            })
            .collect())
    }

    /// The latest time a destination asked (with 429 and `Retry-After`) not to be called
    /// before, as the outbox kept it: a restarted reader honours it too.
    pub(crate) async fn paused_until(&self, destination: &str) -> anyhow::Result<u64> {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(next_attempt_ms) FROM push_outbox \
             WHERE destination = ? AND last_error LIKE 'HTTP 429%'",
        )
        .bind(destination)
        .fetch_one(&self.pool)
        .await
        .context("reading the outbox")?;
        Ok(until.unwrap_or(0).max(0) as u64)
    }
}
