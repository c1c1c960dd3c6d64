//! [`PluginVersion`]: one loaded version of a plugin — manifest checked against the grant,
//! component compiled (or taken from the cache), linked with only its granted imports,
//! pre-instantiated once, and described.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::bindings::types::Description;
use crate::bindings::{
    EARLIER_VERSIONS, VERSIONS, authorizer, authorizer_v2, authorizer_v3, clock, fields,
    handler_v1, handler_v2, handler_v3, handler_v4, rows, types,
};
use crate::error::LoadError;
use crate::grants::{Capabilities, Grant};
use crate::host::earlier;
use crate::instance::PluginInstance;
use crate::kv::KvStore;
use crate::manifest::{Manifest, PluginFiles};
use crate::outbound::HttpPolicy;
use crate::push::Destinations;
use crate::row_fields::FieldPaths;
use crate::runtime::{Runtime, sha256_hex};
use crate::services::PluginServices;
use crate::state::PluginState;

/// The WIT interfaces a grant decides, with the grant each needs.
const GATED_IMPORTS: [(&str, &str); 4] = [
    ("streamhost:plugin/kv@", "`kv = true`"),
    ("streamhost:plugin/rows@", "`read_rows = [...]`"),
    ("streamhost:plugin/push@", "`push = [...]`"),
    ("wasi:http/", "`http = [...]`"),
];

