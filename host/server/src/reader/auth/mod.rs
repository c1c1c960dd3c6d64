//! Who may use a reader's plugin queries and notifications (`[reader.auth]`,
//! `docs/security.md`).
//!
//! - [`Auth`]: the API tokens — configured ones and those issued by the admin API (`issued`,
//!   kept hashed in the reader's database) — each with a [`Scope`] (`config::scope`).
//! - [`layer`]: the middleware in front of the query and notification endpoints. It answers
//!   401 without a valid token and puts an [`Access`] in the request, which the handlers ask
//!   before a query (`check_query`), before a subscription (`check_topics`), and for every
//!   notification they are about to deliver (`keep`), so nothing outside the token's scope,
//!   or after its revocation, is delivered.
//! - `admin`: `POST`/`GET /v1/admin/tokens`, `DELETE /v1/admin/tokens/{id}`.

pub(crate) mod admin;
mod issued;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::IntoResponse;
use tokio::sync::watch;

pub use self::issued::IssuedToken;
use self::issued::TokenTable;
use crate::config::AuthConfig;
pub use crate::config::{Pattern, Scope};
use crate::http::{ApiError, Response};
use crate::metrics::{CounterVec, Registry};
use streamhost_plugin_runtime::QueryAccess;

/// The holder of one valid token.
#[derive(Debug)]
pub struct Principal {
    /// The configured token's name, or the issued token's id.
    pub name: String,
    /// What the holder may use.
    pub scope: Scope,
    /// When the token stops working (issued tokens only), in ms since the Unix epoch.
    pub expires_ms: Option<i64>,
    /// The secret's sha256 of an issued token (which can be revoked).
    issued: Option<String>,
}

/// The reader's API tokens.
pub struct Auth {
    /// Configured tokens by their secret's sha256.
    configured: HashMap<String, Arc<Principal>>,
    /// Issued tokens by their secret's sha256 (a copy of `api_tokens`).
    issued: RwLock<HashMap<String, (IssuedToken, Arc<Principal>)>>,
    table: TokenTable,
    /// Bumped whenever an issued token is revoked, to end event streams that used it.
    revocations: watch::Sender<u64>,
    /// `reader_auth_denied_total{endpoint, reason}`.
    denied: CounterVec,
    /// The authorizer plugin, asked after a token's scope allowed a request.
    authorizer: Option<Arc<dyn Authorize>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("configured", &self.configured.len())
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Auth {
    /// The tokens of `config`, and the issued ones kept in `pool`'s `api_tokens`; `authorizer`
    /// is asked after a token's scope allowed a request.
    pub(crate) async fn open(
        config: &AuthConfig,
        pool: sqlx::SqlitePool,
        registry: &Registry,
        authorizer: Option<Arc<dyn Authorize>>,
    ) -> anyhow::Result<Auth> {
        let mut configured = HashMap::new();
        for token in &config.tokens {
            let secret = token
                .secret()
                .with_context(|| format!("reader.auth.tokens ({})", token.name))?;
            let scope = Scope::new(&token.subject, &token.queries, &token.topics)
                .with_context(|| format!("reader.auth.tokens ({})", token.name))?;
            let principal = Principal {
                name: token.name.clone(),
                scope,
                expires_ms: None,
                issued: None,
            };
            configured.insert(hash(&secret), Arc::new(principal));
        }
        let table = TokenTable::new(pool);
        let mut issued = HashMap::new();
        for token in table
            .load(now_ms())
            .await
            .context("loading issued tokens")?
        {
            match principal_of(&token) {
                Ok(principal) => {
                    issued.insert(token.sha256.clone(), (token, Arc::new(principal)));
                }
                Err(e) => tracing::warn!(id = %token.id, "ignoring an issued token: {e:#}"),
            }
        }
        Ok(Auth {
            configured,
            issued: RwLock::new(issued),
            table,
            revocations: watch::Sender::new(0),
            authorizer,
            denied: registry.counter_vec(
                "reader_auth_denied_total",
                "Requests and notifications [reader.auth] refused, by endpoint (query, \
                 notifications) and reason (token: missing, wrong, revoked or expired; scope: \
                 outside the token's scope; authorizer: the authorizer plugin said no or could \
                 not answer).",
                &["endpoint", "reason"],
            ),
        })
    }

    /// The holder of the bearer token in `header`, or a 401.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Arc<Principal>, ApiError> {
        let secret = header
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        let sha256 = hash(secret);
        if let Some(principal) = self.configured.get(&sha256) {
            return Ok(Arc::clone(principal));
        }
        let issued = self.issued.read().unwrap_or_else(|p| p.into_inner());
        match issued.get(&sha256) {
            Some((_, principal)) if principal.expires_ms.is_none_or(|at| now_ms() < at) => {
                Ok(Arc::clone(principal))
            }
            _ => Err(ApiError::unauthorized()),
        }
    }

