//! [`PluginState`], the data of one plugin instance's `Store`: its WASI context (clocks and
//! random only, plus a granted read-only folder), its `wasi:http` hooks when granted, its
//! memory limiter and its services.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::grants::Capabilities;
use crate::limits::{BudgetLimiter, Limits};
use crate::outbound::{HttpPolicy, OutboundHooks};
use crate::push::{Destinations, PushStage};
use crate::services::PluginServices;

/// Bytes of the guest's stderr kept for trap reports (a Rust panic message lands there).
const STDERR_CAPTURE_BYTES: usize = 8 * 1024;

/// The store data of one plugin instance.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: BudgetLimiter,
    pub(crate) services: Arc<PluginServices>,
    pub(crate) caps: Arc<Capabilities>,
    /// The operator's destinations, for the `push` import.
    pub(crate) destinations: Destinations,
    /// The pushes of the current `on-batch` call (closed outside it).
    pub(crate) pushes: PushStage,
    pub(crate) stderr: MemoryOutputPipe,
    /// Set when the key-value quota refused a write during the current call.
    pub(crate) kv_quota_hit: bool,
    /// Set when a host interface refused what the current call passed it for want of host
    /// memory (the call then fails with reason `host-memory`).
    pub(crate) host_memory_hit: bool,
    /// When the current call's CPU deadline passes; the epoch callback traps only after it.
    pub(crate) deadline: Instant,
    /// The `wasi:http` context and hooks, for a plugin granted `http` targets.
    pub(crate) http: Option<(WasiHttpCtx, OutboundHooks)>,
}

impl PluginState {
    /// State for a new instance of a plugin with `caps`, pushing to `destinations`, and
    /// `http` when it was granted outbound HTTP.
    pub(crate) fn new(
        services: Arc<PluginServices>,
        caps: Arc<Capabilities>,
        destinations: Destinations,
        http: Option<Arc<HttpPolicy>>,
    ) -> Result<PluginState, std::io::Error> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let mut builder = WasiCtx::builder();
        // Deny by default, said explicitly: no sockets, no name lookups, no env, no args.
        builder
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if let Some((host, guest)) = &caps.directory {
            builder
                .preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        }
        let limits: &Limits = &caps.limits;
        let http = http.map(|policy| (WasiHttpCtx::new(), OutboundHooks::new(policy, limits)));
        Ok(PluginState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: BudgetLimiter::new(limits.memory_bytes()),
            services,
            caps,
            destinations,
            pushes: PushStage::default(),
            stderr,
            kv_quota_hit: false,
            host_memory_hit: false,
            deadline: Instant::now(),
            http,
        })
    }

    /// What the guest wrote to stderr, lossily decoded.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // Linked only when `http` is `Some` (`version::linker`).
        let (ctx, hooks) = self
            .http
            .as_mut()
            .expect("wasi:http is linked only for plugins granted http");
        WasiHttpCtxView {
            ctx,
            table: &mut self.table,
            hooks,
        }
    }
}
