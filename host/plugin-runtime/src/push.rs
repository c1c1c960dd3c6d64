//! Pushes a plugin makes through the `push` import during `on-batch`: each checked against
//! the grant and kept with the call, then handed to the reader with the batch's effects
//! ([`crate::BatchEffects::pushes`]) to be written to its outbox with the cursor; and
//! [`Destination`], what the runtime knows of the operator's destinations.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One push: a body for a destination the operator declared, under the plugin's
/// de-duplication key (sent as `Idempotency-Key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The destination's name, as in `[reader.destinations.<name>]`.
    pub destination: String,
    /// The plugin's key for this intent: at most 1 KiB, never empty.
    pub key: String,
    /// The request body, sent as it is.
    pub body: Vec<u8>,
}

/// A destination the operator declared (`[reader.destinations.<name>]`), as plugins meet it:
/// the `push` import checks bodies against `max_body_bytes`, and outbound HTTP attaches
/// `headers` to granted requests whose URL starts with `url`.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// Where pushes go; the prefix under which granted requests get `headers`.
    pub url: String,
    /// Headers (names and secret values) the host adds; plugins never see them.
    pub headers: Vec<(String, String)>,
    /// Largest body a push may carry.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Destination")
            .field("url", &self.url)
            .field("headers", &names)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// Every declared destination, by name.
pub type Destinations = Arc<BTreeMap<String, Destination>>;
