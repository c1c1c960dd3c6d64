//! [`Authorizer`]: the plugin named by `[reader.auth] authorizer`, asked through its
//! `authorizer` export (WIT 0.2.0) whether a token's subject may run a query or receive a
//! topic, after the token's scope allowed it (`reader::auth` asks it as an [`Authorize`]).
//!
//! - Each call goes to the plugin's worker, answered between batches on its instance, under
//!   `authorizer_timeout_ms` from the moment it is asked (time queued behind batches counts).
//!   An error, a trap, a timeout, a missing or stopped plugin: denied (fail closed), logged
//!   and counted in `reader_authorizer_failures_total{reason}`.
//! - Answers are cached for `authorizer_cache_ms` per (subject, question), but only while the
//!   plugin has applied nothing since: every applied batch moves its cursors, which drops the
//!   whole cache.
//! - A notification is checked only once the plugin has applied the row that produced it
//!   (its cursor on the notification's stream has reached the row's token; the reader
//!   commits in one order, so every earlier row of every stream is applied too), waiting at
//!   most `authorizer_wait_ms`. So a user who leaves a room stops receiving it from the next
//!   row on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use streamhost_plugin_runtime::{Access, QueryAccess};
use streamhost_proto::Token;
use tokio::sync::oneshot;

use super::PluginHost;
use super::slot::{AuthorizeCall, PluginRunState};
use crate::config::AuthConfig;
use crate::metrics::{CounterVec, Registry};
use crate::reader::auth::Authorize;

/// Most questions waiting for the authorizer's worker at once; more are denied at once.
const MAX_PENDING: usize = 1024;

/// Cached answers kept at most (the cache is emptied when full).
const MAX_CACHED: usize = 100_000;

/// A cached verdict: the answer, until when, and the plugin's cursor generation it holds for.
type Cached = (bool, Instant, u64);

/// The authorizer plugin, its deadlines and its cache.
pub(crate) struct Authorizer {
    plugin: String,
    host: OnceLock<Weak<PluginHost>>,
    timeout: Duration,
    ttl: Duration,
    wait: Duration,
    cache: Mutex<HashMap<(String, String), Cached>>,
    pending: AtomicUsize,
    failures: CounterVec,
    asked: CounterVec,
}

impl Authorizer {
    /// The authorizer `config` names, if any.
    pub(crate) fn of(config: &AuthConfig, registry: &Registry) -> Option<Authorizer> {
        let plugin = config.authorizer.clone()?;
        Some(Authorizer {
            plugin,
            host: OnceLock::new(),
            timeout: Duration::from_millis(config.authorizer_timeout_ms),
            ttl: Duration::from_millis(config.authorizer_cache_ms),
            wait: Duration::from_millis(config.authorizer_wait_ms),
            cache: Mutex::new(HashMap::new()),
            pending: AtomicUsize::new(0),
            failures: registry.counter_vec(
                "reader_authorizer_failures_total",
                "Authorizer questions denied because the plugin could not answer, by reason \
                 (missing: no such plugin, or not running; behind: it had not applied the \
                 notification's row within authorizer_wait_ms; busy: too many questions \
                 waiting; timeout: no answer within authorizer_timeout_ms; failed: an error or \
                 a trap).",
                &["reason"],
            ),
            asked: registry.counter_vec(
                "reader_authorizer_answers_total",
                "Authorizer verdicts by result (allow, deny) and source (cache, plugin).",
                &["result", "source"],
            ),
        })
    }

    /// Gives the authorizer the plugins to find its own among.
    pub(crate) fn attach(&self, host: Weak<PluginHost>) {
        let _ = self.host.set(host);
    }

    /// Whether `subject` may do `access`, asked once the plugin has applied `after` (the
    /// stream and token of the row a notification came from). False on any failure.
    async fn ask(&self, subject: &str, access: Access, after: Option<(&str, i64)>) -> bool {
        let Some(slot) = self
            .host
            .get()
            .and_then(Weak::upgrade)
            .and_then(|host| host.slot(&self.plugin))
        else {
            return self.fail("missing", subject, "the authorizer plugin is not loaded");
        };
        // A quarantined or failed authorizer would only time out: say no at once.
        if slot.run_state() != PluginRunState::Running {
            return self.fail("missing", subject, "the authorizer plugin is not running");
        }
        if let Some((stream, token)) = after
            && !slot.wait_for_cursor(stream, Token(token), self.wait).await
        {
            return self.fail(
                "behind",
                subject,
                &format!(
                    "the authorizer had not applied {stream}:{token} within {} ms",
                    self.wait.as_millis()
                ),
            );
        }
        let generation = slot.cursor_generation();
        let key = (subject.to_owned(), question(&access));
        if let Some(allowed) = self.cached(&key, generation) {
            self.count(allowed, "cache");
            return allowed;
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return self.fail("busy", subject, "too many questions waiting");
        }
        let (reply, verdict) = oneshot::channel();
        let call = AuthorizeCall {
            subject: subject.to_owned(),
            access,
            deadline: Instant::now() + self.timeout,
            reply,
        };
        let sent = slot.authorize(call);
        let verdict = match sent {
            false => Err("missing"),
            true => match tokio::time::timeout(self.timeout, verdict).await {
                Ok(Ok(Ok(allowed))) => Ok(allowed),
                Ok(Ok(Err(message))) => {
                    tracing::warn!(plugin = %self.plugin, %subject, %message, "authorizer failed: denied");
                    Err("failed")
                }
                Ok(Err(_)) => Err("missing"),
                Err(_) => Err("timeout"),
            },
        };
        self.pending.fetch_sub(1, Ordering::AcqRel);
        match verdict {
            Ok(allowed) => {
                self.remember(key, allowed, generation);
                self.count(allowed, "plugin");
                allowed
            }
            Err(reason) => self.fail(reason, subject, "no answer"),
        }
    }

