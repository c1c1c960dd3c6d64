//! Tokens issued by the admin API, kept in the reader's database (`api_tokens`) by their
//! secret's sha256, so they survive a restart and the secret is never stored.

use serde::Serialize;
use sqlx::{Row, SqlitePool};

/// One issued token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    /// Its identifier, for listing and revoking.
    pub id: String,
    /// sha256 (hex) of the secret.
    #[serde(skip)]
    pub sha256: String,
    /// Who the holder is.
    pub subject: String,
    /// `plugin/query` patterns.
    pub queries: Vec<String>,
    /// Topic patterns (`{subject}` not yet replaced).
    pub topics: Vec<String>,
    /// When it was issued, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it stops working, in milliseconds since the Unix epoch; none: never.
    pub expires_ms: Option<i64>,
}

/// The `api_tokens` table.
#[derive(Clone, Debug)]
pub(super) struct TokenTable {
    pool: SqlitePool,
}

impl TokenTable {
    pub(super) fn new(pool: SqlitePool) -> TokenTable {
        TokenTable { pool }
    }

    /// Every issued token that has not expired at `now_ms`; expired ones are deleted.
    pub(super) async fn load(&self, now_ms: i64) -> anyhow::Result<Vec<IssuedToken>> {
        sqlx::query("DELETE FROM api_tokens WHERE expires_ms IS NOT NULL AND expires_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT id, sha256, subject, queries, topics, created_ms, expires_ms \
             FROM api_tokens ORDER BY created_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let patterns = |column: &str| -> anyhow::Result<Vec<String>> {
                    let text: String = row.try_get(column)?;
                    Ok(serde_json::from_str(&text)?)
                };
                Ok(IssuedToken {
                    id: row.try_get("id")?,
                    sha256: row.try_get("sha256")?,
                    subject: row.try_get("subject")?,
                    queries: patterns("queries")?,
                    topics: patterns("topics")?,
                    created_ms: row.try_get("created_ms")?,
                    expires_ms: row.try_get("expires_ms")?,
                })
            })
            .collect()
    }

    /// Stores `token`.
    pub(super) async fn insert(&self, token: &IssuedToken) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, sha256, subject, queries, topics, created_ms, expires_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.sha256)
        .bind(&token.subject)
        .bind(serde_json::to_string(&token.queries)?)
        .bind(serde_json::to_string(&token.topics)?)
        .bind(token.created_ms)
        .bind(token.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the token `id`; false if there was none.
    pub(super) async fn delete(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
