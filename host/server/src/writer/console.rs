//! The writer as its console shows it (`crate::console`): `{"role": "writer", "name",
//! "server_name", "at_ms", "streams": [{"name", "position"}], "readers": [`PeerView`]}`; the
//! readers are the open replication connections, named by their `NAME`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::fanout::peers::Peers;
use super::streams::StreamSet;
use crate::clock::unix_ms;
use crate::console::Source;

/// The writer as its console shows it.
pub struct WriterSource {
    pub(crate) name: String,
    pub(crate) server_name: String,
    pub(crate) streams: Arc<StreamSet>,
    pub(crate) peers: Arc<Peers>,
}

impl Source for WriterSource {
    fn snapshot(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .iter()
            .map(|(name, recent)| json!({"name": name.as_str(), "position": recent.position().0}))
            .collect();
        json!({
            "role": "writer",
            "name": self.name,
            "server_name": self.server_name,
            "at_ms": unix_ms(),
            "streams": streams,
            "readers": self.peers.list(),
        })
    }
}
