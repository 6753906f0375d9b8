//! The `redeploy` binary: parse the command line, run, map errors to exit codes.

use clap::Parser as _;
use redeploy_host::cli::{exit_code, Cli};

fn main() {
    let cli = Cli::parse();
    if let Err(err) = cli.run() {
        eprintln!("redeploy: {err:#}");
        std::process::exit(exit_code(&err));
    }
}
