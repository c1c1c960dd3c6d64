//! The `streamhost` binary; everything lives in the library (`streamhost_cli`).

/// mimalloc: the reader's hot path allocates a little per row (batches, buffers), and
/// glibc's allocator measured markedly slower there (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    streamhost_cli::main()
}
