//! Fetching an event and its room from Synapse, behind the [`Http`] trait so the logic is pure.
//!
//! Two APIs, chosen by the configuration's `api`:
//! * `admin` (default): `GET /_synapse/admin/v1/rooms/{room}/context/{event}?limit=0`, one
//!   request answering the event and the room's state at it (members, display names, name).
//!   The token (a server admin's) is attached by the host from the destination's headers.
//! * `client`: `GET /_matrix/client/v3/rooms/{room}/event/{event}`,
//!   `GET .../rooms/{room}/joined_members` and `GET .../rooms/{room}/state/m.room.name/`; the
//!   token's user must be joined to every room it pushes for.

use serde_json::Value;

use crate::notify::RoomContext;
use crate::rules::{RoomFacts, str_at};

/// A synchronous HTTP GET, answered with (status, body). The plugin implements it over the
/// host's outbound HTTP; tests answer from a table.
pub trait Http {
    /// Sends `GET url`; `Err` is a transport failure (refused, timed out, not granted).
    fn get(&mut self, url: &str) -> Result<(u16, Vec<u8>), String>;
}

/// Why an event could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Synapse does not show it (404, 403): the event is skipped.
    Missing(String),
    /// A transport failure or a 5xx/429: the batch is retried.
    Retry(String),
    /// An answer that does not parse, or a 401: a configuration problem.
    Fatal(String),
}

/// An event with the room facts the rules and the notification need.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The event, in the client format.
    pub event: Value,
    /// Joined members and their display names.
    pub room: RoomFacts,
    /// The sender's display name from their member event (whatever its membership).
    pub sender_display_name: Option<String>,
    /// The room's name.
    pub name: Option<String>,
}

impl Fetched {
    /// The notification's room context: the sender's display name and the room's name.
    pub fn context(&self) -> RoomContext {
        RoomContext {
            sender_display_name: self.sender_display_name.clone(),
            room_name: self.name.clone(),
        }
    }
}

/// Which Synapse API to read events through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// The admin API (a server admin's token).
    #[default]
    Admin,
    /// The client-server API (a joined user's token).
    Client,
}

/// Fetches an event and its room through `api`.
pub fn fetch(
    http: &mut dyn Http,
    api: Api,
    base: &str,
    room: &str,
    event_id: &str,
) -> Result<Fetched, FetchError> {
    let base = base.trim_end_matches('/');
    let (r, e) = (encode(room), encode(event_id));
    match api {
        Api::Admin => {
            let url = format!("{base}/_synapse/admin/v1/rooms/{r}/context/{e}?limit=0");
            let answer = get_json(http, &url)?;
            let event = answer
                .get("event")
                .cloned()
                .ok_or_else(|| FetchError::Fatal(format!("{url}: no `event` in the answer")))?;
            let state = answer
                .get("state")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Ok(from_state(event, &state))
        }
        Api::Client => {
            let url = format!("{base}/_matrix/client/v3/rooms/{r}/event/{e}");
            let event = get_json(http, &url)?;
            let url = format!("{base}/_matrix/client/v3/rooms/{r}/joined_members");
            let members = get_json(http, &url)?;
            let mut joined: Vec<(String, Option<String>)> = members
                .get("joined")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(u, p)| (u.clone(), str_at(p, &["display_name"]).map(String::from)))
                        .collect()
                })
                .unwrap_or_default();
            joined.sort();
            let url = format!("{base}/_matrix/client/v3/rooms/{r}/state/m.room.name/");
            let name = match get_json(http, &url) {
                Ok(v) => str_at(&v, &["name"]).map(String::from),
                Err(FetchError::Missing(_)) => None,
                Err(e) => return Err(e),
            };
            let sender = str_at(&event, &["sender"]).unwrap_or("");
            let sender_display_name = joined
                .iter()
                .find(|(u, _)| u == sender)
                .and_then(|(_, n)| n.clone());
            Ok(Fetched {
                event,
                room: RoomFacts { joined },
                sender_display_name,
                name,
            })
        }
    }
}

/// Reads the room facts from a list of state events.
pub fn from_state(event: Value, state: &[Value]) -> Fetched {
    let sender = str_at(&event, &["sender"]).unwrap_or("").to_string();
    let mut joined = Vec::new();
    let mut sender_display_name = None;
    let mut name = None;
    for ev in state {
        match str_at(ev, &["type"]) {
            Some("m.room.member") => {
                let Some(user) = str_at(ev, &["state_key"]) else {
                    continue;
                };
                let display = str_at(ev, &["content", "displayname"]).map(String::from);
                if user == sender {
                    sender_display_name = display.clone();
                }
                if str_at(ev, &["content", "membership"]) == Some("join") {
                    joined.push((user.to_string(), display));
                }
            }
            Some("m.room.name") if str_at(ev, &["state_key"]) == Some("") => {
                name = str_at(ev, &["content", "name"])
                    .filter(|n| !n.is_empty())
                    .map(String::from);
            }
            _ => {}
        }
    }
    joined.sort();
    Fetched {
        event,
        room: RoomFacts { joined },
        sender_display_name,
        name,
    }
}

/// GETs a JSON object, sorting failures into [`FetchError`]s.
fn get_json(http: &mut dyn Http, url: &str) -> Result<Value, FetchError> {
    let (status, body) = http
        .get(url)
        .map_err(|e| FetchError::Retry(format!("{url}: {e}")))?;
    let text = String::from_utf8_lossy(&body);
    match status {
        200..=299 => serde_json::from_slice(&body)
            .map_err(|e| FetchError::Fatal(format!("{url}: answer is not JSON: {e}"))),
        403 | 404 => Err(FetchError::Missing(format!("{url}: {status} {text}"))),
        429 | 500..=599 => Err(FetchError::Retry(format!("{url}: {status} {text}"))),
        _ => Err(FetchError::Fatal(format!("{url}: {status} {text}"))),
    }
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
