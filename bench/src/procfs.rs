//! The server's own account of what it spent, read from `/proc`, so that no
//! figure depends on how fast or slow the client is.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// One process: the server under test, or the generator itself.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    pub pid: u32,
    /// Kernel clock ticks per second, the unit of `utime` and `stime`.
    ticks_per_sec: u64,
    /// The store the server keeps its state in, when that is a process of
    /// its own (redis-server): its CPU and memory are the server's cost too.
    backend: Option<u32>,
}

impl Process {
    pub fn new(pid: u32) -> Result<Self> {
        let server = Self {
            pid,
            ticks_per_sec: clock_ticks_per_sec(),
            backend: None,
        };
        server.cpu().context("the server process is not readable")?;
        Ok(server)
    }

    /// The server, with the process of the store it keeps its state in.
    pub fn with_backend(pid: u32, backend: Option<u32>) -> Result<Self> {
        let mut server = Self::new(pid)?;
        if let Some(backend) = backend {
            server.backend = Some(Self::new(backend).context("the backend process")?.pid);
        }
        Ok(server)
    }

    /// The backend process, if the server has one.
    pub fn backend(&self) -> Option<Process> {
        self.backend.map(|pid| Self {
            pid,
            ticks_per_sec: self.ticks_per_sec,
            backend: None,
        })
    }

    /// User plus system CPU time of every thread of the process so far.
    pub fn cpu(&self) -> Result<Duration> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The command name may hold spaces and parentheses: count fields
        // from the last `)`. utime and stime are fields 14 and 15 of the
        // line, the 12th and 13th after the name.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("no `)` in /proc/PID/stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |index: usize| -> Result<u64> {
            fields
                .get(index)
                .context("/proc/PID/stat is too short")?
                .parse()
                .context("a non-numeric CPU time in /proc/PID/stat")
        };
        let ticks = field(11)? + field(12)?;
        Ok(Duration::from_micros(
            ticks * 1_000_000 / self.ticks_per_sec,
        ))
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        for line in status.lines() {
            if let Some(value) = line.strip_prefix("VmRSS:") {
                let kib = value.trim().trim_end_matches("kB").trim();
                return kib.parse().context("VmRSS is not a number");
            }
        }
        bail!("no VmRSS in {path}")
    }

    pub fn is_alive(&self) -> bool {
        std::path::Path::new(&format!("/proc/{}/stat", self.pid)).exists()
    }
}

/// `getconf CLK_TCK`; Linux reports 100 on every architecture it runs this
/// benchmark on, which is the fallback.
fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = Process::new(std::process::id()).unwrap();
        assert!(me.rss_kib().unwrap() > 0);
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        assert!(me.cpu().unwrap() > Duration::ZERO);
    }
}
