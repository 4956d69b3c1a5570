//! The `signalpost` binary: reads the configuration, starts logging, binds,
//! and serves until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use signalpost::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::error;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if let Err(problem) = config.check() {
        error!("{problem}");
        return ExitCode::from(2);
    }
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(cause) => {
            error!(addr = %config.listen, %cause, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match signalpost::run(listener, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(cause) => {
            error!(%cause, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    shutdown.cancel();
}
