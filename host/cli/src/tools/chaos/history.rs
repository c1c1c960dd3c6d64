//! The clients and the history of what was acknowledged. Each client appends small batches
//! of rows, each row `{"id": "c<client>-<n>", "client": c, "n": n}` with an id used once,
//! and keeps every acknowledged row with its token.
//!
//! An append that fails (the writer killed mid-request, its database restarting) may or may
//! not have committed. The client then waits for the writer to answer again and reads the
//! log itself (a read-only handle on the writer's database): if its rows are there they are
//! acknowledged with the tokens found, otherwise it sends them again. So every row is
//! committed once, and the check can count exactly.
//!
//! The plugin-trap faults' rows are appended the same way by one more client, numbered after
//! the others: `{"id": "t-<n>", "client": c, "n": n, "trap_until_ms": T}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use streamhost_log::Log;
use streamhost_proto::{StreamName, Token};
use streamhost_server::client::ApiClient;
use tokio_util::sync::CancellationToken;

use super::schedule::Rng;

/// One acknowledged row.
#[derive(Clone, Debug)]
pub(super) struct Ack {
    /// The stream it went to.
    pub(super) stream: String,
    /// Its token.
    pub(super) token: Token,
}

/// Every acknowledged row by id, and the counts of the clients' troubles.
#[derive(Debug, Default)]
pub(super) struct History {
    /// Acknowledged rows by id.
    pub(super) acked: HashMap<String, Ack>,
    /// Appends that failed and were resolved by reading the log back.
    pub(super) ambiguous: u64,
    /// Of those, appends found committed (their answer was lost).
    pub(super) found_committed: u64,
    /// Rows of an append found partly committed (an append is atomic: a violation).
    pub(super) partial: Vec<String>,
}

/// The history shared by the clients.
pub(super) type SharedHistory = Arc<Mutex<History>>;

/// What a client talks to.
#[derive(Clone)]
pub(super) struct Ends {
    /// The writer's HTTP API.
    pub(super) writer: ApiClient,
    /// The writer's log, read back after a failed append.
    pub(super) oracle: Log,
    /// Where acknowledged rows go.
    pub(super) history: SharedHistory,
}

