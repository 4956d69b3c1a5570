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

/// Reads every address's commandstats and sums them.
pub async fn read_all(addrs: &[SocketAddr]) -> Result<Totals> {
    let mut sum = Totals::default();
    for addr in addrs {
        let one = read(*addr)
            .await
            .with_context(|| format!("INFO commandstats of {addr}"))?;
        sum.scripts.add(one.scripts);
        sum.commands.add(one.commands);
    }
    Ok(sum)
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
    fn a_partial_answer_waits_for_the_rest() {
        assert!(bulk(b"$100\r\ncmdstat_").unwrap().is_none());
        assert!(bulk(b"$10").unwrap().is_none());
    }
}
