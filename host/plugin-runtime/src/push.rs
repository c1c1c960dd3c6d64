//! Pushes a plugin makes through the `push` import during `on-batch`: each checked against
//! the grant and kept with the call, then handed to the reader with the batch's effects
//! ([`crate::BatchEffects::pushes`]) to be written to its outbox with the cursor; and
//! [`Destination`], what the runtime knows of the operator's destinations.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::budget::Charge;
use crate::grants::Capabilities;

/// Longest push key, in bytes.
pub const MAX_PUSH_KEY_BYTES: usize = 1024;

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

impl Push {
    /// Bytes the push counts against `max_effect_bytes`: destination, key and body.
    pub fn counted_bytes(&self) -> usize {
        counted_bytes(&self.destination, &self.key, self.body.len())
    }
}

fn counted_bytes(destination: &str, key: &str, body: usize) -> usize {
    destination.len() + key.len() + body
}

/// Host bytes a push holds until the reader has written it to its outbox: its bytes and its
/// entry.
pub(crate) fn held_bytes(destination: &str, key: &str, body: usize) -> usize {
    counted_bytes(destination, key, body) + std::mem::size_of::<Push>()
}

/// Why the `push` import refused a push (the WIT `push-error`, without wasmtime's types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushRefusal {
    /// Not granted, or not a declared destination.
    NotGranted,
    /// The body is over the destination's `max_body_bytes`.
    TooLarge,
    /// The key is empty or over [`MAX_PUSH_KEY_BYTES`].
    BadKey,
    /// The call already pushed as many, or as many bytes, as the effect limits allow.
    TooMany,
    /// Outside `on-batch`.
    NotInBatch,
}

/// The pushes of the current call of one instance: open only during `on-batch`, handed to the
/// batch's effects when it succeeds, dropped (with their charge) when it fails.
#[derive(Debug, Default)]
pub(crate) struct PushStage {
    open: bool,
    pushes: Vec<Push>,
    bytes: usize,
    charge: Charge,
}

impl PushStage {
    /// Opens the stage for an `on-batch` call, forgetting anything left from an earlier one.
    pub(crate) fn open(&mut self) {
        *self = PushStage {
            open: true,
            ..PushStage::default()
        };
    }

    /// Closes the stage: the call's pushes, in call order, and the host memory they hold.
    pub(crate) fn close(&mut self) -> (Vec<Push>, Charge) {
        let stage = std::mem::take(self);
        (stage.pushes, stage.charge)
    }

    /// Checks a push of a `body_len`-byte body before anything is copied from the guest.
    pub(crate) fn admit(
        &self,
        caps: &Capabilities,
        destinations: &Destinations,
        destination: &str,
        key: &str,
        body_len: usize,
    ) -> Result<(), PushRefusal> {
        if !self.open {
            return Err(PushRefusal::NotInBatch);
        }
        let Some(declared) = destinations.get(destination) else {
            return Err(PushRefusal::NotGranted);
        };
        if !caps.may_push(destination) {
            return Err(PushRefusal::NotGranted);
        }
        if key.is_empty() || key.len() > MAX_PUSH_KEY_BYTES {
            return Err(PushRefusal::BadKey);
        }
        if body_len > declared.max_body_bytes {
            return Err(PushRefusal::TooLarge);
        }
        let limits = &caps.limits;
        let bytes = self.bytes + counted_bytes(destination, key, body_len);
        if self.pushes.len() >= limits.max_effects || bytes > limits.max_effect_bytes {
            return Err(PushRefusal::TooMany);
        }
        Ok(())
    }

