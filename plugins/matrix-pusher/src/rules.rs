//! The default push rules this plugin evaluates, as pure functions (no host calls).
//!
//! The subset of the Matrix default rules (client-server API, "Default rules") that decides
//! the notifications of ordinary chat, in the order Synapse evaluates them; the first rule
//! that matches decides:
//!
//! | rule | when | actions |
//! |---|---|---|
//! | `.m.rule.suppress_notices` | `content.msgtype == "m.notice"` | none |
//! | `.m.rule.invite_for_me` | an `m.room.member` invite whose `state_key` is the user | notify, sound |
//! | `.m.rule.member_event` | any other `m.room.member` | none |
//! | `.m.rule.is_user_mention` | `content["m.mentions"].user_ids` holds the user | notify, sound, highlight |
//! | `.m.rule.contains_display_name` | `content.body` holds the user's room display name as a word | notify, sound, highlight |
//! | `.m.rule.reaction` | `m.reaction` | none |
//! | `.m.rule.suppress_edits` | `content["m.relates_to"].rel_type == "m.replace"` | none |
//! | `.m.rule.contains_user_name` | `content.body` holds the user's localpart as a word | notify, sound, highlight |
//! | `.m.rule.room_one_to_one` | `m.room.message` in a room of two joined members | notify, sound |
//! | `.m.rule.message` (only with `"messages": true`) | any other `m.room.message` | notify |
//!
//! As in Synapse, the legacy mention rules (`contains_display_name`, `contains_user_name`) are
//! skipped when the event has an `m.mentions` property (intentional mentions, MSC3952), the
//! sender is never notified of their own event, and only joined users (plus the invitee of an
//! invite) are candidates. Not evaluated: `@room` mentions (they need power levels), calls,
//! tombstones, encrypted rooms, per-user rule changes.

use serde_json::Value;

/// A rule that matched and asks to notify, with the tweaks of its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule's id, e.g. `.m.rule.invite_for_me`.
    pub rule: &'static str,
    /// `set_tweak` `sound` (`"default"` for every rule here that sets one).
    pub sound: bool,
    /// `set_tweak` `highlight` (the mention rules).
    pub highlight: bool,
}

/// What the rules need to know about the room when the event arrived.
#[derive(Debug, Clone, Default)]
pub struct RoomFacts {
    /// Joined members: (user id, room display name if set).
    pub joined: Vec<(String, Option<String>)>,
}

impl RoomFacts {
    /// The user's display name in the room, if joined and set.
    pub fn display_name(&self, user: &str) -> Option<&str> {
        self.joined
            .iter()
            .find(|(u, _)| u == user)
            .and_then(|(_, name)| name.as_deref())
    }

    /// Whether the user is joined.
    pub fn is_joined(&self, user: &str) -> bool {
        self.joined.iter().any(|(u, _)| u == user)
    }
}

/// The candidates for an event: joined members, plus the invitee of an invite; never the sender.
pub fn candidates(event: &Value, room: &RoomFacts) -> Vec<String> {
    let sender = str_at(event, &["sender"]);
    let mut users: Vec<String> = room.joined.iter().map(|(u, _)| u.clone()).collect();
    if let Some(invitee) = invitee(event)
        && !users.iter().any(|u| u == invitee)
    {
        users.push(invitee.to_string());
    }
    users.retain(|u| Some(u.as_str()) != sender);
    users
}

/// The `state_key` of an `m.room.member` event whose membership is `invite`.
fn invitee(event: &Value) -> Option<&str> {
    if str_at(event, &["type"]) == Some("m.room.member")
        && str_at(event, &["content", "membership"]) == Some("invite")
    {
        str_at(event, &["state_key"])
    } else {
        None
    }
}

