//! Reading rows back: a stream's rows in a token range, paged without cutting a token.

use streamhost_proto::{RowJson, StreamName, Token};

use crate::{Log, Pool, Result, Updates};

impl Log {
    /// Reads the rows of `stream` with tokens in `(from, upto]`, at most about `limit` rows.
    ///
    /// Never cuts a token in half: when the limit falls inside a run of rows sharing a token,
    /// the run is left for the next call, or returned whole if it is the first token.
    ///
    /// Fails with [`crate::LogError::Trimmed`] when `from` is below the stream's floor (rows
    /// after it were trimmed). The floor is read after the rows, and a trim raises it in the
    /// transaction that deletes them, so a read racing a trim is refused, never short.
    pub async fn read_range(
        &self,
        stream: &StreamName,
        from: Token,
        upto: Token,
        limit: usize,
    ) -> Result<Updates> {
        let limit = limit.max(1);
        if upto <= from {
            return Ok(Updates {
                rows: Vec::new(),
                upto,
                limited: false,
            });
        }
        let mut rows = self
            .select(stream, from, upto, Some((limit + 1) as i64))
            .await?;
        self.check_floor(stream, from).await?;
        if rows.len() <= limit {
            return Ok(Updates {
                rows,
                upto,
                limited: false,
            });
        }
        let boundary = rows[limit].0;
        rows.truncate(limit);
        rows.retain(|(token, _)| *token < boundary);
        if rows.is_empty() {
            // One token holds more rows than the limit: return that token whole.
            rows = self
                .select(stream, Token(boundary.0 - 1), boundary, None)
                .await?;
            self.check_floor(stream, from).await?;
            return Ok(Updates {
                rows,
                upto: boundary,
                limited: boundary < upto,
            });
        }
        let last = rows.last().expect("non-empty").0;
        Ok(Updates {
            rows,
            upto: last,
            limited: true,
        })
    }

    /// Rows of `stream` with tokens in `(from, upto]` in log order, at most `limit`.
    async fn select(
        &self,
        stream: &StreamName,
        from: Token,
        upto: Token,
        limit: Option<i64>,
    ) -> Result<Vec<(Token, RowJson)>> {
        let limit = limit.unwrap_or(i64::MAX);
        let rows: Vec<(i64, String)> = match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT token, row_json FROM stream_rows WHERE stream = ? AND token > ? \
                     AND token <= ? ORDER BY token, seq LIMIT ?",
                )
                .bind(stream.as_str())
                .bind(from.0)
                .bind(upto.0)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT token, row_json FROM stream_rows WHERE stream = $1 AND token > $2 \
                     AND token <= $3 ORDER BY token, seq LIMIT $4",
                )
                .bind(stream.as_str())
                .bind(from.0)
                .bind(upto.0)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|(token, text)| {
                Ok((
                    Token(token),
                    RowJson::parse_bytes(bytes::Bytes::from(text))?,
                ))
            })
            .collect()
    }
}
