//! The plugin worker: one OS thread per plugin that follows the feed with the plugin's own
//! cursors, calls the plugin, and applies each group's effects together with its cursors and
//! key-value writes (`docs/plugins.md`, "Exactly once").
//!
//! Wasm calls are synchronous and may run for their whole deadline, so they never run on the
//! async threads; the few async steps (the database, catch-up fetches) are driven with the
//! runtime's handle. Between batches the worker answers queries, swaps versions and obeys
//! stop requests, so a reload never interrupts a call.
//!
//! Each cursor carries the writer's [`Run`] it belongs to. When the writer of a stream restarts
//! its tokens (a [`Reset`](super::feed::Reset) in a commit, or a higher run in the reader's
//! positions after the worker fell behind), the cursor moves back to [`RUN_START`] in the new
//! run before anything of that run is applied, and is committed so with the group: the plugin
//! gets the new run's rows once, and a restart neither repeats nor drops them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use streamhost_plugin_runtime::{
    Batch as WasmBatch, Cursor, Effect, Failure, FailureReason, Invalidation, Notification,
    PluginInstance, PluginServices, PluginVersion, Row,
};
use streamhost_proto::{RowJson, ServerCommand, Token};

use super::HostContext;
use super::feed::{Commit, FeedRead, Key, RUN_START, ReaderPositions, Run};
use super::query_cache::cache_key;
use super::slot::{Control, FailureReport, PluginRunState, PluginSlot, QueryError};
use super::store::DeadLetter;
use crate::reader::catchup::CatchupError;

/// Most rows handed to one `on-batch` call; batches are cut only between tokens, so one
/// token with more rows makes a larger batch.
pub(crate) const MAX_BATCH_ROWS: usize = 1_024;
/// Most rows taken from the feed into one group (one database commit).
const GROUP_ROWS: usize = 4_096;
/// Wait between attempts to fetch a gap from the writer.
const CATCHUP_RETRY: Duration = Duration::from_secs(1);

/// Why processing stopped early.
enum Halt {
    /// A stop was requested.
    Stop,
    /// The plugin was quarantined.
    Quarantined,
}

/// What one group collects until it is committed.
#[derive(Default)]
struct Group {
    effects: Vec<Effect>,
    dead: Vec<DeadLetter>,
    batches: u64,
    rows: u64,
    dirty: bool,
    /// Cursors moved back to a writer's new run: (key, the cursor before, the run).
    resets: Vec<(Key, Token, Run)>,
}

pub(crate) struct Worker {
    slot: Arc<PluginSlot>,
    ctx: Arc<HostContext>,
    version: Arc<PluginVersion>,
    services: Arc<PluginServices>,
    instance: Option<PluginInstance>,
    cursors: HashMap<Key, Token>,
    persisted: HashMap<Key, Token>,
    /// The writer's run of each cursor; absent means run 0.
    runs: HashMap<Key, Run>,
    persisted_runs: HashMap<Key, Run>,
    seq: u64,
    rx: Receiver<Control>,
    deferred: Vec<Control>,
    quarantined: bool,
    counters_seen: HashMap<String, u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Worker {
    /// A worker for `slot` running `version` from `cursors` (and their runs); `instance` is
    /// already initialised.
    pub(crate) fn new(
        slot: Arc<PluginSlot>,
        ctx: Arc<HostContext>,
        version: Arc<PluginVersion>,
        instance: PluginInstance,
        (cursors, runs): (HashMap<Key, Token>, HashMap<Key, Run>),
        rx: Receiver<Control>,
    ) -> Worker {
        let services = slot.services().clone();
        Worker {
            slot,
            ctx,
            version,
            services,
            instance: Some(instance),
            persisted: cursors.clone(),
            cursors,
            persisted_runs: runs.clone(),
            runs,
            seq: 0,
            rx,
            deferred: Vec::new(),
            quarantined: false,
            counters_seen: HashMap::new(),
        }
    }

    /// Runs until stopped.
    pub(crate) fn run(mut self) {
        let name = self.slot.name().to_string();
        let wake_slot = self.slot.clone();
        let waker = self.ctx.feed.subscribe(Arc::new(move || wake_slot.wake()));
        tracing::info!(plugin = %name, version = %self.version.sha256(), "plugin running");
        if self.resync().is_ok() {
            let _ = self.follow();
        }
        self.ctx.feed.unsubscribe(waker);
        tracing::info!(plugin = %name, "plugin worker stopped");
    }

    fn follow(&mut self) -> Result<(), Halt> {
        loop {
            for control in std::mem::take(&mut self.deferred) {
                self.handle(control)?;
            }
            while let Ok(control) = self.rx.try_recv() {
                self.handle(control)?;
            }
            if self.quarantined {
                match self.rx.recv() {
                    Ok(control) => self.handle(control)?,
                    Err(_) => return Err(Halt::Stop),
                }
                continue;
            }
            self.slot.woken();
            match self.ctx.feed.read(self.seq, GROUP_ROWS) {
                FeedRead::Commits(commits) => {
                    let last = commits.last().map_or(self.seq, |c| c.seq);
                    match self.process(&commits) {
                        Ok(()) => self.seq = last,
                        Err(Halt::Quarantined) => self.seq = last,
                        Err(Halt::Stop) => return Err(Halt::Stop),
                    }
                }
                FeedRead::Lapped { seq, positions } => match self.catch_up_to(&positions) {
                    Ok(()) | Err(Halt::Quarantined) => self.seq = seq,
                    Err(Halt::Stop) => return Err(Halt::Stop),
                },
                FeedRead::Empty => match self.rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(control) => self.handle(control)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(Halt::Stop),
                },
            }
        }
    }

