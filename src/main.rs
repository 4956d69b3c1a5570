//! The `signalpost` binary: reads the configuration, starts logging, binds,
//! and serves until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use signalpost::Config;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// mimalloc instead of the system allocator: the server allocates and frees
/// small buffers for every request and event, and glibc's arenas spent a
/// tenth of the relay's CPU time in `malloc` and kept growing and trimming
/// the heap (`mprotect`) under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connections the kernel may queue before they are accepted. The default
/// (1024) overflowed when a thousand clients joined at once, and the
/// dropped SYNs came back a second later; the kernel caps it at
/// `net.core.somaxconn` anyway.
const LISTEN_BACKLOG: u32 = 4096;

fn main() -> ExitCode {
    let config = Config::parse();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(cause) => {
            eprintln!("signalpost: cannot start the async runtime: {cause}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

/// One thread per core the process may use. On a single core (a small
/// container, or `taskset -c 0`), the scheduler made for one thread: the
/// work-stealing one would only add synchronization with no other thread
/// to hand work to.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

async fn serve(config: Config) -> ExitCode {
    signalpost::observe::logging::init(config.log_format);
    if let Err(problem) = config.check() {
        error!("{problem}");
        return ExitCode::from(2);
    }
    let listener = match listen(config.listen) {
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

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart must not wait for old
    // connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
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
