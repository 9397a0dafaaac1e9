//! `oriond`: the Orion daemon.
//!
//! ```text
//! oriond [--config PATH]             run (default config/orion.yaml)
//! oriond validate --config PATH      check a config file and print every problem
//! ```
//!
//! Signals: SIGTERM / SIGINT shut down in order (a second one exits at once);
//! SIGHUP re-reads the config file and, when it is valid, restarts only the
//! cameras it changes, or every component in order when it changes what they
//! share (an invalid file is reported and changes nothing).

use std::path::PathBuf;
use std::process::ExitCode;

use orion::config::{Config, ConfigError};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: oriond [--config PATH]\n       oriond validate [--config PATH]\n\nRuns the Orion sensor daemon (or checks a config file and prints every problem).\nDefault config: config/orion.yaml; relative paths in it are resolved against the\nworking directory. Logging: RUST_LOG (default info).\nSignals: SIGTERM/SIGINT shut down in order; SIGHUP reloads the config file.";

enum Mode {
    Run,
    Validate,
}

fn parse_args() -> Result<(Mode, PathBuf), String> {
    let mut mode = Mode::Run;
    let mut config = PathBuf::from("config/orion.yaml");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "validate" => mode = Mode::Validate,
            "--config" | "-c" => {
                config = args.next().ok_or("--config needs a path")?.into();
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("oriond {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((mode, config))
}

/// `RUST_LOG` over the quiet libraries' levels; a broken `RUST_LOG` is said
/// and the default used.
fn env_filter() -> tracing_subscriber::EnvFilter {
    let asked = std::env::var("RUST_LOG").ok();
    let filter = orion::logging::log_filter(asked.as_deref());
    tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("oriond: RUST_LOG is not a log filter ({e}); logging at info");
        tracing_subscriber::EnvFilter::new(orion::logging::log_filter(None))
    })
}

fn main() -> ExitCode {
    let (mode, path) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("oriond: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Mode::Validate = mode {
        return validate(&path);
    }

    tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        // One line per event, whatever text from outside it carries; no ANSI
        // colours (escape sequences are escaped like any control character).
        .with_writer(orion::logging::EscapedStderr)
        .with_ansi(false)
        .init();

    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code =
        runtime.block_on(async {
            let shutdown = CancellationToken::new();
            if let Err(e) = install_signal_handlers(shutdown.clone()) {
                tracing::error!(error = %e, "cannot install signal handlers");
                return ExitCode::FAILURE;
            }
            let mut hangup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot install the SIGHUP handler");
                        return ExitCode::FAILURE;
                    }
                };
            run_with_reloads(config, &path, shutdown, &mut hangup).await
        });
    // Don't wait for stray blocking tasks; children are killed on drop.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// `oriond validate`: every problem of the config file, or OK.
fn validate(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(_) => {
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            println!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                println!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the daemon; on SIGHUP with a valid config file, applies it: only the
/// cameras it changes restart, unless something they share changed (then
/// everything stops in order and starts again with it).
async fn run_with_reloads(
    mut config: Config,
    path: &std::path::Path,
    shutdown: CancellationToken,
    hangup: &mut tokio::signal::unix::Signal,
) -> ExitCode {
    loop {
        let this_run = shutdown.child_token();
        let mut running = match orion::orchestrator::start(config.clone(), this_run.clone()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("fatal: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let next: Option<Config> = loop {
            tokio::select! {
                _ = this_run.cancelled() => break None,
                _ = hangup.recv() => match Config::load(path) {
                    Ok(c) => match running.reload(c).await {
                        Ok(Ok(())) => tracing::info!(config = %path.display(), "SIGHUP: config is valid; applied to the cameras it changes"),
                        Ok(Err(e)) => tracing::error!("SIGHUP: {e:#}"),
                        Err(c) => {
                            tracing::info!(config = %path.display(), "SIGHUP: config is valid and changes what cameras share; restarting every component with it");
                            this_run.cancel();
                            break Some(*c);
                        }
                    },
                    Err(e) => {
                        // One log line: "invalid: - a - b", not one problem per line.
                        let text = e.to_string();
                        let why = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
                        tracing::error!("SIGHUP: {why}; the running config stays");
                    }
                },
            }
        };
        let report = running.stop().await;
        let code = if report.late.is_empty() {
            tracing::info!(
                took_ms = report.took.as_millis() as u64,
                "shutdown complete"
            );
            ExitCode::SUCCESS
        } else {
            tracing::error!(late = ?report.late, took_ms = report.took.as_millis() as u64, "shutdown deadline missed");
            ExitCode::FAILURE
        };
        match next {
            Some(c) if !shutdown.is_cancelled() => {
                tracing::info!("config reloaded; starting again");
                config = c;
            }
            _ => return code,
        }
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
fn install_signal_handlers(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        for n in 0.. {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if n == 0 {
                tracing::info!(signal = name, "shutdown requested");
                shutdown.cancel();
            } else {
                tracing::warn!(signal = name, "second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