    /// Catches up to the reader's current positions from the writer, then follows the feed
    /// from there.
    fn resync(&mut self) -> Result<(), Halt> {
        let (seq, positions) = self.ctx.feed.snapshot();
        let result = self.catch_up_to(&positions);
        self.seq = seq;
        match result {
            Err(Halt::Stop) => Err(Halt::Stop),
            _ => Ok(()),
        }
    }

    fn handle(&mut self, control: Control) -> Result<(), Halt> {
        match control {
            Control::Wake => {}
            Control::Stop => return Err(Halt::Stop),
            Control::Query { name, args, reply } => {
                let _ = reply.send(self.query(&name, &args));
            }
            Control::Reload { version, reply } => {
                let _ = reply.send(self.swap(version));
            }
            Control::Resume { reply } => {
                let was = self.quarantined;
                if was {
                    self.quarantined = false;
                    self.instance = None;
                    self.slot.status().state = PluginRunState::Running;
                    tracing::info!(plugin = %self.slot.name(), "quarantine lifted");
                    self.resync()?;
                }
                let _ = reply.send(was);
            }
        }
        Ok(())
    }

    /// Applies the commits' rows above the plugin's cursors.
    fn process(&mut self, commits: &[Arc<Commit>]) -> Result<(), Halt> {
        let mut group = Group::default();
        let result = (|| {
            for commit in commits {
                for reset in &commit.resets {
                    self.enter_run(&reset.key, reset.run, &mut group);
                }
                for advance in &commit.advances {
                    // Also here, not only on the commit's resets: a failed commit of this
                    // worker may have taken its cursor back to an earlier run.
                    self.enter_run(&advance.key, advance.run, &mut group);
                    let cursor = self.cursor(&advance.key);
                    if cursor >= advance.after {
                        continue;
                    }
                    if cursor < advance.before {
                        self.fill_gap(&advance.key, cursor, advance.before, &mut group)?;
                    }
                    let cursor = self.cursor(&advance.key);
                    let rows: Vec<(Token, &RowJson)> = commit
                        .batches
                        .iter()
                        .filter(|b| b.stream == advance.key.0 && b.instance == advance.key.1)
                        .filter(|b| b.token > cursor)
                        .flat_map(|b| b.rows.iter().map(move |r| (b.token, r)))
                        .collect();
                    self.apply_rows(&advance.key, &rows, &mut group)?;
                    self.cursors.insert(advance.key.clone(), advance.after);
                    group.dirty = true;
                }
            }
            Ok(())
        })();
        self.flush(&mut group);
        result
    }

    /// Catches every key up to `positions`, first moving cursors of an earlier run of their
    /// writer back to the start of the current one.
    fn catch_up_to(&mut self, positions: &ReaderPositions) -> Result<(), Halt> {
        let mut group = Group::default();
        let result = (|| {
            for (key, position) in &positions.tokens {
                self.enter_run(key, positions.run(key), &mut group);
                let cursor = self.cursor(key);
                if cursor < *position {
                    self.fill_gap(key, cursor, *position, &mut group)?;
                    self.cursors.insert(key.clone(), *position);
                    group.dirty = true;
                }
            }
            Ok(())
        })();
        self.flush(&mut group);
        result
    }

