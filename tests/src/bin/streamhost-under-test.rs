//! The `streamhost` binary, built inside the test package so process tests can spawn it via
//! `CARGO_BIN_EXE_streamhost-under-test`; it is `host/cli/src/main.rs` line for line.

/// The same allocator as the real binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    streamhost_cli::main()
}