    /// Whether `principal`'s token still works: not revoked, not expired.
    pub fn is_live(&self, principal: &Principal) -> bool {
        let Some(sha256) = &principal.issued else {
            return true;
        };
        if principal.expires_ms.is_some_and(|at| now_ms() >= at) {
            return false;
        }
        let issued = self.issued.read().unwrap_or_else(|p| p.into_inner());
        issued.contains_key(sha256)
    }

    /// Issues a token for `subject` with these patterns, valid for `expires_in` (forever if
    /// none); returns it and its secret, which is not kept.
    pub async fn issue(
        &self,
        subject: &str,
        queries: Vec<String>,
        topics: Vec<String>,
        expires_in: Option<Duration>,
    ) -> anyhow::Result<(IssuedToken, String)> {
        let secret = format!("sht_{}", random_hex(32));
        let created_ms = now_ms();
        let token = IssuedToken {
            id: random_hex(8),
            sha256: hash(&secret),
            subject: subject.to_owned(),
            queries,
            topics,
            created_ms,
            expires_ms: expires_in.map(|d| {
                created_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }),
        };
        let principal = principal_of(&token)?;
        self.table.insert(&token).await?;
        self.issued
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.sha256.clone(), (token.clone(), Arc::new(principal)));
        Ok((token, secret))
    }

    /// The issued tokens that have not expired, oldest first.
    pub fn issued(&self) -> Vec<IssuedToken> {
        let now = now_ms();
        let mut tokens: Vec<IssuedToken> = self
            .issued
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|(t, _)| t.expires_ms.is_none_or(|at| now < at))
            .map(|(t, _)| t.clone())
            .collect();
        tokens.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        tokens
    }

    /// Revokes the issued token `id`: it fails from the next request on, and event streams
    /// using it end. False if there is no such token.
    pub async fn revoke(&self, id: &str) -> anyhow::Result<bool> {
        let deleted = self.table.delete(id).await?;
        let removed = {
            let mut issued = self.issued.write().unwrap_or_else(|p| p.into_inner());
            let before = issued.len();
            issued.retain(|_, (t, _)| t.id != id);
            before != issued.len()
        };
        if removed {
            self.revocations.send_modify(|n| *n += 1);
        }
        Ok(deleted || removed)
    }

    /// Counts a refusal.
    fn deny(&self, endpoint: &str, reason: &str) {
        self.denied.with(&[endpoint, reason]).inc();
    }
}

/// The principal of an issued token.
fn principal_of(token: &IssuedToken) -> anyhow::Result<Principal> {
    Ok(Principal {
        name: token.id.clone(),
        scope: Scope::new(&token.subject, &token.queries, &token.topics)?,
        expires_ms: token.expires_ms,
        issued: Some(token.sha256.clone()),
    })
}

/// sha256 (hex) of a secret.
fn hash(secret: &str) -> String {
    streamhost_plugin_runtime::sha256_hex(secret.as_bytes())
}

/// `bytes` random bytes as hex.
fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    use std::fmt::Write as _;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    buffer.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The authorizer plugin as [`Access`] asks it (`reader::plugins::authorizer` implements it):
/// failures deny.
pub(crate) trait Authorize: Send + Sync {
    /// The plugin's name, for messages.
    fn plugin(&self) -> &str;

    /// Whether `subject` may do `access`, asked once the plugin has applied `after` (the
    /// stream and token of the row a notification came from).
    fn allows<'a>(
        &'a self,
        subject: &'a str,
        access: streamhost_plugin_runtime::Access,
        after: Option<(&'a str, i64)>,
    ) -> futures_util::future::BoxFuture<'a, bool>;
}

/// A notification as [`Access::keep`] sees it.
pub trait Delivered {
    /// Its topic.
    fn topic(&self) -> &str;
    /// The stream and token of the row that produced it, if a plugin's batch did.
    fn source(&self) -> Option<(&str, i64)>;
}

/// What a request to a query or notification endpoint may do: put in the request by [`layer`].
#[derive(Clone, Debug)]
pub enum Access {
    /// `[reader.auth]` is off: everything.
    Open,
    /// What the token's scope allows, while the token works.
    Token {
        /// The token's holder.
        principal: Arc<Principal>,
        /// The reader's tokens.
        auth: Arc<Auth>,
    },
}