/// Runs client `client` until `stop`, appending to `streams`.
pub(super) async fn client(
    client: u64,
    seed: u64,
    ends: Ends,
    streams: Vec<String>,
    stop: CancellationToken,
) {
    let mut rng = Rng::new(seed ^ client.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut n: u64 = 0;
    // Per stream: the token of this client's last acknowledged row (its next rows come after).
    let mut last: HashMap<String, Token> = HashMap::new();
    while !stop.is_cancelled() {
        let stream = streams[rng.below(streams.len() as u64) as usize].clone();
        let count = 1 + rng.below(8);
        let shared = rng.below(5) == 0;
        let ids: Vec<String> = (n..n + count).map(|i| format!("c{client}-{i}")).collect();
        let rows: Vec<serde_json::Value> = (n..n + count)
            .zip(&ids)
            .map(|(i, id)| serde_json::json!({"id": id, "client": client, "n": i}))
            .collect();
        n += count;
        ends.append(&stream, &rows, shared, ids, &mut last).await;
    }
}

/// Runs the client that appends the plugin-trap faults' rows, as client number `client`:
/// for each hold received, one row to a stream drawn at random, marked to make the plugin
/// trap until the hold has passed. Ends when the sender is dropped.
pub(super) async fn trap_rows(
    client: u64,
    seed: u64,
    ends: Ends,
    streams: Vec<String>,
    mut holds: tokio::sync::mpsc::UnboundedReceiver<Duration>,
) {
    let mut rng = Rng::new(seed ^ client.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut last: HashMap<String, Token> = HashMap::new();
    let mut n: u64 = 0;
    while let Some(hold) = holds.recv().await {
        let stream = streams[rng.below(streams.len() as u64) as usize].clone();
        let id = format!("t-{n}");
        let until = now_ms() + hold.as_millis() as u64;
        let row = serde_json::json!({"id": id, "client": client, "n": n, "trap_until_ms": until});
        n += 1;
        ends.append(&stream, &[row], false, vec![id], &mut last)
            .await;
    }
}

/// Milliseconds since the Unix epoch (the plugins compare their clock with it).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Ends {
    /// Appends `rows` (whose ids are `ids`) to `stream` until they are known committed, and
    /// records them as acknowledged; `last` holds the client's last token per stream.
    async fn append(
        &self,
        stream: &str,
        rows: &[serde_json::Value],
        shared: bool,
        ids: Vec<String>,
        last: &mut HashMap<String, Token>,
    ) {
        let body = Bytes::from(serde_json::to_vec(rows).expect("JSON"));
        let after = last.get(stream).copied().unwrap_or(Token(1));
        let tokens = self.append_once(stream, body, shared, &ids, after).await;
        if let Some(&max) = tokens.iter().max() {
            last.insert(stream.to_owned(), max);
        }
        let mut history = self.history.lock().expect("history lock");
        for (id, token) in ids.into_iter().zip(tokens) {
            history.acked.insert(
                id,
                Ack {
                    stream: stream.to_owned(),
                    token,
                },
            );
        }
    }

    /// Appends `body` (rows `ids`, which go after `after`) until it is known committed;
    /// returns each row's token.
    async fn append_once(
        &self,
        stream: &str,
        body: Bytes,
        shared: bool,
        ids: &[String],
        after: Token,
    ) -> Vec<Token> {
        let history = &self.history;
        loop {
            match self.writer.append(stream, body.clone(), shared).await {
                Ok(tokens) => return tokens,
                Err(e) => {
                    tracing::debug!(error = %e, stream, "append failed; reading the log back");
                    history.lock().expect("history lock").ambiguous += 1;
                }
            }
            wait_for_writer(&self.writer).await;
            let found = read_back(&self.oracle, stream, after, ids).await;
            if found.iter().all(Option::is_some) {
                history.lock().expect("history lock").found_committed += 1;
                return found.into_iter().flatten().collect();
            }
            if found.iter().any(Option::is_some) {
                let mut history = history.lock().expect("history lock");
                history.partial.extend(ids.iter().cloned());
                return found.into_iter().map(|t| t.unwrap_or(Token(0))).collect();
            }
        }
    }
}

/// Waits until the writer answers `GET /v1/streams`.
async fn wait_for_writer(writer: &ApiClient) {
    while writer.get_json("/v1/streams").await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The token of each of `ids` in `stream` after `after`, reading the log itself (retrying
/// while its database is down).
async fn read_back(oracle: &Log, stream: &str, after: Token, ids: &[String]) -> Vec<Option<Token>> {
    let name = StreamName::new(stream).expect("a valid stream name");
    loop {
        match scan(oracle, &name, after, ids).await {
            Ok(found) => return found,
            Err(e) => {
                tracing::debug!(error = %e, stream, "reading the log back");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One pass of [`read_back`].
async fn scan(
    oracle: &Log,
    stream: &StreamName,
    mut from: Token,
    ids: &[String],
) -> anyhow::Result<Vec<Option<Token>>> {
    let mut found = vec![None; ids.len()];
    loop {
        let page = oracle
            .read_range(stream, from, Token(i64::MAX), 5_000)
            .await?;
        for (token, row) in &page.rows {
            if let Some(id) = row_id(row.as_str())
                && let Some(i) = ids.iter().position(|x| *x == id)
            {
                found[i] = Some(*token);
            }
        }
        if !page.limited {
            return Ok(found);
        }
        from = page.upto;
    }
}

/// The `id` of a row the clients wrote.
pub(super) fn row_id(row_json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(row_json).ok()?;
    Some(value.get("id")?.as_str()?.to_owned())
}

/// The client number and sequence number of a row the clients wrote.
pub(super) fn row_origin(row_json: &str) -> Option<(u64, u64)> {
    let value: serde_json::Value = serde_json::from_str(row_json).ok()?;
    Some((value.get("client")?.as_u64()?, value.get("n")?.as_u64()?))
}
