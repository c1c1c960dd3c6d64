//! The writer's declared streams and each one's in-memory tail, fixed at startup.

use std::collections::HashMap;
use std::sync::Arc;

use streamhost_proto::{StreamName, Token};

use super::recent::{RecentRows, TailBounds};

/// The declared streams, in a stable order, each with its recent rows and position.
#[derive(Debug)]
pub struct StreamSet {
    order: Vec<StreamName>,
    by_name: HashMap<StreamName, Arc<RecentRows>>,
}

impl StreamSet {
    /// Builds the set from each stream's committed position.
    pub fn new(positions: Vec<(StreamName, Token)>, tail: TailBounds) -> StreamSet {
        let order = positions.iter().map(|(name, _)| name.clone()).collect();
        let by_name = positions
            .into_iter()
            .map(|(name, position)| (name, Arc::new(RecentRows::new(position, tail))))
            .collect();
        StreamSet { order, by_name }
    }

    /// The stream's tail, if the stream is declared.
    pub fn get(&self, stream: &StreamName) -> Option<&Arc<RecentRows>> {
        self.by_name.get(stream)
    }

    /// Looks a stream up by its wire name.
    pub fn find(&self, name: &str) -> Option<(&StreamName, &Arc<RecentRows>)> {
        self.by_name.get_key_value(&StreamName::new(name).ok()?)
    }

    /// Streams with their tails, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&StreamName, &Arc<RecentRows>)> {
        self.order.iter().map(|name| (name, &self.by_name[name]))
    }
}
