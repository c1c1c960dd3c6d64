//! Checking a batch's effects against the plugin's grant and effect limits before any is
//! applied: one bad effect fails the whole batch. A batch's pushes (checked one by one by the
//! `push` import) count against the same limits as its effects.

use crate::bindings::types::{Effect, Invalidation, Notification};
use crate::error::{Failure, FailureReason};
use crate::grants::Capabilities;
use crate::limits::LimitHit;
use crate::push::Push;

/// Bytes an effect counts against `max_effect_bytes` (its strings).
fn effect_bytes(effect: &Effect) -> usize {
    match effect {
        Effect::Invalidate(Invalidation { cache, key }) => cache.len() + key.len(),
        Effect::InvalidateAll(cache) => cache.len(),
        Effect::Notify(Notification { topic, payload }) => topic.len() + payload.len(),
    }
}

/// Host bytes a batch's effects hold until they are applied: their strings and their entries.
pub fn held_bytes(effects: &[Effect]) -> usize {
    effects.iter().map(effect_bytes).sum::<usize>() + std::mem::size_of_val(effects)
}

/// Fails when `effects` and `pushes` together are too many or too large, or an effect is
/// outside `caps`.
pub fn validate(effects: &[Effect], pushes: &[Push], caps: &Capabilities) -> Result<(), Failure> {
    let limits = &caps.limits;
    let pushed = match pushes.len() {
        0 => String::new(),
        n => format!(" (with {n} pushes)"),
    };
    let count = effects.len() + pushes.len();
    if count > limits.max_effects {
        return Err(Failure::new(
            FailureReason::Limit(LimitHit::Effects),
            format!(
                "{count} effects returned{pushed}; the limit is {}",
                limits.max_effects
            ),
        ));
    }
    let bytes: usize = effects.iter().map(effect_bytes).sum::<usize>()
        + pushes.iter().map(Push::counted_bytes).sum::<usize>();
    if bytes > limits.max_effect_bytes {
        return Err(Failure::new(
            FailureReason::Limit(LimitHit::Effects),
            format!(
                "{bytes} bytes of effects returned{pushed}; the limit is {}",
                limits.max_effect_bytes
            ),
        ));
    }
    for effect in effects {
        let outside = match effect {
            Effect::Invalidate(Invalidation { cache, .. }) | Effect::InvalidateAll(cache) => {
                (!caps.may_invalidate(cache)).then(|| format!("cache {cache}"))
            }
            Effect::Notify(Notification { topic, .. }) => {
                (!caps.may_notify(topic)).then(|| format!("topic {topic}"))
            }
        };
        if let Some(what) = outside {
            return Err(Failure::new(
                FailureReason::OutsideGrant,
                format!("effect on {what}, which is not granted"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn caps() -> Capabilities {
        Capabilities {
            streams: vec!["messages".into()],
            caches: vec!["timeline".into()],
            topics: vec!["room:*".into()],
            kv: false,
            read_rows: vec![],
            directory: None,
            push: vec![],
            http: vec![],
            limits: Limits {
                max_effects: 3,
                max_effect_bytes: 40,
                ..Limits::default()
            },
            config_json: "{}".into(),
        }
    }

    fn notify(topic: &str, payload: &str) -> Effect {
        Effect::Notify(Notification {
            topic: topic.into(),
            payload: payload.into(),
        })
    }

    #[test]
    fn granted_effects_within_limits_pass() {
        let effects = [
            notify("room:!a", "{}"),
            Effect::InvalidateAll("timeline".into()),
        ];
        validate(&effects, &[], &caps()).unwrap();
    }

    #[test]
    fn an_effect_outside_the_grant_fails_the_batch() {
        let failure = validate(&[notify("user:@a", "{}")], &[], &caps()).unwrap_err();
        assert_eq!(failure.reason, FailureReason::OutsideGrant);
        assert!(failure.message.contains("topic user:@a"));
        let failure = validate(
            &[Effect::Invalidate(Invalidation {
                cache: "x".into(),
                key: "k".into(),
            })],
            &[],
            &caps(),
        )
        .unwrap_err();
        assert!(failure.message.contains("cache x"));
    }

    #[test]
    fn too_many_or_too_large_effects_hit_the_effects_limit() {
        let many = vec![notify("room:!a", ""); 4];
        let failure = validate(&many, &[], &caps()).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Limit(LimitHit::Effects));
        let large = [notify("room:!a", &"x".repeat(40))];
        let failure = validate(&large, &[], &caps()).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Limit(LimitHit::Effects));
    }

    #[test]
    fn pushes_count_against_the_effect_limits_with_the_effects() {
        let push = |body: &str| Push {
            destination: "hook".into(),
            key: "k".into(),
            body: body.as_bytes().to_vec(),
        };
        let two = [notify("room:!a", ""), notify("room:!a", "")];
        validate(&two, &[push("")], &caps()).unwrap();
        let failure = validate(&two, &[push(""), push("")], &caps()).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Limit(LimitHit::Effects));
        assert!(
            failure.message.contains("with 2 pushes"),
            "{}",
            failure.message
        );
        // 7 + 7 bytes of notifications and 4 + 1 + 21 of push: 40 fits, 41 does not.
        validate(&two, &[push(&"x".repeat(21))], &caps()).unwrap();
        let failure = validate(&two, &[push(&"x".repeat(22))], &caps()).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Limit(LimitHit::Effects));
    }
}
