//! `orionctl`: operate Orion instances over MQTT (see `orionctl --help`).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
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
