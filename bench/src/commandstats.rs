//! Redis's own account of the time its commands took (`INFO
//! commandstats`), summed over every primary: the figure the scale-out
//! issue states Redis's cost in (its functions' time per call, times the
//! calls per signal, to which the plain commands a signal also takes now
//! add). It leaves out what `/proc` counts besides: the event
//! loop, reading and writing the sockets, and on loopback the kernel's
//! delivery of each reply to the node, which at a paced 2 000 calls a
//! second costs Redis about as much as a `PING` does.
//!
//! A function's time includes the commands it calls, which Redis counts
//! again under their own names; so functions and scripts are summed apart
//! from the other commands, whose count includes those calls.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Calls and microseconds so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub calls: u64,
    pub usec: u64,
}

impl Count {
    fn since(self, before: Count) -> Count {
        Count {
            calls: self.calls.saturating_sub(before.calls),
            usec: self.usec.saturating_sub(before.usec),
        }
    }

    fn add(&mut self, other: Count) {
        self.calls += other.calls;
        self.usec += other.usec;
    }
}

/// Functions and scripts (`FCALL`, `EVALSHA`, ...), and every other
/// command, whether a client or a function called it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub scripts: Count,
    pub commands: Count,
}

impl Totals {
    pub fn since(self, before: Totals) -> Totals {
        Totals {
            scripts: self.scripts.since(before.scripts),
            commands: self.commands.since(before.commands),
        }
    }
}

const SCRIPTS: [&str; 6] = [
    "fcall",
    "fcall_ro",
    "eval",
    "eval_ro",
    "evalsha",
    "evalsha_ro",
];

/// Reads every address's commandstats, in the order given.
pub async fn read_all(addrs: &[SocketAddr]) -> Result<Vec<Totals>> {
    let mut each = Vec::with_capacity(addrs.len());
    for addr in addrs {
        each.push(
            read(*addr)
                .await
                .with_context(|| format!("INFO commandstats of {addr}"))?,
        );
    }
    Ok(each)
}

/// The primaries' counts summed.
pub fn sum(each: &[Totals]) -> Totals {
    let mut sum = Totals::default();
    for one in each {
        sum.scripts.add(one.scripts);
        sum.commands.add(one.commands);
    }
    sum
}

/// Each primary's share of all the calls, in percent: the target's
/// measure of whether a Cluster spreads the load. A function's own
/// commands count as calls too, alike on every primary.
pub fn shares(each: &[Totals]) -> Vec<f64> {
    let calls = |one: &Totals| (one.scripts.calls + one.commands.calls) as f64;
    let all: f64 = each.iter().map(calls).sum();
    each.iter()
        .map(|one| {
            if all > 0.0 {
                calls(one) * 100.0 / all
            } else {
                0.0
            }
        })
        .collect()
}

/// Longest answer taken: commandstats is a line per command ever called.
const REPLY_MAX: usize = 1 << 20;

async fn read(addr: SocketAddr) -> Result<Totals> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .await?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the connection closed mid-answer");
        }
        reply.extend_from_slice(&chunk[..n]);
        if let Some(body) = bulk(&reply)? {
            return Ok(parse(body));
        }
        if reply.len() > REPLY_MAX {
            bail!("an answer of more than {REPLY_MAX} bytes");
        }
    }
}

/// The bulk string's text once it has all come, `None` before.
fn bulk(reply: &[u8]) -> Result<Option<&str>> {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&reply[..end])?;
    let Some(len) = head.strip_prefix('$') else {
        bail!("not a bulk string: {head}");
    };
    let len: usize = len.parse().context("the bulk string's length")?;
    let body = end + 2;
    if reply.len() < body + len {
        return Ok(None);
    }
    Ok(Some(std::str::from_utf8(&reply[body..body + len])?))
}

/// Lines such as `cmdstat_fcall:calls=12,usec=340,usec_per_call=28.33,...`.
fn parse(text: &str) -> Totals {
    let mut sum = Totals::default();
    for line in text.lines() {
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|line| line.split_once(':'))
        else {
            continue;
        };
        let mut count = Count::default();
        for field in fields.split(',') {
            match field.split_once('=') {
                Some(("calls", n)) => count.calls = n.parse().unwrap_or(0),
                Some(("usec", n)) => count.usec = n.parse().unwrap_or(0),
                _ => {}
            }
        }
        if SCRIPTS.contains(&name) {
            sum.scripts.add(count);
        } else {
            sum.commands.add(count);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_summed_apart_from_other_commands() {
        let text = "# Commandstats\r\ncmdstat_fcall:calls=10,usec=300,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\ncmdstat_get:calls=5,usec=7,usec_per_call=1.40,rejected_calls=0,failed_calls=0\r\ncmdstat_hget:calls=2,usec=1,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\n";
        let reply = format!("${}\r\n{text}\r\n", text.len());
        let totals = parse(bulk(reply.as_bytes()).unwrap().unwrap());
        assert_eq!(
            totals.scripts,
            Count {
                calls: 10,
                usec: 300
            }
        );
        assert_eq!(totals.commands, Count { calls: 7, usec: 8 });
    }

    #[test]
    fn shares_are_of_every_call_on_every_primary() {
        let one = |scripts: u64, commands: u64| Totals {
            scripts: Count {
                calls: scripts,
                usec: 0,
            },
            commands: Count {
                calls: commands,
                usec: 0,
            },
        };
        let each = [one(10, 40), one(0, 25), one(5, 20)];
        assert_eq!(shares(&each), vec![50.0, 25.0, 25.0]);
        assert_eq!(sum(&each).commands.calls, 85);
        assert_eq!(shares(&[one(0, 0)]), vec![0.0]);
    }

    #[test]
    fn a_partial_answer_waits_for_the_rest() {
        assert!(bulk(b"$100\r\ncmdstat_").unwrap().is_none());
        assert!(bulk(b"$10").unwrap().is_none());
    }
}
