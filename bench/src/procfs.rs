//! The server's own account of what it spent, read from `/proc`, so that no
//! figure depends on how fast or slow the client is.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The server under test (its nodes, one or more, counted together), or
/// the generator itself.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    pids: Pids,
    /// Kernel clock ticks per second, the unit of `utime` and `stime`.
    ticks_per_sec: u64,
    /// The store the nodes keep their state in, when that is processes of
    /// its own (redis-server, one or a Cluster's): its CPU and memory are
    /// the service's cost too.
    backend: Pids,
}

/// Up to `Pids::MAX` process ids, kept inline so that a `Process` is `Copy`.
#[derive(Debug, Clone, Copy, Default)]
struct Pids {
    ids: [u32; Pids::MAX],
    len: usize,
}

impl Pids {
    const MAX: usize = 8;

    fn new(pids: &[u32]) -> Result<Self> {
        if pids.len() > Self::MAX {
            bail!("at most {} processes are measured together", Self::MAX);
        }
        let mut ids = [0; Self::MAX];
        ids[..pids.len()].copy_from_slice(pids);
        Ok(Self {
            ids,
            len: pids.len(),
        })
    }

    fn iter(&self) -> impl Iterator<Item = &u32> {
        self.ids[..self.len].iter()
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Process {
    pub fn new(pid: u32) -> Result<Self> {
        Self::group(&[pid])
    }

    /// Several processes counted as one: their CPU and memory summed.
    fn group(pids: &[u32]) -> Result<Self> {
        if pids.is_empty() {
            bail!("no process to measure");
        }
        let server = Self {
            pids: Pids::new(pids)?,
            ticks_per_sec: clock_ticks_per_sec(),
            backend: Pids::default(),
        };
        server.cpu().context("the server process is not readable")?;
        Ok(server)
    }

    /// The server's nodes, with the processes of the store they keep their
    /// state in.
    pub fn with_backend(pids: &[u32], backend: &[u32]) -> Result<Self> {
        let mut server = Self::group(pids)?;
        if !backend.is_empty() {
            server.backend = Self::group(backend).context("the backend process")?.pids;
        }
        Ok(server)
    }

    /// The backend processes, if the server has any.
    pub fn backend(&self) -> Option<Process> {
        (!self.backend.is_empty()).then_some(Self {
            pids: self.backend,
            ticks_per_sec: self.ticks_per_sec,
            backend: Pids::default(),
        })
    }

    /// User plus system CPU time of every thread of the processes so far.
    pub fn cpu(&self) -> Result<Duration> {
        let mut total = Duration::ZERO;
        for pid in self.pids.iter() {
            total += self.cpu_of(*pid)?;
        }
        Ok(total)
    }

    fn cpu_of(&self, pid: u32) -> Result<Duration> {
        let path = format!("/proc/{pid}/stat");
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

    /// Resident memory in KiB (`VmRSS` of `/proc/PID/status`), summed.
    pub fn rss_kib(&self) -> Result<u64> {
        let mut total = 0;
        for pid in self.pids.iter() {
            total += rss_kib_of(*pid)?;
        }
        Ok(total)
    }

    pub fn is_alive(&self) -> bool {
        self.pids
            .iter()
            .all(|pid| std::path::Path::new(&format!("/proc/{pid}/stat")).exists())
    }
}

fn rss_kib_of(pid: u32) -> Result<u64> {
    {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        for line in status.lines() {
            if let Some(value) = line.strip_prefix("VmRSS:") {
                let kib = value.trim().trim_end_matches("kB").trim();
                return kib.parse().context("VmRSS is not a number");
            }
        }
        bail!("no VmRSS in {path}")
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
