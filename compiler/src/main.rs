//! The `sovc` binary: parses the command line and reports errors as one paragraph with a non-zero exit.

use clap::Parser;

fn main() {
    let cli = sovc_compiler::cli::Cli::parse();
    if let Err(e) = sovc_compiler::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