    /// Moves the cursor of `key` back to [`RUN_START`] when it belongs to a run of the writer
    /// before `run` (the writer restarted its tokens since), so the new run's rows are applied
    /// from its start. Reported once the group commits.
    fn enter_run(&mut self, key: &Key, run: Run, group: &mut Group) {
        if self.run_of(key) >= run {
            return;
        }
        self.runs.insert(key.clone(), run);
        group.dirty = true;
        if let Some(cursor) = self.cursors.get_mut(key) {
            let before = std::mem::replace(cursor, RUN_START);
            if before > RUN_START {
                group.resets.push((key.clone(), before, run));
            }
        }
    }

    /// Fetches `(from, to]` of `key` from the writer and applies it, retrying until it works
    /// or a stop is requested. When no source has the rows (a Synapse stream), the range is a
    /// gap: reported (warning, `streamhost_plugin_gaps_total`, a dead letter) and stepped over.
    fn fill_gap(
        &mut self,
        key: &Key,
        from: Token,
        to: Token,
        group: &mut Group,
    ) -> Result<(), Halt> {
        let wanted = self.version.wants(key.0.as_str());
        let mut from = from;
        while from < to {
            if !wanted {
                self.cursors.insert(key.clone(), to);
                return Ok(());
            }
            let page = self
                .ctx
                .handle
                .block_on(self.ctx.catchup.fetch(&key.0, from, to));
            match page {
                Ok(page) => {
                    let rows: Vec<(Token, &RowJson)> =
                        page.updates.iter().map(|(t, r)| (*t, r)).collect();
                    self.apply_rows(key, &rows, group)?;
                    let upto = if page.limited { page.upto } else { to };
                    if upto <= from {
                        tracing::warn!(plugin = %self.slot.name(), stream = %key.0, "catch-up made no progress");
                        self.wait(CATCHUP_RETRY)?;
                        continue;
                    }
                    self.cursors.insert(key.clone(), upto);
                    group.dirty = true;
                    from = upto;
                }
                Err(CatchupError::Unavailable(reason)) => {
                    self.report_gap(key, from, to, &reason, group);
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(plugin = %self.slot.name(), stream = %key.0, from = from.0, to = to.0, %error, "plugin catch-up failed; retrying");
                    self.wait(CATCHUP_RETRY)?;
                }
            }
        }
        Ok(())
    }

    /// Records that the plugin missed `(from, to]` of `key` for good and moves its cursor to
    /// `to`. The dead letter keeps the range for the admin API.
    fn report_gap(&mut self, key: &Key, from: Token, to: Token, reason: &str, group: &mut Group) {
        tracing::warn!(
            plugin = %self.slot.name(), stream = %key.0, instance = %key.1, from = from.0,
            to = to.0, %reason,
            "plugin gap: rows in (from, to] cannot be fetched; the plugin follows on from `to`"
        );
        self.ctx
            .metrics
            .gaps
            .with(&[self.slot.name(), key.0.as_str()])
            .inc();
        group.dead.push(DeadLetter {
            stream: key.0.as_str().to_string(),
            instance: key.1.as_str().to_string(),
            from_token: from.0,
            to_token: to.0,
            reason: format!("gap: {reason}"),
            at_ms: now_ms() as i64,
        });
        self.cursors.insert(key.clone(), to);
        group.dirty = true;
    }

    /// Hands `rows` (token order) to the plugin in batches cut between tokens.
    fn apply_rows(
        &mut self,
        key: &Key,
        rows: &[(Token, &RowJson)],
        group: &mut Group,
    ) -> Result<(), Halt> {
        if rows.is_empty() {
            return Ok(());
        }
        if !self.version.wants(key.0.as_str()) {
            let last = rows[rows.len() - 1].0;
            self.cursors.insert(key.clone(), last);
            group.dirty = true;
            return Ok(());
        }
        let mut start = 0;
        while start < rows.len() {
            let mut end = (start + MAX_BATCH_ROWS).min(rows.len());
            while end < rows.len() && rows[end].0 == rows[end - 1].0 {
                end += 1;
            }
            let chunk = &rows[start..end];
            let batch = WasmBatch {
                stream: key.0.as_str().to_string(),
                instance: key.1.as_str().to_string(),
                prev_token: self.cursor(key).0,
                token: chunk[chunk.len() - 1].0.0,
                rows: chunk
                    .iter()
                    .map(|(token, row)| Row {
                        token: token.0,
                        data: row.as_str().to_string(),
                    })
                    .collect(),
            };
            self.call_batch(key, &batch, group)?;
            self.cursors.insert(key.clone(), Token(batch.token));
            group.dirty = true;
            start = end;
        }
        Ok(())
    }

