//! `signalpost-bench`: the load generator of signalpost's benchmark, and
//! the report that turns its runs into a table and a chart.
//!
//! - `run`: one scenario against one running server, one JSON line out.
//! - `report`: the JSON lines of a benchmark → `results.json`,
//!   `results.md` (printed) and `chart.svg`.
//!
//! `bench/run` starts the servers and calls both; see `bench/README.md`.
//!
//! - `peer`, `socketio`: how each server is driven.
//! - `recorder`: stamps, receipts, the HDR histogram.
//! - `procfs`: the server's CPU time and resident memory.
//! - `scenario`: relay, saturate, fanout, idle, join storm.
//! - `report`, `chart`: medians, the markdown table, the SVG.

mod chart;
mod commandstats;
mod http;
mod http1;
mod http2;
mod peer;
mod procfs;
mod recorder;
mod report;
mod scenario;
mod socketio;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::peer::{Ctx, PeerKind};
use crate::recorder::Recorder;
use crate::scenario::{Run, Scenario, Sizes};
use crate::tls::Transport;

#[derive(Parser)]
#[command(
    name = "signalpost-bench",
    about = "Load generator and report of signalpost's benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario against one running server; print the run as one JSON line.
    Run {
        #[arg(long, value_enum)]
        peer: PeerKind,
        /// The server's address; only loopback addresses are accepted.
        /// Several (comma-separated): the nodes of one service, each member
        /// joining through the next, so that a room's members sit on
        /// different nodes.
        #[arg(long, required = true, value_delimiter = ',')]
        addr: Vec<SocketAddr>,
        /// The server's process id (each node's), for its CPU time and memory.
        #[arg(long, required = true, value_delimiter = ',')]
        pid: Vec<u32>,
        /// The process ids of the store the server keeps its state in
        /// (redis-server, or each primary of a Cluster), whose CPU time and
        /// memory are measured too.
        #[arg(long, value_delimiter = ',')]
        backend_pid: Vec<u32>,
        /// The store's addresses (redis-server, or each primary of a
        /// Cluster), for the time its commands took (`INFO commandstats`);
        /// only loopback addresses are accepted.
        #[arg(long, value_delimiter = ',')]
        backend_addr: Vec<SocketAddr>,
        /// The name the run is reported under, when not the peer's own
        /// (`signalpost-redis-x3` for three nodes of `signalpost-redis`).
        #[arg(long)]
        label: Option<String>,
        /// The certificate the server presents, in PEM, trusted by the
        /// generator: needed by the peers reached over TLS.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, value_enum)]
        scenario: Scenario,
        /// Which repetition this is, recorded in the run.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Tiny sizes: checks that the peer works, in seconds.
        #[arg(long)]
        smoke: bool,
        /// Measure for this many seconds instead of the scenario's own window
        /// (relay and fanout): a longer smoke run to profile the server under
        /// valgrind, where the joins would otherwise weigh as much as the signals.
        #[arg(long)]
        measure_secs: Option<f64>,
        /// Offer the relay this many signals/s instead of the scenario's
        /// own rate: a profile of the server near the rate it saturates at.
        #[arg(long)]
        relay_rate: Option<f64>,
        /// Exit 3 when anything offered was not delivered (smoke checks).
        #[arg(long)]
        strict: bool,
        /// Hard limit on the whole run, in seconds.
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
    /// Turn the JSON lines of `run` into results.json, results.md and chart.svg.
    Report {
        /// The file of JSON lines that `run` printed.
        #[arg(long)]
        runs: PathBuf,
        /// Where to write the three files.
        #[arg(long)]
        out: PathBuf,
        /// The sizes were those of `--smoke`.
        #[arg(long)]
        smoke: bool,
        /// A line for the notes under the table (repeatable).
        #[arg(long)]
        note: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            peer,
            addr,
            pid,
            backend_pid,
            backend_addr,
            label,
            ca,
            scenario,
            repeat,
            smoke,
            measure_secs,
            relay_rate,
            strict,
            max_secs,
        } => {
            if let Some(addr) = addr
                .iter()
                .chain(&backend_addr)
                .find(|addr| !addr.ip().is_loopback())
            {
                eprintln!("signalpost-bench: only loopback targets are allowed, not {addr}");
                return ExitCode::from(2);
            }
            // Whatever hangs, the process ends: every reader loop is bounded by it.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(max_secs));
                eprintln!("signalpost-bench: the run took longer than {max_secs} s; giving up");
                std::process::exit(124);
            });
            let mut sizes = if smoke { Sizes::smoke() } else { Sizes::full() };
            if let Some(secs) = measure_secs {
                sizes.measure_secs = secs;
            }
            if let Some(rate) = relay_rate {
                sizes.relay_rate = rate;
            }
            // One thread: the generator is pinned to one core, and a
            // multi-threaded runtime would only add hand-offs between threads.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts");
            let mut run = runtime.block_on(run_one(
                peer,
                (&addr, &backend_addr),
                (&pid, &backend_pid),
                ca.as_deref(),
                scenario,
                repeat,
                &sizes,
            ));
            if let Some(label) = label {
                run.peer = label;
            }
            println!("{}", serde_json::to_string(&run).expect("a run serializes"));
            if !run.ok {
                eprintln!(
                    "signalpost-bench: {} {} failed: {}",
                    run.peer,
                    scenario.name(),
                    run.failure.as_deref().unwrap_or("?")
                );
                return ExitCode::FAILURE;
            }
            if strict && let Some(problem) = report::loss(&run) {
                eprintln!(
                    "signalpost-bench: {} {}: {problem}",
                    run.peer,
                    scenario.name()
                );
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Command::Report {
            runs,
            out,
            smoke,
            note,
        } => match report::write(&runs, &out, smoke, &note) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("signalpost-bench report: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run_one(
    peer: PeerKind,
    (addrs, backend_addrs): (&[SocketAddr], &[SocketAddr]),
    (pids, backend_pids): (&[u32], &[u32]),
    ca: Option<&std::path::Path>,
    scenario: Scenario,
    repeat: u32,
    sizes: &Sizes,
) -> Run {
    let started = Instant::now();
    let mut run = Run {
        peer: peer.name().to_owned(),
        scenario: scenario.name().to_owned(),
        repeat,
        ..Run::default()
    };
    let transport = match peer.tls() {
        Some(h2) if ca.is_none() => Err(anyhow::anyhow!(
            "{} is reached over TLS{}: give --ca",
            peer.name(),
            if h2 { " (HTTP/2)" } else { "" }
        )),
        Some(h2) => Transport::new(ca, h2),
        None => Ok(Transport::Plain),
    };
    let outcome = match (procfs::Process::with_backend(pids, backend_pids), transport) {
        (Ok(server), Ok(transport)) => {
            let mut ctx = Ctx::new(peer, transport, addrs, Arc::new(Recorder::new()));
            ctx.backend_addrs = backend_addrs.to_vec();
            let ctx = Arc::new(ctx);
            scenario::run(ctx, server, scenario, sizes, &mut run).await
        }
        (Err(error), _) | (_, Err(error)) => Err(error),
    };
    run.wall_secs = started.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => run.ok = true,
        Err(error) => run.failure = Some(format!("{error:#}")),
    }
    run
}