impl Access {
    /// Allows query `name` of `plugin`, or answers 403 saying why.
    pub async fn check_query(
        &self,
        plugin: &str,
        name: &str,
        args: &[(String, String)],
    ) -> Result<(), ApiError> {
        let Access::Token { principal, auth } = self else {
            return Ok(());
        };
        if !principal.scope.allows_query(plugin, name) {
            auth.deny("query", "scope");
            return Err(forbidden(format!(
                "token {} (subject {}) may not read {plugin}/{name}: its scope allows queries {:?}",
                principal.name,
                principal.scope.subject(),
                principal.scope.query_patterns()
            )));
        }
        let Some(authorizer) = &auth.authorizer else {
            return Ok(());
        };
        let access = streamhost_plugin_runtime::Access::Query(QueryAccess {
            plugin: plugin.to_owned(),
            name: name.to_owned(),
            args: args.to_vec(),
        });
        if authorizer
            .allows(principal.scope.subject(), access, None)
            .await
        {
            return Ok(());
        }
        auth.deny("query", "authorizer");
        Err(forbidden(format!(
            "the authorizer (plugin {}) does not let {} read {plugin}/{name} with these arguments",
            authorizer.plugin(),
            principal.scope.subject()
        )))
    }

    /// Allows a subscription to every one of `topics`, or answers 403 naming the first one
    /// outside the token's scope.
    pub async fn check_topics(&self, topics: &[String]) -> Result<(), ApiError> {
        let Access::Token { principal, auth } = self else {
            return Ok(());
        };
        if let Some(topic) = topics.iter().find(|t| !principal.scope.allows_topic(t)) {
            auth.deny("notifications", "scope");
            return Err(forbidden(format!(
                "token {} (subject {}) may not subscribe to {topic}: its scope allows topics {:?}",
                principal.name,
                principal.scope.subject(),
                principal.scope.topic_patterns()
            )));
        }
        let Some(authorizer) = &auth.authorizer else {
            return Ok(());
        };
        for topic in topics {
            let access = streamhost_plugin_runtime::Access::Subscribe(topic.clone());
            if !authorizer
                .allows(principal.scope.subject(), access, None)
                .await
            {
                auth.deny("notifications", "authorizer");
                return Err(forbidden(format!(
                    "the authorizer (plugin {}) does not let {} subscribe to {topic}",
                    authorizer.plugin(),
                    principal.scope.subject()
                )));
            }
        }
        Ok(())
    }

    /// The notifications of `page` the holder may receive; a 401 once the token no longer
    /// works (revoked or expired).
    pub async fn keep<N: Delivered>(&self, page: Vec<N>) -> Result<Vec<N>, ApiError> {
        let Access::Token { principal, auth } = self else {
            return Ok(page);
        };
        if !auth.is_live(principal) {
            auth.deny("notifications", "token");
            return Err(ApiError::unauthorized());
        }
        let mut kept = Vec::with_capacity(page.len());
        for notification in page {
            if !principal.scope.allows_topic(notification.topic()) {
                auth.deny("notifications", "scope");
                continue;
            }
            if let Some(authorizer) = &auth.authorizer {
                let access =
                    streamhost_plugin_runtime::Access::Subscribe(notification.topic().to_owned());
                if !authorizer
                    .allows(principal.scope.subject(), access, notification.source())
                    .await
                {
                    auth.deny("notifications", "authorizer");
                    continue;
                }
            }
            kept.push(notification);
        }
        Ok(kept)
    }

    /// Resolves once the token stops working (revoked or expired); never for [`Access::Open`].
    pub async fn ended(&self) {
        let Access::Token { principal, auth } = self else {
            return std::future::pending().await;
        };
        let mut revocations = auth.revocations.subscribe();
        loop {
            if !auth.is_live(principal) {
                return;
            }
            let expiry = principal.expires_ms.map(|at| {
                Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
            });
            tokio::select! {
                changed = revocations.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                }
                () = sleep_or_pending(expiry) => {}
            }
        }
    }
}

async fn sleep_or_pending(time: Option<Duration>) {
    match time {
        Some(time) => tokio::time::sleep(time).await,
        None => std::future::pending().await,
    }
}

/// A 403 `M_FORBIDDEN`.
fn forbidden(message: String) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        errcode: "M_FORBIDDEN",
        message,
    }
}

/// `router` behind the token check: without `auth` every request gets [`Access::Open`]; with
/// it, a request without a valid bearer token is answered 401 and the others get the token's
/// [`Access`].
pub(crate) fn layer(router: Router, auth: Option<Arc<Auth>>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(auth, require))
}