    /// Calls `on-batch` under the failure policy.
    fn call_batch(&mut self, key: &Key, batch: &WasmBatch, group: &mut Group) -> Result<(), Halt> {
        let mut attempt = 0u32;
        let mut batch_file = None;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = match self.ensure_instance() {
                Ok(instance) => instance.on_batch(batch),
                Err(failure) => Err(failure),
            };
            let duration = started.elapsed();
            let failure = match result {
                Ok(effects) => {
                    self.services.kv().stage();
                    group.effects.extend(effects);
                    group.batches += 1;
                    group.rows += batch.rows.len() as u64;
                    return Ok(());
                }
                Err(failure) => failure,
            };
            self.services.kv().discard();
            if failure.reason.needs_fresh_instance() {
                self.instance = None;
            }
            if batch_file.is_none() && failure.reason != FailureReason::PluginSkip {
                batch_file = self.write_batch_file(batch);
            }
            self.report(
                "on-batch",
                Some(batch),
                (attempt, duration),
                &failure,
                batch_file.clone(),
            );
            self.ctx
                .metrics
                .failures
                .with(&[self.slot.name(), failure.reason.as_str()])
                .inc();
            if failure.reason == FailureReason::PluginSkip {
                group.dead.push(DeadLetter {
                    stream: batch.stream.clone(),
                    instance: batch.instance.clone(),
                    from_token: batch.prev_token,
                    to_token: batch.token,
                    reason: failure.message.clone(),
                    at_ms: now_ms() as i64,
                });
                group.dirty = true;
                let _ = key;
                return Ok(());
            }
            if attempt > self.ctx.retries {
                // Commit what succeeded before this batch, then stop here.
                self.flush(group);
                self.quarantine(format!(
                    "{} after {attempt} attempts on {} {} ({}, {}]: {}",
                    failure.reason.as_str(),
                    batch.stream,
                    batch.instance,
                    batch.prev_token,
                    batch.token,
                    failure.message
                ));
                return Err(Halt::Quarantined);
            }
            let backoff = self.ctx.backoff.saturating_mul(1 << (attempt - 1).min(10));
            self.wait(backoff)?;
        }
    }

    /// The current instance, instantiating and initialising a fresh one if needed.
    fn ensure_instance(&mut self) -> Result<&mut PluginInstance, Failure> {
        if self.instance.is_none() {
            let mut instance = self.version.instantiate(self.services.clone())?;
            instance.init(&self.resume_after())?;
            self.services.kv().stage();
            self.instance = Some(instance);
        }
        Ok(self.instance.as_mut().expect("set just above"))
    }

    fn resume_after(&self) -> Vec<Cursor> {
        self.cursors
            .iter()
            .map(|((stream, instance), token)| Cursor {
                stream: stream.as_str().to_string(),
                instance: instance.as_str().to_string(),
                token: token.0,
            })
            .collect()
    }

    fn cursor(&self, key: &Key) -> Token {
        self.cursors.get(key).copied().unwrap_or(Token(0))
    }

    fn run_of(&self, key: &Key) -> Run {
        self.runs.get(key).copied().unwrap_or_default()
    }

    /// Commits the group's cursors, key-value writes and dead letters, then applies its
    /// effects and publishes the cursors. A failed commit forgets the group: the cursors go
    /// back and the rows are fetched again.
    fn flush(&mut self, group: &mut Group) {
        let group = std::mem::take(group);
        if !group.dirty {
            return;
        }
        let changed: Vec<(Key, Token, Run)> = self
            .cursors
            .iter()
            .filter(|(k, t)| {
                self.persisted.get(*k) != Some(*t)
                    || self.persisted_runs.get(*k) != self.runs.get(*k)
            })
            .map(|(k, t)| (k.clone(), *t, self.run_of(k)))
            .collect();
        let kv = self.services.kv().staged();
        let name = self.slot.name().to_string();
        let committed =
            self.ctx
                .handle
                .block_on(self.ctx.store.commit(&name, &changed, &kv, &group.dead));
        if let Err(error) = committed {
            tracing::error!(plugin = %name, error = %format!("{error:#}"), "committing plugin state failed; the rows will be applied again");
            self.services.kv().discard_all();
            self.cursors = self.persisted.clone();
            self.runs = self.persisted_runs.clone();
            self.instance = None;
            return;
        }
        self.services.kv().commit();
        self.persisted = self.cursors.clone();
        self.persisted_runs = self.runs.clone();
        for (key, before, run) in &group.resets {
            tracing::info!(
                plugin = %name, stream = %key.0, instance = %key.1, cursor = before.0, run = run.0,
                "the writer restarted this stream's tokens: the plugin's cursor moved back to the start of its new run"
            );
            self.ctx.metrics.resets.with(&[&name, key.0.as_str()]).inc();
        }
        let mut notifications = Vec::new();
        for effect in &group.effects {
            match effect {
                Effect::Invalidate(Invalidation { cache, key }) => {
                    self.ctx.cache.invalidate(&name, cache, key)
                }
                Effect::InvalidateAll(cache) => self.ctx.cache.invalidate_all(&name, cache),
                Effect::Notify(Notification { topic, payload }) => {
                    notifications.push((topic.clone(), payload.clone()))
                }
            }
        }
        if !notifications.is_empty() {
            self.ctx.hub.publish(&name, notifications);
        }
        let metrics = &self.ctx.metrics;
        metrics.batches.with(&[&name]).add(group.batches);
        metrics.rows.with(&[&name]).add(group.rows);
        metrics
            .effects
            .with(&[&name])
            .add(group.effects.len() as u64);
        for (counter, value) in self.services.counters() {
            let seen = self.counters_seen.entry(counter.clone()).or_default();
            if value > *seen {
                metrics.counters.with(&[&name, &counter]).add(value - *seen);
                *seen = value;
            }
        }
        {
            let mut status = self.slot.status();
            status.batches += group.batches;
            status.rows += group.rows;
            status.effects += group.effects.len() as u64;
        }
        self.slot.publish_cursors(&self.cursors);
    }

    /// Answers a query on the plugin's instance (between batches, so its answer reflects
    /// exactly the applied cursors) and caches it.
    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<Arc<str>, QueryError> {
        if self.quarantined {
            return Err(QueryError::Unavailable(format!(
                "plugin {} is quarantined",
                self.slot.name()
            )));
        }
        let description = self.version.description();
        let Some(spec) = description.queries.iter().find(|q| q.name == name) else {
            return Err(QueryError::BadRequest(format!(
                "plugin {} has no query {name}",
                self.slot.name()
            )));
        };
        let key = cache_key(&spec.key, args).map_err(QueryError::BadRequest)?;
        let plugin = self.slot.name().to_string();
        if let Some(answer) = self.ctx.cache.get(&plugin, &spec.cache, &key) {
            return Ok(answer);
        }
        let cache = spec.cache.clone();
        let result = match self.ensure_instance() {
            Ok(instance) => instance.query(name, args),
            Err(failure) => Err(failure),
        };
        // Queries read state; whatever they wrote is not part of any batch.
        self.services.kv().discard();
        match result {
            Ok(answer) => {
                let answer: Arc<str> = answer.into();
                self.ctx.cache.insert(&plugin, &cache, &key, answer.clone());
                Ok(answer)
            }
            Err(failure) => {
                if failure.reason.needs_fresh_instance() {
                    self.instance = None;
                }
                self.report("query", None, (1, Duration::ZERO), &failure, None);
                Err(QueryError::Failed(failure))
            }
        }
    }

    /// Swaps in `version` at this batch boundary: snapshot the old instance when both
    /// versions support it, then restore (or init) a fresh instance of the new one. On any
    /// failure the old version keeps running.
    fn swap(&mut self, version: Arc<PluginVersion>) -> Result<(), String> {
        let started = Instant::now();
        let carry = self.version.description().snapshots && version.description().snapshots;
        let snapshot = match (&mut self.instance, carry) {
            (Some(instance), true) => match instance.snapshot() {
                Ok(state) => Some(state),
                Err(failure) => {
                    if failure.reason.needs_fresh_instance() {
                        self.instance = None;
                    }
                    tracing::warn!(plugin = %self.slot.name(), %failure, "snapshot failed; the new version starts with init");
                    None
                }
            },
            _ => None,
        };
        let resume_after = self.resume_after();
        let started_new = version
            .instantiate(self.services.clone())
            .and_then(|mut instance| {
                match &snapshot {
                    Some(state) => instance.restore(state, &resume_after)?,
                    None => instance.init(&resume_after)?,
                }
                Ok(instance)
            });
        match started_new {
            Ok(instance) => {
                self.services.kv().stage();
                let pause = started.elapsed();
                let old = std::mem::replace(&mut self.version, version.clone());
                self.instance = Some(instance);
                self.ctx.cache.remove_plugin(self.slot.name());
                {
                    let mut status = self.slot.status();
                    status.version = Some(version.clone());
                    status.reloads += 1;
                    status.pause(pause);
                    if self.quarantined {
                        status.state = PluginRunState::Running;
                    }
                }
                self.ctx
                    .metrics
                    .reloads
                    .with(&[self.slot.name(), "ok"])
                    .inc();
                tracing::info!(plugin = %self.slot.name(), from = %old.sha256(), to = %version.sha256(), pause_us = pause.as_micros() as u64, restored = snapshot.is_some(), "plugin reloaded");
                if self.quarantined {
                    self.quarantined = false;
                    self.deferred.push(Control::Wake);
                    let _ = self.resync();
                }
                Ok(())
            }
            Err(failure) => {
                self.services.kv().discard();
                self.slot.status().reload_failures += 1;
                self.ctx
                    .metrics
                    .reloads
                    .with(&[self.slot.name(), "failed"])
                    .inc();
                let message = format!(
                    "new version {} failed to start: {failure}",
                    version.sha256()
                );
                self.report("reload", None, (1, started.elapsed()), &failure, None);
                tracing::error!(plugin = %self.slot.name(), %message, "reload failed; the old version keeps running");
                Err(message)
            }
        }
    }

    fn quarantine(&mut self, reason: String) {
        tracing::error!(plugin = %self.slot.name(), %reason, "plugin quarantined");
        self.quarantined = true;
        self.instance = None;
        self.slot.status().state = PluginRunState::Quarantined(reason);
        self.ctx.metrics.quarantines.with(&[self.slot.name()]).inc();
    }

    /// Waits `duration` while still obeying a stop; other requests wait for the loop.
    fn wait(&mut self, duration: Duration) -> Result<(), Halt> {
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.rx.recv_timeout(left) {
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => return Err(Halt::Stop),
                Ok(Control::Wake) => {}
                Ok(other) => self.deferred.push(other),
                Err(RecvTimeoutError::Timeout) => return Ok(()),
            }
        }
    }

    fn report(
        &self,
        call: &str,
        batch: Option<&WasmBatch>,
        (attempt, duration): (u32, Duration),
        failure: &Failure,
        batch_file: Option<PathBuf>,
    ) {
        let report = FailureReport {
            at_ms: now_ms(),
            plugin: self.slot.name().to_string(),
            version: self.version.sha256().to_string(),
            call: call.to_string(),
            stream: batch.map(|b| b.stream.clone()),
            instance: batch.map(|b| b.instance.clone()),
            tokens: batch.map(|b| (b.prev_token, b.token)),
            attempt,
            duration_us: duration.as_micros() as u64,
            failure: failure.clone(),
            log_lines: self.services.log().recent(),
            batch_file,
        };
        tracing::warn!(
            plugin = %report.plugin,
            version = %report.version,
            call,
            reason = failure.reason.as_str(),
            tokens = ?report.tokens,
            attempt,
            message = %failure.message,
            backtrace = failure.backtrace.as_deref().unwrap_or(""),
            "plugin call failed"
        );
        self.slot.status().report(report);
    }

    /// Writes `batch` as RDATA lines for `streamhost plugin run --input`; returns the path.
    fn write_batch_file(&self, batch: &WasmBatch) -> Option<PathBuf> {
        let path = self.ctx.failures_dir.join(format!(
            "{}-{}-{}-{}.rdata",
            self.slot.name(),
            batch.stream,
            batch.prev_token,
            batch.token
        ));
        let mut out = Vec::new();
        for (n, row) in batch.rows.iter().enumerate() {
            // Rows sharing a token go out as Synapse sends them: `batch` until the last.
            let more_of_this_token = batch.rows.get(n + 1).is_some_and(|r| r.token == row.token);
            let command = ServerCommand::Rdata(streamhost_proto::Rdata {
                stream: streamhost_proto::StreamName::new(&batch.stream).ok()?,
                instance: streamhost_proto::InstanceName::new(&batch.instance).ok()?,
                token: (!more_of_this_token).then_some(Token(row.token)),
                row: RowJson::parse(row.data.as_bytes()).ok()?,
            });
            command.encode(&mut out).ok()?;
        }
        let written = std::fs::create_dir_all(&self.ctx.failures_dir)
            .and_then(|()| std::fs::write(&path, out));
        match written {
            Ok(()) => Some(path),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not keep the failing batch");
                None
            }
        }
    }
}
