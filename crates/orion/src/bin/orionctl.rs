//! `orionctl`: operate Orion instances over MQTT (see `orionctl --help`).

use std::process::ExitCode;

use clap::Parser as _;

/// A closed pipe (`orionctl --json status | head`) ends orionctl quietly, as
/// it does any command-line tool, instead of a panic in `println!`.
#[allow(unsafe_code)]
fn quiet_on_closed_pipe() {
    // SAFETY: signal(2) resets SIGPIPE to its default action; called first in
    // `main`, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = orion::ctl::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orionctl: cannot start the async runtime: {e}");
            return ExitCode::from(orion::ctl::EXIT_UNREACHABLE);
        }
    };
    ExitCode::from(runtime.block_on(orion::ctl::run(cli)))
}
