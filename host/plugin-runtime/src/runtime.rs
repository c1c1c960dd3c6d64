//! [`Runtime`]: the one wasmtime `Engine` of a process (pooling allocator, epoch
//! interruption, stack limit), its epoch ticker thread and its compile cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

use crate::cache::CompileCache;
use crate::limits::EPOCH_TICK;
use crate::outbound::HttpBackend;
use crate::push::Destinations;

/// Engine-wide settings (per-plugin limits are in [`crate::Limits`]).
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Wasm stack per call. wasmtime sets it per engine, so it is one value for all plugins.
    pub max_wasm_stack: usize,
    /// Component instances the pooling allocator keeps slots for (each plugin uses one, two
    /// while it reloads, plus one per `describe` at load).
    pub pool_instances: u32,
    /// The largest memory budget any plugin may be granted, in MiB (the pool's slot size).
    pub max_plugin_memory_mib: u64,
    /// The operator's destinations, for the `push` and `wasi:http` imports.
    pub destinations: Destinations,
    /// What answers plugins' outbound HTTP requests once admitted: the network, or fixtures
    /// (`streamhost plugin run --http-fixtures`).
    pub http_backend: HttpBackend,
    /// Write `/tmp/perf-<pid>.map` as plugins are compiled or loaded, so that `perf report`
    /// names their functions instead of showing bare addresses.
    pub perf_map: bool,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: None,
            max_wasm_stack: 512 * 1024,
            pool_instances: 32,
            max_plugin_memory_mib: 1024,
            destinations: Destinations::default(),
            http_backend: HttpBackend::default(),
            perf_map: false,
        }
    }
}

/// The engine and what runs beside it. Dropping it stops the ticker.
pub struct Runtime {
    engine: Engine,
    cache: Option<CompileCache>,
    config: RuntimeConfig,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        let n = config.pool_instances.max(1);
        let max_memory = usize::try_from(config.max_plugin_memory_mib.saturating_mul(1 << 20))?;
        // Componentized Python links about a dozen core modules with several memories and
        // tables; these per-component maxima fit the components of all four guest languages
        // measured when the runtime was chosen (Rust, C, Python, JavaScript).
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 4)
            .total_tables(n * 8)
            .max_memory_size(max_memory)
            .max_core_instances_per_component(50)
            .max_memories_per_component(10)
            .max_tables_per_component(20)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            // Plugins are called synchronously, so the pool's async stacks are never used; the
            // default of 1,000 costs 1,000 guard-page mappings per engine, and a test process
            // running dozens of readers then hits vm.max_map_count ("failed to protect stack
            // guard page").
            .total_stacks(n);
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if config.perf_map {
            wasm.profiler(ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm).map_err(anyhow::Error::from)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::new(dir, &engine)?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("streamhost-epoch".into())
                .spawn(move || {
                    // Count ticks by the clock, not by wake-ups: a sleep of 1 ms takes a little
                    // longer, and deadlines are promised in milliseconds.
                    let start = std::time::Instant::now();
                    let mut ticks: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        let due = start.elapsed().as_micros() / EPOCH_TICK.as_micros();
                        while ticks < due {
                            engine.increment_epoch();
                            ticks += 1;
                        }
                    }
                })?
        };
        Ok(Runtime {
            engine,
            cache,
            config,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The settings it was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compiles plugin `plugin`'s `bytes` (hashing to `sha256`), or loads the cached
    /// compilation. Logs (info) when a compile starts and ends, with the plugin's name, the
    /// component's size and the time taken, or that it was loaded from the cache. Slow: call
    /// it off async threads.
    pub fn compile(&self, plugin: &str, bytes: &[u8], sha256: &str) -> anyhow::Result<Component> {
        let compiled = std::cell::Cell::new(false);
        let started = Instant::now();
        let compile = || {
            compiled.set(true);
            tracing::info!(plugin, bytes = bytes.len(), sha256, "compiling plugin");
            let compile_started = Instant::now();
            let component = Component::new(&self.engine, bytes).map_err(anyhow::Error::from)?;
            tracing::info!(
                plugin,
                bytes = bytes.len(),
                ms = compile_started.elapsed().as_millis() as u64,
                "compiled plugin"
            );
            Ok(component)
        };
        let component = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, sha256, compile)?,
            None => compile()?,
        };
        if !compiled.get() {
            tracing::info!(
                plugin,
                bytes = bytes.len(),
                ms = started.elapsed().as_millis() as u64,
                "compiled plugin loaded from cache"
            );
        }
        Ok(component)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
