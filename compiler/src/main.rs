//! The `sovc` binary: parses the command line and reports errors as one paragraph with a non-zero exit.

use clap::Parser;

fn main() {
    // Like other command-line tools, stop quietly when the reader of stdout goes away (`sovc audit | head`)
    // instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = sovc_compiler::cli::Cli::parse();
    if let Err(e) = sovc_compiler::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
