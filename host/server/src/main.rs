//! The `streamhost` binary; everything lives in the library (`streamhost::cli`).

fn main() -> std::process::ExitCode {
    streamhost::cli::main()
}
