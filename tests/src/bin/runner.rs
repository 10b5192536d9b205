//! The runner process for tests: the same entry point `tocsin runner` calls, in a binary
//! integration tests can locate (`CARGO_BIN_EXE_tocsin-test-runner`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tocsin_worker::runner_main()
}