async fn require(
    State(auth): State<Option<Arc<Auth>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = match auth {
        None => Access::Open,
        Some(auth) => {
            let header = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth.authenticate(header) {
                Ok(principal) => Access::Token { principal, auth },
                Err(error) => {
                    let endpoint = match request.uri().path().starts_with("/v1/query/") {
                        true => "query",
                        false => "notifications",
                    };
                    auth.deny(endpoint, "token");
                    return error.into_response();
                }
            }
        }
    };
    request.extensions_mut().insert(access);
    next.run(request).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    async fn auth(toml: &str) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::reader::ReaderStore::open(&dir.path().join("reader.sqlite"))
            .await
            .unwrap();
        let config = ConfigFile::parse(toml).unwrap().reader.auth;
        let auth = Auth::open(&config, store.pool().clone(), &Registry::new(), None)
            .await
            .unwrap();
        (auth, dir)
    }

    /// A notification on a topic.
    #[derive(Debug, PartialEq)]
    struct Topic(&'static str);

    impl Delivered for Topic {
        fn topic(&self) -> &str {
            self.0
        }
        fn source(&self) -> Option<(&str, i64)> {
            None
        }
    }

    const ALICE: &str = "[[reader.auth.tokens]]\nname = \"alice\"\n\
        token = \"alice-0123456789abcdef\"\nsubject = \"@alice:x\"\n\
        queries = [\"room-timeline/*\"]\ntopics = [\"room:*\", \"user:{subject}\"]\n";

    #[tokio::test]
    async fn configured_tokens_authenticate_by_their_secret() {
        let (auth, _dir) = auth(ALICE).await;
        let alice = auth
            .authenticate(Some("Bearer alice-0123456789abcdef"))
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.scope.allows_topic("user:@alice:x"));
        assert!(!alice.scope.allows_topic("user:@bob:x"));
        for wrong in [
            None,
            Some("alice-0123456789abcdef"),
            Some("Bearer alice-0123456789abcde"),
            Some("Basic alice-0123456789abcdef"),
        ] {
            let error = auth.authenticate(wrong).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        }
    }

    #[tokio::test]
    async fn access_checks_queries_topics_and_each_notification() {
        let (auth, _dir) = auth(ALICE).await;
        let auth = Arc::new(auth);
        let principal = auth
            .authenticate(Some("Bearer alice-0123456789abcdef"))
            .unwrap();
        let access = Access::Token {
            principal,
            auth: Arc::clone(&auth),
        };
        access
            .check_query("room-timeline", "timeline", &[])
            .await
            .unwrap();
        let error = access
            .check_query("membership", "rooms", &[])
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert!(
            error.message.contains("membership/rooms"),
            "{}",
            error.message
        );
        access
            .check_topics(&["room:!a:x".into(), "user:@alice:x".into()])
            .await
            .unwrap();
        let error = access
            .check_topics(&["room:!a:x".into(), "user:@bob:x".into()])
            .await
            .unwrap_err();
        assert!(error.message.contains("user:@bob:x"), "{}", error.message);
        let kept = access
            .keep(vec![Topic("room:!a:x"), Topic("user:@bob:x")])
            .await
            .unwrap();
        assert_eq!(kept, vec![Topic("room:!a:x")]);
    }

    #[tokio::test]
    async fn issued_tokens_survive_reopening_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reader.sqlite");
        let config = AuthConfig {
            enabled: Some(true),
            ..AuthConfig::default()
        };
        let secret = {
            let store = crate::reader::ReaderStore::open(&path).await.unwrap();
            let auth = Auth::open(&config, store.pool().clone(), &Registry::new(), None)
                .await
                .unwrap();
            let (token, secret) = auth
                .issue("@bob:x", vec!["*".into()], vec!["room:*".into()], None)
                .await
                .unwrap();
            let (short, short_secret) = auth
                .issue("@c:x", vec![], vec![], Some(Duration::from_millis(1)))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let error = auth
                .authenticate(Some(&format!("Bearer {short_secret}")))
                .unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "expired");
            assert_eq!(auth.issued(), vec![token.clone()], "{short:?} expired");
            store.close().await;
            secret
        };
        let store = crate::reader::ReaderStore::open(&path).await.unwrap();
        let auth = Arc::new(
            Auth::open(&config, store.pool().clone(), &Registry::new(), None)
                .await
                .unwrap(),
        );
        let bob = auth
            .authenticate(Some(&format!("Bearer {secret}")))
            .unwrap();
        assert_eq!(bob.scope.subject(), "@bob:x");
        let access = Access::Token {
            principal: bob,
            auth: Arc::clone(&auth),
        };
        let id = auth.issued()[0].id.clone();
        let ended = tokio::spawn({
            let access = access.clone();
            async move { access.ended().await }
        });
        assert!(auth.revoke(&id).await.unwrap());
        assert!(!auth.revoke(&id).await.unwrap());
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            access.keep(Vec::<Topic>::new()).await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(
            auth.authenticate(Some(&format!("Bearer {secret}")))
                .is_err()
        );
        assert!(auth.issued().is_empty());
    }
}
