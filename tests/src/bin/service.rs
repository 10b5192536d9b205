//! The `tocsin` command for the process-level fault tests: the same entry point as the
//! real binary (`tocsin ingest|scheduler|worker|api`, and `tocsin runner` for the worker's
//! runner processes), in a binary integration tests can locate
//! (`CARGO_BIN_EXE_tocsin-test-service`).
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    tocsin_cli::main(tocsin_cli::Cli::parse())
}
