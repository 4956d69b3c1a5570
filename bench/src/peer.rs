//! The servers under test as the generator drives them: how a member joins,
//! how its inbox is read, how it sends a signal. signalpost and the floor
//! speak HTTP (a POST per signal, an SSE response or, for signalpost, a
//! long-poll as the inbox); socket.io is in `socketio`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::http;
use crate::recorder::{Recorder, candidate_payload};
use crate::socketio;
use crate::tls::Transport;

/// How long a join, a handshake or an inbox's first event may take before
/// the member counts as failed.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests of `POST /signals` in flight at once; past it a scheduled send
/// is shed (and counted), so a stalled server cannot make the generator
/// open sockets without end.
const MAX_POSTS_IN_FLIGHT: usize = 1024;

/// Copies sent and not received past which a scheduled send is shed.
const MAX_COPIES_IN_FLIGHT: u64 = 100_000;

/// How long one of signalpost's long-polls waits for an event: the API's
/// default, as a client that sets nothing gets.
const POLL_WAIT_SECS: u64 = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// signalpost: REST commands, SSE inbox.
    Signalpost,
    /// signalpost with its inbox read by long-poll, as a client behind a
    /// proxy that buffers streams reads it.
    SignalpostPoll,
    /// signalpost keeping its state in a redis-server (`--redis-url`), one
    /// node: SSE inbox, as `signalpost`.
    SignalpostRedis,
    /// signalpost over HTTPS, HTTP/1.1.
    SignalpostTls,
    /// signalpost over HTTPS, HTTP/2: each member's inbox and requests on
    /// one connection of its own.
    SignalpostH2,
    /// The minimal axum relay of `src/bin/floor.rs`.
    Floor,
    /// The floor over HTTPS, HTTP/1.1.
    FloorTls,
    /// The floor over HTTPS, HTTP/2.
    FloorH2,
    /// socket.io v4 over its websocket transport.
    SioWs,
    /// socket.io v4 over its websocket transport on TLS (`wss`, Node's own TLS).
    SioWss,
    /// socket.io v4 over its long-polling transport.
    SioPolling,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Signalpost => "signalpost",
            Self::SignalpostPoll => "signalpost-poll",
            Self::SignalpostRedis => "signalpost-redis",
            Self::SignalpostTls => "signalpost-tls",
            Self::SignalpostH2 => "signalpost-h2",
            Self::Floor => "floor",
            Self::FloorTls => "floor-tls",
            Self::FloorH2 => "floor-h2",
            Self::SioWs => "sio-ws",
            Self::SioWss => "sio-wss",
            Self::SioPolling => "sio-polling",
        }
    }

    /// Whether it is reached over TLS, and whether it speaks HTTP/2 there.
    pub fn tls(self) -> Option<bool> {
        match self {
            Self::SignalpostTls | Self::FloorTls | Self::SioWss => Some(false),
            Self::SignalpostH2 | Self::FloorH2 => Some(true),
            _ => None,
        }
    }
}

/// Everything a generator process shares with its members.
pub struct Ctx {
    pub kind: PeerKind,
    pub transport: Transport,
    /// The first node's connections, for the setup's own requests.
    pub http: Arc<http::Client>,
    /// Every node's: members join through each in turn.
    nodes: Vec<Arc<http::Client>>,
    next_node: AtomicUsize,
    pub recorder: Arc<Recorder>,
    posts: Arc<Semaphore>,
    /// Inbox readers (SSE responses, websockets, poll loops) still running.
    pub open_inboxes: Arc<AtomicUsize>,
    /// Sends the server refused or that failed on the way, and the last reason.
    pub send_errors: Arc<AtomicU64>,
    pub last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// The store's addresses, whose command time is measured
    /// (`commandstats`); empty for peers without one.
    pub backend_addrs: Vec<SocketAddr>,
}

/// One member of one room, joined and with its inbox open.
pub struct Member {
    /// The id other members address it by: signalpost's member id, the
    /// floor's member number, the socket id.
    pub id: String,
    /// The connections its requests go on: its own, as a browser's would
    /// be, or the generator's shared pool where only setup uses them.
    http: Arc<http::Client>,
    link: Link,
}

/// Whether a member keeps keep-alive connections of its own for its
/// requests, as a browser does, or borrows from one shared pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    Shared,
    OwnPerMember,
}