/// Evaluates the rules for one user: `Some` when the event notifies them.
///
/// `messages` turns on `.m.rule.message` (every other `m.room.message` notifies).
pub fn evaluate(event: &Value, user: &str, room: &RoomFacts, messages: bool) -> Option<Decision> {
    let kind = str_at(event, &["type"]).unwrap_or("");
    let body = str_at(event, &["content", "body"]);
    let has_mentions = event
        .get("content")
        .and_then(|c| c.get("m.mentions"))
        .is_some();
    let notify = |rule, sound, highlight| {
        Some(Decision {
            rule,
            sound,
            highlight,
        })
    };
    // Override rules.
    if str_at(event, &["content", "msgtype"]) == Some("m.notice") {
        return None; // .m.rule.suppress_notices
    }
    if kind == "m.room.member" {
        if invitee(event) == Some(user) {
            return notify(".m.rule.invite_for_me", true, false);
        }
        return None; // .m.rule.member_event
    }
    let mentioned = event
        .get("content")
        .and_then(|c| c.get("m.mentions"))
        .and_then(|m| m.get("user_ids"))
        .and_then(Value::as_array)
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(user)));
    if mentioned {
        return notify(".m.rule.is_user_mention", true, true);
    }
    if !has_mentions
        && let (Some(body), Some(name)) = (body, room.display_name(user))
        && contains_word(body, name)
    {
        return notify(".m.rule.contains_display_name", true, true);
    }
    if kind == "m.reaction" {
        return None; // .m.rule.reaction
    }
    if str_at(event, &["content", "m.relates_to", "rel_type"]) == Some("m.replace") {
        return None; // .m.rule.suppress_edits
    }
    // Content rules.
    if !has_mentions
        && let Some(body) = body
        && contains_word(body, localpart(user))
    {
        return notify(".m.rule.contains_user_name", true, true);
    }
    // Underride rules.
    if kind == "m.room.message" {
        if room.joined.len() == 2 {
            return notify(".m.rule.room_one_to_one", true, false);
        }
        if messages {
            return notify(".m.rule.message", false, false);
        }
    }
    None
}

/// The localpart of a user id (`@bob:example.org` -> `bob`).
pub fn localpart(user: &str) -> &str {
    let rest = user.strip_prefix('@').unwrap_or(user);
    rest.split_once(':').map_or(rest, |(local, _)| local)
}

/// Whether `needle` occurs in `haystack` as a whole word, case-insensitively: Synapse's word
/// glob match, `(^|\W)needle(\W|$)`, for a needle without glob characters.
pub fn contains_word(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let hay: Vec<char> = haystack.chars().flat_map(char::to_lowercase).collect();
    let pat: Vec<char> = needle.chars().flat_map(char::to_lowercase).collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    if pat.len() > hay.len() {
        return false;
    }
    (0..=hay.len() - pat.len()).any(|start| {
        hay[start..start + pat.len()] == pat[..]
            && (start == 0 || !is_word(hay[start - 1]))
            && hay.get(start + pat.len()).is_none_or(|&c| !is_word(c))
    })
}