/// A compiled, linked and described plugin version, ready to instantiate many times.
pub struct PluginVersion {
    manifest: Manifest,
    caps: Arc<Capabilities>,
    sha256: String,
    description: Description,
    /// The row fields `wanted-fields` asked for (0.3.0; none before).
    fields: Arc<FieldPaths>,
    pre: InstancePre<PluginState>,
    exports: ExportIndices,
    /// The resolved `http` targets, when any are granted.
    http: Option<Arc<HttpPolicy>>,
    engine: Engine,
    destinations: Destinations,
    component_bytes: u64,
    compile_time: Duration,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion")
            .field("name", &self.manifest.name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl PluginVersion {
    /// Loads the plugin in `files` under `grant`. Slow (it may compile): call it off async
    /// threads.
    pub fn load(
        runtime: &Runtime,
        files: &PluginFiles,
        grant: &Grant,
    ) -> Result<PluginVersion, LoadError> {
        let (manifest, caps, bytes) = files.read(|manifest| {
            let caps = Capabilities::resolve(manifest, grant)?;
            let max = caps.limits.max_component_bytes;
            Ok((caps, max))
        })?;
        let size = bytes.len() as u64;
        let sha256 = sha256_hex(&bytes);
        check_pins(&manifest, grant, &sha256)?;
        let name = manifest.name.clone();
        let started = Instant::now();
        let component = runtime
            .compile(&manifest.name, &bytes, &sha256)
            .map_err(|e| LoadError::Compile {
                plugin: name.clone(),
                message: format!("compiling {}: {e:#}", files.wasm.display()),
            })?;
        let compile_time = started.elapsed();
        let engine = runtime.engine().clone();
        let link_error = |message: String| LoadError::Link {
            plugin: name.clone(),
            message,
        };
        check_gated_imports(&component, &engine, &caps).map_err(link_error)?;
        let http = match caps.http.is_empty() {
            true => None,
            false => Some(Arc::new(
                HttpPolicy::new(
                    &caps.http,
                    &runtime.config().destinations,
                    runtime.config().http_backend.clone(),
                )
                .map_err(link_error)?,
            )),
        };
        let linker = linker(&engine, &caps).map_err(|e| link_error(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| link_error(format!("cannot link the component: {e:#}")))?;
        let exports = ExportIndices::new(&pre).map_err(link_error)?;
        let caps = Arc::new(caps);
        let mut version = PluginVersion {
            manifest,
            caps,
            sha256,
            description: Description {
                name: String::new(),
                version: String::new(),
                streams: Vec::new(),
                queries: Vec::new(),
                snapshots: false,
            },
            fields: Arc::default(),
            pre,
            exports,
            http,
            engine,
            destinations: runtime.config().destinations.clone(),
            component_bytes: size,
            compile_time,
        };
        let (description, fields) = version.describe()?;
        version.description = description;
        version.fields = Arc::new(fields);
        Ok(version)
    }

    /// Calls `describe` (and, from 0.3.0, `wanted-fields`) on a throwaway instance and checks
    /// them against manifest and grant.
    fn describe(&self) -> Result<(Description, FieldPaths), LoadError> {
        let name = &self.manifest.name;
        let describe_error = |message: String| LoadError::Describe {
            plugin: name.clone(),
            message,
        };
        let services = PluginServices::new(name, KvStore::default(), 1, None);
        let mut instance = self
            .instantiate(services)
            .map_err(|e| describe_error(format!("cannot instantiate: {e}")))?;
        let description = instance
            .describe()
            .map_err(|e| describe_error(format!("describe failed: {e}")))?;
        if description.name != *name {
            return Err(describe_error(format!(
                "describe says its name is {:?}, plugin.toml says {name:?}",
                description.name
            )));
        }
        let asks_all = self.manifest.streams.iter().any(|s| s == "*");
        // `*` in the description wants every stream granted: it never contradicts the manifest.
        for stream in description.streams.iter().filter(|s| *s != "*") {
            if !asks_all && !self.manifest.streams.contains(stream) {
                return Err(describe_error(format!(
                    "describe wants stream {stream}, which plugin.toml does not request"
                )));
            }
        }
        for query in &description.queries {
            if !self.caps.may_invalidate(&query.cache) {
                return Err(describe_error(format!(
                    "query {} uses cache {}, which plugin.toml does not request",
                    query.name, query.cache
                )));
            }
        }
        let fields = instance
            .wanted_fields()
            .map_err(|e| describe_error(format!("wanted-fields failed: {e}")))?;
        let fields = FieldPaths::parse(fields).map_err(describe_error)?;
        Ok((description, fields))
    }

    /// A fresh instance sharing `services` (the plugin's store, log and counters).
    pub fn instantiate(
        &self,
        services: Arc<PluginServices>,
    ) -> Result<PluginInstance, crate::Failure> {
        let state = PluginState::new(
            services,
            self.caps.clone(),
            self.destinations.clone(),
            self.http.clone(),
        )
        .map_err(|e| {
            crate::Failure::new(
                crate::FailureReason::Trap,
                format!("preparing the instance: {e}"),
            )
        })?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(crate::instance::epoch_reached);
        PluginInstance::new(store, &self.pre, &self.exports, self.fields.clone())
    }

    /// The `streamhost:plugin` version the component was built against (`0.1.0` to `0.4.0`).
    pub fn interface_version(&self) -> &'static str {
        match self.exports {
            ExportIndices::V1(_) => VERSIONS[0],
            ExportIndices::V2 { .. } => VERSIONS[1],
            ExportIndices::V3 { .. } => VERSIONS[2],
            ExportIndices::V4 { .. } => VERSIONS[3],
        }
    }

    /// Whether the component exports `authorizer` (since 0.2.0).
    pub fn is_authorizer(&self) -> bool {
        matches!(
            self.exports,
            ExportIndices::V2 {
                authorizer: Some(_),
                ..
            } | ExportIndices::V3 {
                authorizer: Some(_),
                ..
            } | ExportIndices::V4 {
                authorizer: Some(_),
                ..
            }
        )
    }

    /// The row fields the plugin asked for through `wanted-fields` (none before 0.3.0).
    pub fn wanted_fields(&self) -> &[String] {
        self.fields.paths()
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The component's sha256 (hex), which identifies the version.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// What `describe` returned.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What the plugin was given.
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.caps
    }

    /// Whether batches of `stream` go to this version: it wants them and they are granted.
    pub fn wants(&self, stream: &str) -> bool {
        self.caps.receives(stream)
            && self
                .description
                .streams
                .iter()
                .any(|s| s == "*" || s == stream)
    }

    /// Size of the `.wasm` in bytes.
    pub fn component_bytes(&self) -> u64 {
        self.component_bytes
    }

    /// How long compiling (or loading the cached compilation) took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

/// Checks the component's `sha256` against the hashes plugin.toml and the grant pin, if any.
fn check_pins(manifest: &Manifest, grant: &Grant, sha256: &str) -> Result<(), LoadError> {
    for (pinned_by, pin) in [
        ("plugin.toml", &manifest.sha256),
        ("the grant", &grant.sha256),
    ] {
        if let Some(expected) = pin
            && !expected.eq_ignore_ascii_case(sha256)
        {
            return Err(LoadError::HashMismatch {
                plugin: manifest.name.clone(),
                pinned_by,
                expected: expected.clone(),
                actual: sha256.to_owned(),
            });
        }
    }
    Ok(())
}

/// Refuses a component that imports a gated interface its capabilities do not grant; the
/// error is the link failure's message.
fn check_gated_imports(
    component: &Component,
    engine: &Engine,
    caps: &Capabilities,
) -> Result<(), String> {
    for (import, _) in component.component_type().imports(engine) {
        for (prefix, needs) in GATED_IMPORTS {
            let granted = match prefix {
                "streamhost:plugin/kv@" => caps.kv,
                "streamhost:plugin/push@" => !caps.push.is_empty(),
                "wasi:http/" => !caps.http.is_empty(),
                _ => !caps.read_rows.is_empty(),
            };
            if import.starts_with(prefix) && !granted {
                return Err(format!(
                    "the component imports {import}, which needs {needs} in plugin.toml and the grant"
                ));
            }
        }
    }
    Ok(())
}

/// Where a component's exports are, by the `streamhost:plugin` version it was built against.
#[derive(Clone)]
pub(crate) enum ExportIndices {
    /// A 0.1.0 component: `handler@0.1.0`.
    V1(handler_v1::GuestIndices),
    /// A 0.2.0 component: `handler@0.2.0`, and `authorizer@0.2.0` if it exports one.
    V2 {
        handler: handler_v2::GuestIndices,
        authorizer: Option<authorizer_v2::GuestIndices>,
    },
    /// A 0.3.0 component: `handler@0.3.0`, and `authorizer@0.3.0` if it exports one.
    V3 {
        handler: handler_v3::GuestIndices,
        authorizer: Option<authorizer_v3::GuestIndices>,
    },
    /// A 0.4.0 component: `handler@0.4.0`, and `authorizer@0.4.0` if it exports one.
    V4 {
        handler: handler_v4::GuestIndices,
        authorizer: Option<authorizer::GuestIndices>,
    },
}

impl ExportIndices {
    /// Finds the exports in `pre`'s component; an error says which `handler` it lacks.
    fn new(pre: &InstancePre<PluginState>) -> Result<ExportIndices, String> {
        if let Ok(handler) = handler_v4::GuestIndices::new(pre) {
            let authorizer = authorizer::GuestIndices::new(pre).ok();
            return Ok(ExportIndices::V4 {
                handler,
                authorizer,
            });
        }
        if let Ok(handler) = handler_v3::GuestIndices::new(pre) {
            let authorizer = authorizer_v3::GuestIndices::new(pre).ok();
            return Ok(ExportIndices::V3 {
                handler,
                authorizer,
            });
        }
        if let Ok(handler) = handler_v2::GuestIndices::new(pre) {
            let authorizer = authorizer_v2::GuestIndices::new(pre).ok();
            return Ok(ExportIndices::V2 {
                handler,
                authorizer,
            });
        }
        handler_v1::GuestIndices::new(pre)
            .map(ExportIndices::V1)
            .map_err(|_| {
                format!(
                    "the component exports no streamhost:plugin/handler of a version this host \
                     speaks ({})",
                    VERSIONS.join(", ")
                )
            })
    }
}

/// A linker with WASI (whose context grants only clocks, random and a granted folder),
/// `wasi:http` when `caps` grants `http` targets, and exactly the Streamhost interfaces
/// `caps` grants, under the names of every version in
/// [`VERSIONS`]: 0.4.0's through `bindgen!`, the earlier ones onto the same functions
/// (`crate::host::earlier`).
fn linker(engine: &Engine, caps: &Capabilities) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    for version in VERSIONS {
        crate::host::log::add_to_linker(&mut linker, version)?;
        crate::host::counters::add_to_linker(&mut linker, version)?;
    }
    fields::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    clock::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    for version in EARLIER_VERSIONS {
        earlier::add_clock(&mut linker, version)?;
    }
    if caps.kv {
        for version in VERSIONS {
            crate::host::kv::add_to_linker(&mut linker, version)?;
        }
    }
    if !caps.read_rows.is_empty() {
        rows::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        for version in EARLIER_VERSIONS {
            earlier::add_rows(&mut linker, version)?;
        }
    }
    if !caps.push.is_empty() {
        // `push` is new in 0.2.0.
        for version in &VERSIONS[1..] {
            crate::host::push::add_to_linker(&mut linker, version)?;
        }
    }
    if !caps.http.is_empty() {
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
    }
    Ok(linker)
}
