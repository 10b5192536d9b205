//! The `tocsin` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tocsin_cli::main(tocsin_cli::Cli::parse())
}