    fn cached(&self, key: &(String, String), generation: u64) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (allowed, until, held_for) = cache.get(key)?;
        (*held_for == generation && Instant::now() < *until).then_some(*allowed)
    }

    fn remember(&self, key: (String, String), allowed: bool, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Entries of an earlier generation can never answer again.
        if cache.len() >= MAX_CACHED || cache.values().next().is_some_and(|c| c.2 != generation) {
            cache.retain(|_, c| c.2 == generation);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (allowed, Instant::now() + self.ttl, generation));
    }

    fn count(&self, allowed: bool, source: &str) {
        let result = if allowed { "allow" } else { "deny" };
        self.asked.with(&[result, source]).inc();
    }

    /// Denies, logging and counting why.
    fn fail(&self, reason: &str, subject: &str, message: &str) -> bool {
        tracing::warn!(plugin = %self.plugin, %subject, reason, "{message}: denied (fail closed)");
        self.failures.with(&[reason]).inc();
        false
    }
}

impl Authorize for Authorizer {
    fn plugin(&self) -> &str {
        &self.plugin
    }

    fn allows<'a>(
        &'a self,
        subject: &'a str,
        access: Access,
        after: Option<(&'a str, i64)>,
    ) -> futures_util::future::BoxFuture<'a, bool> {
        Box::pin(self.ask(subject, access, after))
    }
}

/// A question as a cache key.
fn question(access: &Access) -> String {
    match access {
        Access::Subscribe(topic) => format!("subscribe\u{0}{topic}"),
        Access::Query(QueryAccess { plugin, name, args }) => {
            let mut key = format!("query\u{0}{plugin}\u{0}{name}");
            for (k, v) in args {
                key.push('\u{0}');
                key.push_str(k);
                key.push('\u{1}');
                key.push_str(v);
            }
            key
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn authorizer(cache_ms: u64) -> Authorizer {
        let config = AuthConfig {
            authorizer: Some("a".into()),
            authorizer_cache_ms: cache_ms,
            ..AuthConfig::default()
        };
        Authorizer::of(&config, &Registry::new()).unwrap()
    }

    #[test]
    fn an_answer_holds_only_for_its_generation_and_its_time() {
        let authorizer = authorizer(60_000);
        let key = (
            "@u:x".to_string(),
            question(&Access::Subscribe("room:!r:x".into())),
        );
        authorizer.remember(key.clone(), true, 1);
        assert_eq!(authorizer.cached(&key, 1), Some(true));
        assert_eq!(
            authorizer.cached(&key, 2),
            None,
            "a batch was applied since"
        );
        // A newer generation's answer replaces the older ones.
        authorizer.remember(key.clone(), false, 2);
        assert_eq!(authorizer.cached(&key, 2), Some(false));
        assert_eq!(authorizer.cache.lock().unwrap().len(), 1);
        let uncached = self::authorizer(0);
        uncached.remember(key.clone(), true, 1);
        assert_eq!(uncached.cached(&key, 1), None);
    }

    #[test]
    fn questions_differ_by_every_part() {
        let query = |plugin: &str, name: &str, args: &[(&str, &str)]| {
            question(&Access::Query(QueryAccess {
                plugin: plugin.into(),
                name: name.into(),
                args: args
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }))
        };
        let all = [
            query("p", "q", &[("room", "!a:x")]),
            query("p", "q", &[("room", "!b:x")]),
            query("p", "q", &[("room=!a", ":x")]),
            query("p", "r", &[("room", "!a:x")]),
            query("o", "q", &[("room", "!a:x")]),
            query("p", "q", &[]),
            question(&Access::Subscribe("p".into())),
        ];
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
    }

    #[tokio::test]
    async fn without_its_plugin_it_denies() {
        let authorizer = authorizer(1_000);
        let access = Access::Subscribe("room:!r:x".into());
        assert!(!authorizer.ask("@u:x", access, None).await);
        assert_eq!(authorizer.failures.with(&["missing"]).get(), 1);
    }
}
