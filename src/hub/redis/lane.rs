//! The appends' own connection to one Redis (or Sentinel's primary; not a
//! Cluster): a signal appended to an inbox whose tail this node knows
//! (`tail`), and the wake-ups it sends to other nodes, are written here as
//! RESP into one buffer, and their replies read by a parser that knows
//! only the five RESP2 kinds these commands answer with.
//!
//! Every other call goes through the `redis` crate's multiplexed
//! connection. For the append, the one call a relayed signal makes, its
//! general machinery cost more than a fifth of the node's whole work:
//! about 11 000 instructions a signal of 51 000, for re-encoding the
//! commands, a channel and a timer per call, and a combinator parser
//! (bench/HISTORY.md, round 19). Here a call is a write into a shared
//! buffer under a lock and a wait for its replies; one task writes what
//! piled up and reads the replies in order, and one timer for the whole
//! connection finds an answer overdue.
//!
//! The lane only ever makes an append cheaper: while it is not connected
//! (starting, Redis away, a URL it cannot serve such as a Unix socket), a
//! call is not sent (`Unsent`) and the append goes through the crate's
//! connection as before. It reconnects by itself; a call whose answer was
//! lost with the connection is `Lost`, as an error of the crate's
//! connection is.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tracing::debug;

/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How often the task looks for an overdue answer, and after how many
/// looks an answer is overdue: about two seconds, as the crate's
/// connection's response timeout.
const TICK: Duration = Duration::from_millis(250);
const OVERDUE_TICKS: u64 = 8;

/// Pause between connection attempts while Redis is away.
const RETRY: Duration = Duration::from_millis(200);

/// Bytes of replies read but not yet whole past which the connection is
/// broken: nothing these commands answer comes near it.
const REPLY_MAX: usize = 4 << 20;

/// Capacity a buffer keeps once emptied: a burst of large signals does
/// not hold its memory for good.
const KEPT_MAX: usize = 1 << 20;

/// Nesting of arrays a reply may have; these commands answer flat arrays.
const DEPTH_MAX: usize = 2;

/// One reply, as far as these commands need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// `+…`
    Status,
    /// `-…`: the command was refused.
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    Array(Vec<Reply>),
}

/// Why a call has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoAnswer {
    /// Not written: the lane was not connected, or its connection broke
    /// before the call's turn to be written came. Another connection may
    /// take it.
    Unsent,
    /// The connection broke or the answer was overdue after the call was
    /// queued: Redis may or may not have run it.
    Lost,
}

/// A handle on the lane; dropping it ends its task.
pub(super) struct Lane {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Calls were queued, or the lane was dropped.
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    /// Connected: calls are taken.
    up: bool,
    closed: bool,
    /// The commands of the calls queued since the task last wrote.
    out: Vec<u8>,
    calls: Vec<Waiting>,
}

/// A call whose replies are awaited, in the order it was written.
struct Waiting {
    replies: usize,
    /// Dropped unanswered when the connection broke after it was written.
    answer: oneshot::Sender<Result<Vec<Reply>, NoAnswer>>,
}

