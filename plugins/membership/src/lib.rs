//! `membership`: room membership changes of a followed Synapse, as notifications.
//!
//! For each `events` row of kind `ev` with type `m.room.member` and a membership (the row
//! objects a reader following Synapse hands to plugins, `docs/synapse.md`) that was not
//! rejected, it notifies `membership:<room_id>` with
//! `{"room_id","user_id","membership","event_id","token"}` (`user_id` is the event's
//! `state_key`: whose membership changed). Every other row is ignored. It keeps no state.

use serde::{Deserialize, Serialize};
use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, export_plugin,
};

/// The fields of an `events` row this plugin reads.
#[derive(Deserialize)]
struct EventRow {
    kind: String,
    #[serde(default)]
    event_id: Option<String>,
    room_id: String,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    state_key: Option<String>,
    #[serde(default)]
    membership: Option<String>,
    #[serde(default)]
    rejected: bool,
}

/// The payload of one notification.
#[derive(Serialize)]
struct Change<'a> {
    room_id: &'a str,
    user_id: &'a str,
    membership: &'a str,
    event_id: &'a str,
    token: i64,
}

/// The plugin (stateless).
struct Membership;

impl Plugin for Membership {
    fn describe() -> Description {
        Description::new("membership", env!("CARGO_PKG_VERSION")).stream("events")
    }

    fn init(_config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        Ok(Membership)
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        let mut effects = Vec::new();
        for row in batch.rows() {
            // A struct also deserializes from a JSON array: insist on an object.
            if !row.data.trim_start().starts_with('{') {
                continue;
            }
            let Ok(event) = serde_json::from_str::<EventRow>(row.data) else {
                continue;
            };
            let (Some(event_id), Some(user_id), Some(membership)) =
                (&event.event_id, &event.state_key, &event.membership)
            else {
                continue;
            };
            if event.kind != "ev"
                || event.event_type.as_deref() != Some("m.room.member")
                || event.rejected
            {
                continue;
            }
            let change = Change {
                room_id: &event.room_id,
                user_id,
                membership,
                event_id,
                token: row.token,
            };
            let payload = serde_json::to_string(&change)
                .map_err(|e| PluginError::fatal(format!("encoding a notification: {e}")))?;
            effects.push(Effect::notify(
                format!("membership:{}", event.room_id),
                payload,
            ));
        }
        Ok(effects)
    }
}

export_plugin!(Membership);