/// The string at a path of object keys, if there is one.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn room(members: &[(&str, Option<&str>)]) -> RoomFacts {
        RoomFacts {
            joined: members
                .iter()
                .map(|(u, n)| (u.to_string(), n.map(str::to_string)))
                .collect(),
        }
    }

    fn message(sender: &str, body: &str) -> Value {
        json!({"type": "m.room.message", "sender": sender,
               "content": {"msgtype": "m.text", "body": body}})
    }

    fn three() -> RoomFacts {
        room(&[
            ("@alice:x", Some("Alice")),
            ("@bob:x", Some("Bobby Tables")),
            ("@carol:x", None),
        ])
    }

    #[test]
    fn mention_by_user_id_in_m_mentions_highlights() {
        let mut event = message("@alice:x", "hey you");
        event["content"]["m.mentions"] = json!({"user_ids": ["@bob:x"]});
        let d = evaluate(&event, "@bob:x", &three(), false).expect("notifies");
        assert_eq!(d.rule, ".m.rule.is_user_mention");
        assert!(d.highlight && d.sound);
        assert_eq!(evaluate(&event, "@carol:x", &three(), false), None);
    }

    #[test]
    fn mention_by_display_name_as_a_word_case_insensitively() {
        let event = message("@alice:x", "ping bobby tables, please");
        let d = evaluate(&event, "@bob:x", &three(), false).expect("notifies");
        assert_eq!(d.rule, ".m.rule.contains_display_name");
        // Not inside a longer word.
        let event = message("@alice:x", "xBobby Tablesx");
        assert_eq!(evaluate(&event, "@bob:x", &three(), false), None);
    }

    #[test]
    fn mention_by_full_user_id_in_body_matches_the_localpart() {
        let event = message("@alice:x", "@carol:x look");
        let d = evaluate(&event, "@carol:x", &three(), false).expect("notifies");
        assert_eq!(d.rule, ".m.rule.contains_user_name");
        assert!(d.highlight);
    }

    #[test]
    fn legacy_mentions_are_off_when_the_event_has_m_mentions() {
        let mut event = message("@alice:x", "Bobby Tables and carol");
        event["content"]["m.mentions"] = json!({});
        assert_eq!(evaluate(&event, "@bob:x", &three(), false), None);
        assert_eq!(evaluate(&event, "@carol:x", &three(), false), None);
    }

    #[test]
    fn one_to_one_room_notifies_without_highlight() {
        let two = room(&[("@alice:x", None), ("@bob:x", None)]);
        let d = evaluate(&message("@alice:x", "hi"), "@bob:x", &two, false).expect("notifies");
        assert_eq!(d.rule, ".m.rule.room_one_to_one");
        assert!(d.sound && !d.highlight);
        // Three members: no rule here notifies a plain message, unless `messages`.
        assert_eq!(
            evaluate(&message("@alice:x", "hi"), "@bob:x", &three(), false),
            None
        );
        let d = evaluate(&message("@alice:x", "hi"), "@bob:x", &three(), true).expect("msg");
        assert_eq!(d.rule, ".m.rule.message");
        assert!(!d.sound && !d.highlight);
    }

    #[test]
    fn invite_for_me_and_other_member_events() {
        let invite = json!({"type": "m.room.member", "sender": "@alice:x",
                            "state_key": "@dan:x", "content": {"membership": "invite"}});
        let d = evaluate(&invite, "@dan:x", &three(), false).expect("notifies");
        assert_eq!(d.rule, ".m.rule.invite_for_me");
        assert_eq!(evaluate(&invite, "@bob:x", &three(), false), None);
        assert_eq!(
            candidates(&invite, &three()),
            ["@bob:x", "@carol:x", "@dan:x"]
        );
        let join = json!({"type": "m.room.member", "sender": "@dan:x",
                          "state_key": "@dan:x", "content": {"membership": "join"}});
        assert_eq!(evaluate(&join, "@bob:x", &three(), false), None);
    }

    #[test]
    fn notices_edits_and_reactions_do_not_notify() {
        let two = room(&[("@alice:x", None), ("@bob:x", None)]);
        let mut notice = message("@alice:x", "bob");
        notice["content"]["msgtype"] = json!("m.notice");
        assert_eq!(evaluate(&notice, "@bob:x", &two, true), None);
        let mut edit = message("@alice:x", "* hi");
        edit["content"]["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": "$e"});
        assert_eq!(evaluate(&edit, "@bob:x", &two, true), None);
        let reaction = json!({"type": "m.reaction", "sender": "@alice:x",
                              "content": {"m.relates_to": {"rel_type": "m.annotation", "key": "+1"}}});
        assert_eq!(evaluate(&reaction, "@bob:x", &two, true), None);
    }

    #[test]
    fn the_sender_is_never_a_candidate() {
        assert_eq!(
            candidates(&message("@alice:x", "hi"), &three()),
            ["@bob:x", "@carol:x"]
        );
    }

    #[test]
    fn words_and_localparts() {
        assert!(contains_word("hello bob!", "bob"));
        assert!(contains_word("BOB", "bob"));
        assert!(!contains_word("bobcat", "bob"));
        assert!(!contains_word("a_bob", "bob"));
        assert!(contains_word("über Ünal", "ünal"));
        assert!(!contains_word("anything", ""));
        assert_eq!(localpart("@bob:example.org"), "bob");
        assert_eq!(localpart("bob"), "bob");
    }
}
