//! What waiting for a replica (`WAIT 1`) would cost each signal: starts a
//! primary and its replica on free loopback ports (no persistence), makes a
//! signal's write (an `XADD` of a 200-byte candidate to one inbox) on one
//! connection, alone and each followed by `WAIT 1 1000`, and prints the
//! time per signal at the median and the 99th percentile, twice each,
//! interleaved. The README's figure for failover comes from it:
//!
//! ```text
//! cargo run --release -p signalpost-bench --bin wait-cost -- --writes 5000
//! ```

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// Writes in each of the four runs.
    #[arg(long, default_value_t = 5000)]
    writes: usize,
}

/// A redis-server this program started, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(port: u16, replica_of: Option<u16>) -> Result<Server> {
    let mut command = Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
    command.args(["--save", "", "--appendonly", "no"]);
    if let Some(primary) = replica_of {
        command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("redis-server runs (apt-get install redis-server)")?;
    Ok(Server(child))
}

fn connect(port: u16) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get_connection() {
            Ok(connection) => return Ok(connection),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => return Err(error.into()),
        }
    }
}

/// Median and p99 of one run, in µs per signal.
fn run(connection: &mut redis::Connection, writes: usize, wait: bool) -> Result<(f64, f64)> {
    let candidate = format!(
        "{{\"from\":\"{}\",\"type\":\"candidate\",\"payload\":{{\"candidate\":\"{}\"}}}}",
        "aaaaaaaa-0000-0000-0000-000000000001",
        "candidate:1 1 udp 2122260223 192.168.1.1 54321 typ host generation 0 ufrag abcd"
    );
    let mut times = Vec::with_capacity(writes);
    for _ in 0..writes {
        let started = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg("wait-cost:{room}:i:member")
            .arg("MAXLEN")
            .arg("~")
            .arg(256)
            .arg("*")
            .arg("k")
            .arg("signal")
            .arg("d")
            .arg(&candidate)
            .query(connection)?;
        if wait {
            let acked: i64 = redis::cmd("WAIT").arg(1).arg(1000).query(connection)?;
            if acked != 1 {
                bail!("the replica did not acknowledge within a second");
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[writes / 2], times[writes * 99 / 100]))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.writes == 0 {
        bail!("--writes must be at least 1");
    }
    let (primary_port, replica_port) = (free_port()?, free_port()?);
    let _primary = start(primary_port, None)?;
    let _replica = start(replica_port, Some(primary_port))?;
    let mut connection = connect(primary_port)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut connection)?;
        if info.contains("state=online") {
            break;
        }
        if Instant::now() > deadline {
            bail!("the replica did not come online within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for wait in [false, true, false, true] {
        let (p50, p99) = run(&mut connection, cli.writes, wait)?;
        let label = if wait { "with WAIT 1" } else { "without   " };
        println!("{label}: p50 {p50:.0} µs, p99 {p99:.0} µs per signal");
    }
    Ok(())
}