enum Link {
    /// `Bearer <token>`.
    Signalpost {
        auth: String,
    },
    Floor,
    SocketIo {
        out: mpsc::UnboundedSender<String>,
    },
}

/// What became of one scheduled send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Dispatched,
    /// Not sent: too much already in flight.
    Shed,
}

impl Ctx {
    /// `addrs`: the nodes of the server, at least one.
    pub fn new(
        kind: PeerKind,
        transport: Transport,
        addrs: &[SocketAddr],
        recorder: Arc<Recorder>,
    ) -> Self {
        let nodes: Vec<Arc<http::Client>> = addrs
            .iter()
            .map(|addr| Arc::new(http::Client::new(*addr, &transport)))
            .collect();
        Self {
            kind,
            transport,
            http: nodes[0].clone(),
            nodes,
            next_node: AtomicUsize::new(0),
            recorder,
            posts: Arc::new(Semaphore::new(MAX_POSTS_IN_FLIGHT)),
            open_inboxes: Arc::new(AtomicUsize::new(0)),
            send_errors: Arc::new(AtomicU64::new(0)),
            last_error: Arc::new(std::sync::Mutex::new(None)),
            backend_addrs: Vec::new(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Joins `room` (creating it with `capacity`) and opens the member's
    /// inbox; returns once the inbox is known to flow.
    pub async fn join(
        &self,
        room: &str,
        capacity: u32,
        connections: Connections,
    ) -> Result<Member> {
        // The next node's: members of one room join through different nodes.
        let node = &self.nodes[self.next_node.fetch_add(1, Ordering::Relaxed) % self.nodes.len()];
        // Over HTTP/2 every member has a connection of its own: one shared
        // connection would hold at most the server's concurrent streams
        // (hyper's 200), and a browser page with one member has one.
        let own =
            connections == Connections::OwnPerMember || matches!(self.transport, Transport::H2(_));
        let http = if own {
            Arc::new(http::Client::new(node.addr(), &self.transport))
        } else {
            node.clone()
        };
        let joining = async {
            match self.kind {
                PeerKind::Signalpost
                | PeerKind::SignalpostPoll
                | PeerKind::SignalpostRedis
                | PeerKind::SignalpostTls
                | PeerKind::SignalpostH2 => self.join_signalpost(http, room, capacity).await,
                PeerKind::Floor | PeerKind::FloorTls | PeerKind::FloorH2 => {
                    self.join_floor(http, room).await
                }
                PeerKind::SioWs | PeerKind::SioWss => {
                    socketio::join_websocket(self, room, capacity)
                        .await
                        .map(|(id, out)| Member {
                            id,
                            http,
                            link: Link::SocketIo { out },
                        })
                }
                PeerKind::SioPolling => socketio::join_polling(self, &http, room, capacity)
                    .await
                    .map(|(id, out)| Member {
                        id,
                        http,
                        link: Link::SocketIo { out },
                    }),
            }
        };
        tokio::time::timeout(SETUP_TIMEOUT, joining)
            .await
            .context("joining took longer than the setup timeout")?
    }

    async fn join_signalpost(
        &self,
        http: Arc<http::Client>,
        room: &str,
        capacity: u32,
    ) -> Result<Member> {
        #[derive(Deserialize)]
        struct Joined {
            member: JoinedMember,
            token: String,
        }
        #[derive(Deserialize)]
        struct JoinedMember {
            id: String,
        }
        let body = format!("{{\"name\":\"bench\",\"capacity\":{capacity}}}");
        let answer = self
            .request(
                &http,
                "POST",
                &format!("/rooms/{room}/join"),
                None,
                Some(&body),
            )
            .await?;
        if answer.status != 201 {
            bail!(
                "join answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        let joined: Joined = serde_json::from_slice(&answer.body).context("join answer")?;
        let auth = format!("Bearer {}", joined.token);
        let member = format!("/rooms/{room}/members/{}", joined.member.id);
        if self.kind == PeerKind::SignalpostPoll {
            self.open_polls(&http, &format!("{member}/poll"), &auth)
                .await?;
        } else {
            self.open_sse(&http, &format!("{member}/events"), Some(&auth))
                .await?;
        }
        Ok(Member {
            id: joined.member.id,
            http,
            link: Link::Signalpost { auth },
        })
    }

    async fn join_floor(&self, http: Arc<http::Client>, room: &str) -> Result<Member> {
        #[derive(Deserialize)]
        struct Joined {
            member_id: u64,
        }
        let answer = self
            .request(&http, "POST", &format!("/rooms/{room}/join"), None, None)
            .await?;
        if answer.status != 201 {
            bail!("join answered {}", answer.status);
        }
        let joined: Joined = serde_json::from_slice(&answer.body).context("join answer")?;
        let path = format!("/rooms/{room}/members/{}/events", joined.member_id);
        self.open_sse(&http, &path, None).await?;
        Ok(Member {
            id: joined.member_id.to_string(),
            http,
            link: Link::Floor,
        })
    }

    /// One request on `http`'s connections, its whole answer read.
    pub async fn request(
        &self,
        http: &http::Client,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> Result<http::Response> {
        http.send(
            method,
            path,
            &headers(auth, body),
            body.unwrap_or("").as_bytes(),
        )
        .await
    }

    /// Opens an SSE inbox, starts its reader, and waits for `ready`.
    async fn open_sse(
        &self,
        http: &Arc<http::Client>,
        path: &str,
        auth: Option<&str>,
    ) -> Result<()> {
        start_reader(|ready| {
            read_sse(
                http.clone(),
                path.to_owned(),
                auth.map(str::to_owned),
                self.recorder.clone(),
                ready,
                self.open_inboxes.clone(),
            )
        })
        .await
    }

    /// Starts a member's long-poll loop, and waits for its first answer.
    async fn open_polls(&self, http: &Arc<http::Client>, path: &str, auth: &str) -> Result<()> {
        start_reader(|ready| {
            read_polls(
                http.clone(),
                path.to_owned(),
                auth.to_owned(),
                self.recorder.clone(),
                ready,
                self.open_inboxes.clone(),
            )
        })
        .await
    }

    /// Sends signal `seq` from `from` to `to`, or to the rest of the room,
    /// stamped now. Never waits: the answer is awaited by its own task.
    pub fn send(
        self: &Arc<Self>,
        from: &Member,
        to: Option<&Member>,
        seq: u64,
        copies: u64,
    ) -> Sent {
        if self.recorder.in_flight() > MAX_COPIES_IN_FLIGHT {
            return Sent::Shed;
        }
        let payload = candidate_payload(seq, self.recorder.now_ns());
        match &from.link {
            Link::SocketIo { out } => {
                let to = to.map_or_else(|| "null".to_owned(), |to| format!("\"{}\"", to.id));
                let packet = format!(
                    "42[\"signal\",{{\"to\":{to},\"type\":\"candidate\",\"payload\":{payload}}}]"
                );
                self.recorder.dispatched(copies);
                if out.send(packet).is_err() {
                    self.fail(copies, "the socket is closed".into());
                }
                Sent::Dispatched
            }
            link => {
                let Ok(permit) = self.posts.clone().try_acquire_owned() else {
                    return Sent::Shed;
                };
                let (auth, body) = match link {
                    Link::Signalpost { auth } => {
                        let to = to.map_or_else(String::new, |to| format!("\"to\":\"{}\",", to.id));
                        let body = format!("{{{to}\"type\":\"candidate\",\"payload\":{payload}}}");
                        (Some(auth.clone()), body)
                    }
                    _ => {
                        let to = to.map_or("null", |to| to.id.as_str());
                        let body = format!(
                            "{{\"from\":{},\"to\":{to},\"type\":\"candidate\",\"payload\":{payload}}}",
                            from.id
                        );
                        (None, body)
                    }
                };
                self.recorder.dispatched(copies);
                let ctx = Arc::clone(self);
                let http = from.http.clone();
                tokio::spawn(async move {
                    let headers = headers(auth.as_deref(), Some(&body));
                    let outcome = http
                        .send("POST", "/signals", &headers, body.as_bytes())
                        .await;
                    drop(permit);
                    match outcome {
                        Ok(answer) if answer.status == 202 => {}
                        Ok(answer) => ctx.fail(
                            copies,
                            format!(
                                "{}: {}",
                                answer.status,
                                String::from_utf8_lossy(&answer.body)
                            ),
                        ),
                        Err(error) => ctx.fail(copies, format!("{error:#}")),
                    }
                });
                Sent::Dispatched
            }
        }
    }

    fn fail(&self, copies: u64, reason: String) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        self.recorder.failed(copies);
        *self.last_error.lock().expect("no panic holds the lock") = Some(reason);
    }
}

/// The headers of a request to signalpost or the floor.
fn headers<'a>(auth: Option<&'a str>, body: Option<&str>) -> Vec<(&'static str, &'a str)> {
    let mut headers = Vec::with_capacity(2);
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    headers
}

/// Runs an inbox reader of its own, and waits until it says the inbox
/// flows (or why it does not).
async fn start_reader<R: Future<Output = ()> + Send + 'static>(
    reader: impl FnOnce(oneshot::Sender<Result<(), String>>) -> R,
) -> Result<()> {
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(reader(ready_tx));
    ready_rx
        .await
        .context("the inbox reader stopped")?
        .map_err(|reason| anyhow::anyhow!(reason))
}

/// Reads one SSE inbox until it ends: `ready` releases the join (and
/// counts the inbox as open), every `data:` line goes to the recorder.
async fn read_sse(
    http: Arc<http::Client>,
    path: String,
    auth: Option<String>,
    recorder: Arc<Recorder>,
    ready: oneshot::Sender<Result<(), String>>,
    open: Arc<AtomicUsize>,
) {
    let mut ready = Some(ready);
    let mut open_guard = None;
    let mut pending: Vec<u8> = Vec::new();
    let outcome = http
        .stream(&path, &headers(auth.as_deref(), None), |data| {
            pending.extend_from_slice(data);
            let mut start = 0;
            while let Some(end) = memchr::memchr(b'\n', &pending[start..]) {
                let line = &pending[start..start + end];
                if line.starts_with(b"data:") {
                    recorder.on_message(line);
                } else if line == b"event: ready"
                    && let Some(ready) = ready.take()
                {
                    open_guard = Some(OpenGuard::new(open.clone()));
                    let _ = ready.send(Ok(()));
                }
                start += end + 1;
            }
            pending.drain(..start);
            true
        })
        .await;
    if let Some(ready) = ready.take() {
        let reason = match outcome {
            Ok(()) => "the inbox ended before its `ready` event".to_owned(),
            Err(error) => format!("{error:#}"),
        };
        let _ = ready.send(Err(reason));
    }
    drop(open_guard);
}

/// Reads one signalpost inbox by long-poll until a poll fails: the first
/// poll, which answers at once (`timeout=0`), releases the join (and counts
/// the inbox as open); then each poll asks for what came after the last id
/// seen, as the API's clients do, and every event's data goes to the
/// recorder.
async fn read_polls(
    http: Arc<http::Client>,
    path: String,
    auth: String,
    recorder: Arc<Recorder>,
    ready: oneshot::Sender<Result<(), String>>,
    open: Arc<AtomicUsize>,
) {
    #[derive(Deserialize)]
    struct Polled {
        events: Vec<PolledEvent>,
    }
    #[derive(Deserialize)]
    struct PolledEvent {
        id: u64,
        data: Box<serde_json::value::RawValue>,
    }
    let headers = [("authorization", auth.as_str())];
    let mut ready = Some(ready);
    let mut open_guard = None;
    let mut after: Option<u64> = None;
    let failure = loop {
        let query = match (ready.is_some(), after) {
            (true, _) => "timeout=0".to_owned(),
            (false, None) => format!("timeout={POLL_WAIT_SECS}"),
            (false, Some(id)) => format!("after={id}&timeout={POLL_WAIT_SECS}"),
        };
        let answer = match http
            .send("GET", &format!("{path}?{query}"), &headers, b"")
            .await
        {
            Ok(answer) if answer.status == 200 => answer,
            Ok(answer) => break format!("a poll answered {}", answer.status),
            Err(error) => break format!("{error:#}"),
        };
        let polled: Polled = match serde_json::from_slice(&answer.body) {
            Ok(polled) => polled,
            Err(error) => break format!("a poll's answer: {error}"),
        };
        for event in &polled.events {
            recorder.on_message(event.data.get().as_bytes());
            after = Some(event.id);
        }
        if let Some(ready) = ready.take() {
            open_guard = Some(OpenGuard::new(open.clone()));
            let _ = ready.send(Ok(()));
        }
    };
    if let Some(ready) = ready.take() {
        let _ = ready.send(Err(failure));
    }
    drop(open_guard);
}

/// Counts a running inbox reader for as long as it lives.
pub struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    pub fn new(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
