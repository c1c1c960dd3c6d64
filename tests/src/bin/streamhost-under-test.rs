//! The `streamhost` binary, built inside the test package so process tests can spawn it via
//! `CARGO_BIN_EXE_streamhost-under-test`; it runs exactly the real binary's code.

fn main() -> std::process::ExitCode {
    streamhost::cli::main()
}