    /// Keeps an admitted push and the charge of its bytes.
    pub(crate) fn keep(&mut self, push: Push, charge: Charge) {
        self.bytes += push.counted_bytes();
        self.pushes.push(push);
        self.charge.absorb(charge);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::HostBudget;
    use crate::limits::Limits;

    fn caps(push: &[&str], max_effects: usize, max_effect_bytes: usize) -> Capabilities {
        Capabilities {
            streams: vec!["*".into()],
            caches: vec![],
            topics: vec![],
            kv: false,
            read_rows: vec![],
            directory: None,
            push: push.iter().map(|s| s.to_string()).collect(),
            http: vec![],
            limits: Limits {
                max_effects,
                max_effect_bytes,
                ..Limits::default()
            },
            config_json: "{}".into(),
        }
    }

    fn destinations() -> Destinations {
        let declared = |max_body_bytes| Destination {
            url: "https://example.org/hook".into(),
            headers: vec![("Authorization".into(), "Bearer secret".into())],
            max_body_bytes,
        };
        Arc::new(BTreeMap::from([
            ("hook".to_string(), declared(10)),
            ("other".to_string(), declared(10)),
        ]))
    }

    fn push(key: &str, body: &[u8]) -> Push {
        Push {
            destination: "hook".into(),
            key: key.into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn pushes_are_refused_outside_on_batch() {
        let stage = PushStage::default();
        let refusal = stage.admit(&caps(&["hook"], 10, 100), &destinations(), "hook", "k", 1);
        assert_eq!(refusal, Err(PushRefusal::NotInBatch));
    }

    #[test]
    fn only_granted_and_declared_destinations_are_admitted() {
        let mut stage = PushStage::default();
        stage.open();
        let caps = caps(&["hook", "undeclared"], 10, 100);
        let dests = destinations();
        assert_eq!(stage.admit(&caps, &dests, "hook", "k", 1), Ok(()));
        for destination in ["other", "undeclared", ""] {
            assert_eq!(
                stage.admit(&caps, &dests, destination, "k", 1),
                Err(PushRefusal::NotGranted),
                "{destination}"
            );
        }
        let all = super::tests::caps(&["*"], 10, 100);
        assert_eq!(stage.admit(&all, &dests, "other", "k", 1), Ok(()));
    }

    #[test]
    fn keys_and_bodies_are_bounded() {
        let mut stage = PushStage::default();
        stage.open();
        let caps = caps(&["hook"], 10, 1 << 20);
        let dests = destinations();
        let admit = |key: &str, body| stage.admit(&caps, &dests, "hook", key, body);
        assert_eq!(admit("", 1), Err(PushRefusal::BadKey));
        assert_eq!(admit(&"k".repeat(MAX_PUSH_KEY_BYTES), 10), Ok(()));
        assert_eq!(
            admit(&"k".repeat(MAX_PUSH_KEY_BYTES + 1), 1),
            Err(PushRefusal::BadKey)
        );
        assert_eq!(admit("k", 11), Err(PushRefusal::TooLarge));
    }

    #[test]
    fn the_effect_limits_count_pushes_and_their_bytes() {
        let budget = Arc::new(HostBudget::default());
        let dests = destinations();
        let mut stage = PushStage::default();
        stage.open();
        let two = caps(&["hook"], 2, 1 << 20);
        for key in ["a", "b"] {
            stage.admit(&two, &dests, "hook", key, 3).unwrap();
            stage.keep(push(key, b"abc"), budget.charge(held_bytes("hook", key, 3)));
        }
        assert_eq!(
            stage.admit(&two, &dests, "hook", "c", 0),
            Err(PushRefusal::TooMany)
        );
        // 2 pushes of 4 + 1 + 3 bytes: 16 counted; a third of 5 fits 21, not 20.
        let bytes = |max| caps(&["hook"], 10, max);
        assert_eq!(stage.admit(&bytes(21), &dests, "hook", "c", 0), Ok(()));
        assert_eq!(
            stage.admit(&bytes(20), &dests, "hook", "c", 0),
            Err(PushRefusal::TooMany)
        );
        let (pushes, charge) = stage.close();
        assert_eq!(pushes, vec![push("a", b"abc"), push("b", b"abc")]);
        assert_eq!(budget.held(), charge.bytes());
        assert_eq!(charge.bytes(), 2 * held_bytes("hook", "a", 3));
        drop(charge);
        assert_eq!(budget.held(), 0);
        assert_eq!(
            stage.admit(&two, &dests, "hook", "a", 0),
            Err(PushRefusal::NotInBatch),
            "closing the stage ends the batch"
        );
    }

    #[test]
    fn opening_the_stage_drops_what_a_failed_call_left() {
        let budget = Arc::new(HostBudget::default());
        let mut stage = PushStage::default();
        stage.open();
        stage.keep(push("a", b"x"), budget.charge(100));
        stage.open();
        assert_eq!(budget.held(), 0);
        let (pushes, charge) = stage.close();
        assert!(pushes.is_empty());
        assert_eq!(charge.bytes(), 0);
    }
}