/// Where the lane connects, and how it logs in.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl Lane {
    /// A lane to the Redis at `url`, connected when this returns unless
    /// Redis did not answer in time (then it connects in the background);
    /// `None` for a URL it does not serve (a Unix socket), whose appends
    /// go through the crate's connection.
    pub(super) async fn open(url: &str) -> Option<Self> {
        let info = url.into_connection_info().ok()?;
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        let target = Target {
            host: host.clone(),
            port: *port,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
        };
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Notify::new(),
        });
        let first = match connect(&target).await {
            Ok(stream) => Some(stream),
            Err(error) => {
                debug!(%error, "the appends' connection to redis failed");
                None
            }
        };
        // Calls are taken at once; the task writes them when it starts.
        shared.set_up(first.is_some());
        tokio::spawn(drive(Arc::clone(&shared), target, first));
        Some(Self { shared })
    }

    /// Sends the commands `write` writes, `replies` of them, and waits for
    /// their replies.
    pub(super) async fn call(
        &self,
        replies: usize,
        write: impl FnOnce(&mut Resp<'_>),
    ) -> Result<Vec<Reply>, NoAnswer> {
        let (answer, answered) = oneshot::channel();
        {
            let mut queue = self.shared.queue();
            if !queue.up {
                return Err(NoAnswer::Unsent);
            }
            write(&mut Resp(&mut queue.out));
            queue.calls.push(Waiting { replies, answer });
            // The task takes the whole queue at once: one wake-up for the
            // first call of a batch is enough.
            if queue.calls.len() == 1 {
                self.shared.wake.notify_one();
            }
        }
        answered.await.unwrap_or(Err(NoAnswer::Lost))
    }

    #[cfg(test)]
    fn is_up(&self) -> bool {
        self.shared.queue().up
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the lane up or down; going down answers every call queued
    /// but not written `Unsent`.
    fn set_up(&self, up: bool) {
        let mut queue = self.queue();
        queue.up = up && !queue.closed;
        if !up {
            queue.out = Vec::new();
            for call in queue.calls.drain(..) {
                // Its caller may have gone: nothing to tell.
                let _ = call.answer.send(Err(NoAnswer::Unsent));
            }
        }
    }
}

/// The lane's task: connects, serves until the connection breaks, and
/// connects again, until the handle is dropped.
async fn drive(shared: Arc<Shared>, target: Target, mut first: Option<TcpStream>) {
    loop {
        if shared.queue().closed {
            return;
        }
        let connected = match first.take() {
            Some(stream) => Ok(stream),
            None => connect(&target).await,
        };
        match connected {
            Ok(stream) => {
                shared.set_up(true);
                let ended = serve(&shared, stream).await;
                shared.set_up(false);
                debug!(?ended, "the appends' connection to redis ended");
            }
            Err(error) => debug!(%error, "the appends' connection to redis failed"),
        }
        if shared.queue().closed {
            return;
        }
        // Woken early only to end.
        let _ = tokio::time::timeout(RETRY, shared.wake.notified()).await;
    }
}

async fn connect(target: &Target) -> std::io::Result<TcpStream> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        // As the crate's connections (`link::tcp_settings`).
        stream.set_nodelay(true)?;
        let mut hello = Vec::new();
        let mut replies = 0;
        if let Some(password) = &target.password {
            let mut resp = Resp(&mut hello);
            match &target.username {
                Some(username) => {
                    resp.command(&[b"AUTH", username.as_bytes(), password.as_bytes()])
                }
                None => resp.command(&[b"AUTH", password.as_bytes()]),
            }
            replies += 1;
        }
        if target.db != 0 {
            let mut digits = itoa::Buffer::new();
            Resp(&mut hello).command(&[b"SELECT", digits.format(target.db).as_bytes()]);
            replies += 1;
        }
        stream.write_all(&hello).await?;
        let mut buffer = Vec::new();
        while replies > 0 {
            if stream.read_buf(&mut buffer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            while replies > 0 {
                match parse(&buffer).map_err(|_| broken("a malformed reply"))? {
                    Some((Reply::Status, used)) => {
                        buffer.drain(..used);
                        replies -= 1;
                    }
                    Some((reply, _)) => {
                        return Err(broken(&format!("refused the login: {reply:?}")));
                    }
                    None => break,
                }
            }
        }
        Ok(stream)
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

fn broken(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned())
}

/// A call under way: its answer, the replies it still waits for, and the
/// tick it was written at.
struct InFlight {
    waiting: Waiting,
    got: Vec<Reply>,
    since: u64,
}

/// Writes what is queued and reads the replies, until the connection
/// breaks, an answer is overdue, or the handle is dropped.
async fn serve(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut read = 0;
    // The queue's buffers swap with these, so that neither is allocated
    // again at every batch.
    let mut out = Vec::new();
    let mut calls = Vec::new();
    let mut ticks = tokio::time::interval(TICK);
    let mut tick = 0u64;
    loop {
        tokio::select! {
            biased;
            received = reader.read_buf(&mut buffer) => {
                if received? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                while let Some((reply, used)) =
                    parse(&buffer[read..]).map_err(|_| broken("a malformed reply"))?
                {
                    read += used;
                    let Some(call) = in_flight.front_mut() else {
                        return Err(broken("a reply nobody asked for"));
                    };
                    call.got.push(reply);
                    if call.got.len() == call.waiting.replies
                        && let Some(call) = in_flight.pop_front()
                    {
                        // Its caller may have gone: nothing to tell.
                        let _ = call.waiting.answer.send(Ok(call.got));
                    }
                }
                if read == buffer.len() {
                    buffer.clear();
                    read = 0;
                    if buffer.capacity() > KEPT_MAX {
                        buffer = Vec::with_capacity(16 << 10);
                    }
                } else if buffer.len() - read > REPLY_MAX {
                    return Err(broken("a reply too long"));
                } else if read > 0 && buffer.capacity() - buffer.len() < 1024 {
                    buffer.drain(..read);
                    read = 0;
                }
                if buffer.capacity() - buffer.len() < 1024 {
                    buffer.reserve(16 << 10);
                }
            }
            () = shared.wake.notified() => {
                {
                    let mut queue = shared.queue();
                    if queue.closed {
                        return Ok(());
                    }
                    std::mem::swap(&mut queue.out, &mut out);
                    std::mem::swap(&mut queue.calls, &mut calls);
                }
                in_flight.extend(calls.drain(..).map(|waiting| InFlight {
                    got: Vec::with_capacity(waiting.replies),
                    waiting,
                    since: tick,
                }));
                writer.write_all(&out).await?;
                out.clear();
                if out.capacity() > KEPT_MAX {
                    out = Vec::new();
                }
            }
            _ = ticks.tick() => {
                tick += 1;
                if in_flight.front().is_some_and(|call| tick - call.since > OVERDUE_TICKS) {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
            }
        }
    }
}

/// Writes commands in RESP into a call's buffer.
pub(super) struct Resp<'a>(&'a mut Vec<u8>);

impl<'a> Resp<'a> {
    #[cfg(test)]
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        Self(out)
    }

    /// A command of `args` arguments; each follows with `arg` or `parts`.
    pub(super) fn start(&mut self, args: usize) {
        self.header(b'*', args);
    }

    pub(super) fn arg(&mut self, arg: &[u8]) {
        self.parts(&[arg]);
    }

    /// One argument written from the parts it is kept in.
    pub(super) fn parts(&mut self, parts: &[&[u8]]) {
        let length = parts.iter().map(|part| part.len()).sum();
        self.0.reserve(length + 24);
        self.header(b'$', length);
        for part in parts {
            self.0.extend_from_slice(part);
        }
        self.0.extend_from_slice(b"\r\n");
    }

    /// What a caller wrote in RESP itself: the parts of commands that are
    /// always the same, written at once (`tail::Append::write`).
    pub(super) fn raw(&mut self, resp: &[u8]) {
        self.0.extend_from_slice(resp);
    }

    pub(super) fn command(&mut self, args: &[&[u8]]) {
        self.start(args.len());
        for arg in args {
            self.arg(arg);
        }
    }

    fn header(&mut self, kind: u8, length: usize) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(length).as_bytes();
        // One write of the whole line: three cost more than the line.
        let mut line = [0; 1 + 20 + 2];
        line[0] = kind;
        line[1..1 + digits.len()].copy_from_slice(digits);
        line[1 + digits.len()..3 + digits.len()].copy_from_slice(b"\r\n");
        self.0.extend_from_slice(&line[..3 + digits.len()]);
    }
}

