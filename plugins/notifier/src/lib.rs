//! `notifier`: wakes the clients of a room and of every mentioned user for each message.
//!
//! For each `messages` row `{"room": R, "mentions": [U, …], …}` it notifies `room:R` and then
//! `user:U` for each mention, each with the row's JSON text as the payload. It asks the host for
//! the fields `room` and `mentions` (`Plugin::FIELDS`) instead of parsing rows. Rows without a
//! string `room` (including rows that are not JSON objects), or with a `mentions` that is not
//! an array of strings, are ignored. It uses no key-value store; instead
//! it keeps an in-memory count of the notifications it sent, carried across reloads by
//! `snapshot` and `restore` (8 bytes, little-endian), and answers `GET /v1/query/notifier/sent`
//! with it. The Python and JavaScript versions (`plugins/python/notifier`,
//! `plugins/javascript/notifier`) do exactly the same, checked by the conformance suite.

use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, FieldValue, Plugin, PluginError, RowFields, export_plugin,
};

/// The plugin: a count of notifications sent by this instance and its snapshotted
/// predecessors.
struct Notifier {
    sent: u64,
}

/// The room and mentioned users of a message row, or `None` for a row this plugin ignores.
fn recipients<'a>(fields: &RowFields<'a>) -> Option<(&'a str, Vec<String>)> {
    let room = fields.text("room")?;
    let mentions = match fields.get("mentions") {
        FieldValue::Absent => Vec::new(),
        FieldValue::Json(users) => serde_json::from_str::<Vec<String>>(users).ok()?,
        _ => return None,
    };
    Some((room, mentions))
}

impl Plugin for Notifier {
    const FIELDS: &'static [&'static str] = &["room", "mentions"];

    fn describe() -> Description {
        Description::new("notifier", env!("CARGO_PKG_VERSION"))
            .stream("messages")
            .query("sent", "sent", "all")
            .snapshots(true)
    }

    fn init(_config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        Ok(Notifier { sent: 0 })
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        let mut effects = Vec::new();
        for (row, fields) in batch.rows_with_fields() {
            let Some((room, mentions)) = recipients(&fields) else {
                continue;
            };
            effects.push(Effect::notify(format!("room:{room}"), row.data));
            for user in mentions {
                effects.push(Effect::notify(format!("user:{user}"), row.data));
            }
        }
        if !effects.is_empty() {
            self.sent += effects.len() as u64;
            // The answer of `sent` changed.
            effects.push(Effect::invalidate("sent", "all"));
        }
        Ok(effects)
    }

    fn query(&mut self, name: &str, _args: &[(String, String)]) -> Result<String, PluginError> {
        match name {
            "sent" => Ok(self.sent.to_string()),
            _ => Err(PluginError::fatal(format!("unknown query `{name}`"))),
        }
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(self.sent.to_le_bytes().to_vec())
    }

    fn restore(_config: &str, state: &[u8], _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| {
            PluginError::fatal(format!(
                "snapshot has {} bytes, expected 8 (a u64 count)",
                state.len()
            ))
        })?;
        Ok(Notifier {
            sent: u64::from_le_bytes(bytes),
        })
    }
}

export_plugin!(Notifier);
