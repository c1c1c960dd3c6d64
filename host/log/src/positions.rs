//! Each declared stream's committed position, as far as a handle knows: read from the table
//! at open, advanced after each commit.

use std::collections::HashMap;

use streamhost_proto::{StreamName, Token};

use crate::{Log, LogError, ORIGIN, Pool, Result};

impl Log {
    /// Reads every declared stream's position from the table, replacing what this handle knew.
    pub(crate) async fn load_positions(&self) -> Result<()> {
        const SQL: &str = "SELECT name, (SELECT MAX(token) FROM stream_rows WHERE stream = streams.name) \
             FROM streams ORDER BY name";
        let rows: Vec<(String, Option<i64>)> = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
            Pool::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
        };
        let mut positions = HashMap::new();
        for (name, position) in rows {
            let stream = StreamName::new(name).map_err(|e| LogError::Corrupt(e.to_string()))?;
            positions.insert(stream, position.map_or(ORIGIN, Token));
        }
        *self.positions.lock().expect("positions lock") = positions;
        Ok(())
    }

    /// Every declared stream and its position, by name: the positions this handle read at
    /// open or committed since (on PostgreSQL also what other appenders committed before this
    /// handle's last append).
    pub async fn positions(&self) -> Result<Vec<(StreamName, Token)>> {
        let positions = self.positions.lock().expect("positions lock");
        let mut all: Vec<_> = positions.iter().map(|(s, t)| (s.clone(), *t)).collect();
        all.sort();
        Ok(all)
    }

    /// Records committed positions; never moves one backwards (another handle of the same
    /// log may have recorded a later one).
    pub(crate) fn advance(&self, positions: HashMap<&StreamName, i64>) {
        let mut committed = self.positions.lock().expect("positions lock");
        for (stream, position) in positions {
            let entry = committed.entry(stream.clone()).or_insert(ORIGIN);
            *entry = (*entry).max(Token(position));
        }
    }
}