/// The input is not RESP2 as these commands answer.
#[derive(Debug, PartialEq, Eq)]
struct Malformed;

/// The first whole reply in `input` and the bytes it took, or `None` when
/// more must be read first.
fn parse(input: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    parse_at(input, 0)
}

fn parse_at(input: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, Malformed> {
    let Some(end) = memchr::memchr(b'\n', input) else {
        return Ok(None);
    };
    let Some((&kind, line)) = input[..end]
        .strip_suffix(b"\r")
        .and_then(<[u8]>::split_first)
    else {
        return Err(Malformed);
    };
    let after = end + 1;
    let reply = match kind {
        b'+' => Reply::Status,
        b'-' => Reply::Error(String::from_utf8_lossy(line).into_owned()),
        b':' => Reply::Int(number(line)?),
        b'$' => {
            let Ok(length) = usize::try_from(number(line)?) else {
                return Ok(Some((Reply::Nil, after)));
            };
            let end = after.checked_add(length).ok_or(Malformed)? + 2;
            let Some(data) = input.get(after..end) else {
                return Ok(None);
            };
            if !data.ends_with(b"\r\n") {
                return Err(Malformed);
            }
            return Ok(Some((Reply::Bulk(data[..length].to_vec()), end)));
        }
        b'*' => {
            let Ok(count) = usize::try_from(number(line)?) else {
                return Ok(Some((Reply::Nil, after)));
            };
            if depth >= DEPTH_MAX {
                return Err(Malformed);
            }
            // Each element takes three bytes at least: no count the input
            // cannot hold reserves memory.
            let mut items = Vec::with_capacity(count.min(input.len() / 3));
            let mut used = after;
            for _ in 0..count {
                let Some((item, took)) = parse_at(&input[used..], depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                used += took;
            }
            return Ok(Some((Reply::Array(items), used)));
        }
        _ => return Err(Malformed),
    };
    Ok(Some((reply, after)))
}

/// A RESP integer: an optional `-` and at most 18 digits, which no length
/// or count these commands answer comes near.
fn number(line: &[u8]) -> Result<i64, Malformed> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(Malformed);
    }
    let mut value = 0i64;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(Malformed);
        }
        value = value * 10 + i64::from(digit - b'0');
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Resp<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut Resp(&mut out));
        out
    }

    #[test]
    fn commands_are_written_as_resp_arrays_of_bulk_strings() {
        let out = written(|resp| {
            resp.start(3);
            resp.arg(b"XADD");
            resp.parts(&[b"{\"a\":", b"1}"]);
            resp.arg(b"");
        });
        assert_eq!(out, b"*3\r\n$4\r\nXADD\r\n$7\r\n{\"a\":1}\r\n$0\r\n\r\n");
    }

    #[test]
    fn each_kind_of_reply_is_read() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Reply::Status, 5))));
        assert_eq!(
            parse(b"-ERR The ID is too small\r\n"),
            Ok(Some((Reply::Error("ERR The ID is too small".into()), 26)))
        );
        assert_eq!(parse(b":-12\r\n"), Ok(Some((Reply::Int(-12), 6))));
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(
            parse(b"$5\r\n0-1\r\n\r\n+OK"),
            Ok(Some((Reply::Bulk(b"0-1\r\n".to_vec()), 11))),
            "a bulk string is read by its length, whatever it holds"
        );
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n$0\r\n\r\n"),
            Ok(Some((
                Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Bulk(Vec::new())]),
                17
            )))
        );
        assert_eq!(parse(b"*0\r\n"), Ok(Some((Reply::Array(Vec::new()), 4))));
    }

    #[test]
    fn a_reply_cut_short_waits_for_the_rest() {
        let whole = b"*2\r\n$3\r\nabc\r\n:7\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse(whole), Ok(Some((Reply::Array(_), 17)))));
    }

    #[test]
    fn what_is_not_resp2_breaks_the_connection() {
        for input in [
            &b"?\r\n"[..],
            b"\r\n",
            b":x\r\n",
            b"$3\r\nabcd\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b":1\n",
            b":\r\n",
            b":1234567890123456789\r\n",
            // RESP3's kinds: the lane speaks RESP2.
            b"%1\r\n",
            b"_\r\n",
        ] {
            assert_eq!(parse(input), Err(Malformed), "{input:?}");
        }
    }

    #[tokio::test]
    async fn calls_are_answered_in_the_order_they_were_written_until_the_connection_breaks() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let redis = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("the lane connects");
            let expected = written(|resp| {
                resp.command(&[b"PING"]);
                resp.command(&[b"GET", b"k"]);
                resp.command(&[b"INCR", b"n"]);
            });
            let mut received = Vec::new();
            while received.len() < expected.len() {
                assert!(socket.read_buf(&mut received).await.expect("a read") > 0);
            }
            assert_eq!(received, expected, "both calls, in the order they came");
            // The second call's first reply cut in two.
            socket
                .write_all(b"+PONG\r\n$3\r\nab")
                .await
                .expect("a write");
            socket.flush().await.expect("a flush");
            tokio::task::yield_now().await;
            socket.write_all(b"c\r\n:5\r\n").await.expect("a write");
            // The next call is read and never answered.
            let mut next = Vec::new();
            assert!(socket.read_buf(&mut next).await.expect("a read") > 0);
        });
        let lane = Lane::open(&format!("redis://127.0.0.1:{port}"))
            .await
            .expect("a TCP URL");
        let (ping, pair) = tokio::join!(
            lane.call(1, |resp| resp.command(&[b"PING"])),
            lane.call(2, |resp| {
                resp.command(&[b"GET", b"k"]);
                resp.command(&[b"INCR", b"n"]);
            }),
        );
        assert_eq!(ping, Ok(vec![Reply::Status]));
        assert_eq!(pair, Ok(vec![Reply::Bulk(b"abc".to_vec()), Reply::Int(5)]));
        let lost = lane.call(1, |resp| resp.command(&[b"PING"])).await;
        assert_eq!(
            lost,
            Err(NoAnswer::Lost),
            "written, and the connection closed"
        );
        redis.await.expect("the fake Redis ends well");
    }

    #[tokio::test]
    async fn a_lane_to_nowhere_sends_nothing_and_a_unix_socket_gets_none() {
        assert!(Lane::open("redis+unix:///tmp/redis.sock").await.is_none());
        // Port 1 on loopback: refused at once.
        let lane = Lane::open("redis://127.0.0.1:1").await.expect("a TCP URL");
        assert!(!lane.is_up());
        let answer = lane.call(1, |resp| resp.command(&[b"PING"])).await;
        assert_eq!(answer, Err(NoAnswer::Unsent));
    }
}
