//! The test server and its typed helpers: `spawn_app`, the calls of docs/API.md as
//! methods of `TestApp`, an SSE reader with a deadline, and the checks every
//! module shares (problem+json, RFC 3339 times, member objects).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::redis_server::{RedisCluster, RedisServer};

/// The safety net for everything a test awaits: a response, an event, the end
/// of a stream. Never a way to wait for something: tests await the thing itself.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The admin token given to the servers that need one.
pub const ADMIN_TOKEN: &str = "admintoken";

/// A server running `signalpost::run` on a random local port; or, with
/// `SIGNALPOST_TEST_BACKEND=redis`, two nodes sharing a fresh redis-server
/// behind a round-robin TCP balancer, so that the same tests check the
/// contract across nodes.
pub struct TestApp {
    /// Where the server (or the balancer) listens.
    pub addr: SocketAddr,
    /// One client for every call of the test.
    pub client: reqwest::Client,
    /// Cancelling it shuts the server down; dropping the `TestApp` cancels it.
    pub shutdown: CancellationToken,
    /// The task running `signalpost::run` (every node's, for a cluster).
    pub handle: JoinHandle<std::io::Result<()>>,
    /// The Redis the nodes share, for a cluster: held so that it lives as
    /// long as the app (dropping it stops redis-server).
    _redis: Option<SharedRedis>,
}

/// What the nodes of a test share: one redis-server, or a Redis Cluster.
pub enum SharedRedis {
    One(Box<RedisServer>),
    Cluster(RedisCluster),
}

impl SharedRedis {
    /// A fresh one, of the kind `SIGNALPOST_TEST_BACKEND` names.
    async fn start() -> SharedRedis {
        if redis_cluster_backend() {
            SharedRedis::Cluster(RedisCluster::start().await)
        } else {
            SharedRedis::One(Box::new(RedisServer::start().await))
        }
    }

    /// The flags that point a node at it.
    fn flags(&self) -> Vec<String> {
        match self {
            SharedRedis::One(redis) => vec!["--redis-url".to_owned(), redis.url()],
            SharedRedis::Cluster(cluster) => vec![
                "--redis-url".to_owned(),
                cluster.urls(),
                "--redis-cluster".to_owned(),
            ],
        }
    }
}

/// Waits, with a deadline, until `check` holds; checks again every 20 ms.
/// Only for what has no event a client could await: the reaper, closed
/// connections, a gauge, readiness coming back.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True, after saying so, when the tests run against a cluster and the
/// calling test checks a bound each node keeps for itself (rate limits,
/// the stream cap): a balancer spreading the requests over two nodes halves
/// what each node sees. Those tests run against the single node only.
pub fn per_node_bound_skipped_on_cluster(bound: &str) -> bool {
    let skip = cluster_backend();
    if skip {
        eprintln!("skipped on the cluster: {bound} counts per node");
    }
    skip
}

/// Whether the tests run against a two-node cluster sharing Redis
/// (`SIGNALPOST_TEST_BACKEND=redis`, or `redis-cluster` for a Redis Cluster
/// of three primaries).
pub fn cluster_backend() -> bool {
    std::env::var("SIGNALPOST_TEST_BACKEND")
        .is_ok_and(|backend| backend == "redis" || backend == "redis-cluster")
}

/// Whether the nodes share a Redis Cluster rather than one redis-server.
pub fn redis_cluster_backend() -> bool {
    std::env::var("SIGNALPOST_TEST_BACKEND").is_ok_and(|backend| backend == "redis-cluster")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A server with every default.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A server whose inboxes hold 2 undelivered events, in rooms of 2. Events
/// already delivered wait for a resume in a window as large as the hard
/// bound: the limit plus a full room's joins and leaves (2 + 6), so twenty
/// signals push the first ones out.
pub async fn spawn_app_with_a_small_inbox() -> TestApp {
    spawn_app_with(&[
        "--inbox-limit",
        "2",
        "--max-capacity",
        "2",
        "--default-capacity",
        "2",
    ])
    .await
}

/// A server with the given flags, as the command line would give them.
pub async fn spawn_app_with(args: &[&str]) -> TestApp {
    if cluster_backend() {
        return spawn_cluster_with(args).await;
    }
    spawn_memory_app_with(args).await
}

/// One node in memory with the given flags.
async fn spawn_memory_app_with(args: &[&str]) -> TestApp {
    let shutdown = CancellationToken::new();
    let (addr, handle) = spawn_node(args, shutdown.clone()).await;
    test_app(addr, handle, shutdown, None, true)
}

/// One node with the given flags: on its own in memory, or on a fresh
/// redis-server when the tests run against Redis. For bounds each node
/// keeps for itself (the stream cap), which a cluster behind a balancer
/// would spread over two nodes.
pub async fn spawn_one_node_with(args: &[&str]) -> TestApp {
    if !cluster_backend() {
        return spawn_app_with(args).await;
    }
    let redis = SharedRedis::start().await;
    let flags = redis.flags();
    let mut node_args = args.to_vec();
    node_args.extend(flags.iter().map(String::as_str));
    let shutdown = CancellationToken::new();
    let (addr, handle) = spawn_node(&node_args, shutdown.clone()).await;
    test_app(addr, handle, shutdown, Some(redis), true)
}

/// One `signalpost::run` on a random loopback port.
async fn spawn_node(
    args: &[&str],
    shutdown: CancellationToken,
) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let config = signalpost::Config::from_args(args.iter().copied())
        .unwrap_or_else(|error| panic!("the test flags {args:?} are valid: {error}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("127.0.0.1:0 can be bound");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    (
        addr,
        tokio::spawn(signalpost::run(listener, config, shutdown)),
    )
}

/// Two nodes on one fresh redis-server, behind a balancer that sends each
/// new connection to the next node.
async fn spawn_cluster_with(args: &[&str]) -> TestApp {
    let redis = SharedRedis::start().await;
    let flags = redis.flags();
    let mut node_args = args.to_vec();
    node_args.extend(flags.iter().map(String::as_str));
    let shutdown = CancellationToken::new();
    let (a, node_a) = spawn_node(&node_args, shutdown.clone()).await;
    let (b, node_b) = spawn_node(&node_args, shutdown.clone()).await;
    let balancer = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("127.0.0.1:0 can be bound");
    let addr = balancer
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(round_robin(balancer, [a, b], shutdown.clone()));
    let handle = tokio::spawn(async move {
        let (a, b) = tokio::join!(node_a, node_b);
        a.map_err(std::io::Error::other)??;
        b.map_err(std::io::Error::other)?
    });
    // Without pooling, every request takes the next node.
    test_app(addr, handle, shutdown, Some(redis), false)
}

/// A TCP balancer with no stickiness: connection n goes to node n mod 2.
async fn round_robin(
    listener: tokio::net::TcpListener,
    nodes: [SocketAddr; 2],
    shutdown: CancellationToken,
) {
    let mut next = 0;
    loop {
        let (mut client, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            () = shutdown.cancelled() => return,
        };
        let node = nodes[next % nodes.len()];
        next += 1;
        tokio::spawn(async move {
            let Ok(mut upstream) = tokio::net::TcpStream::connect(node).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

impl TestApp {
    /// The typed calls against a server the test started some other way (a
    /// `ServerProcess`, one node of a cluster). Dropping it stops nothing.
    pub fn at(addr: SocketAddr) -> TestApp {
        let handle = tokio::spawn(async { Ok(()) });
        test_app(addr, handle, CancellationToken::new(), None, true)
    }
}

fn test_app(
    addr: SocketAddr,
    handle: JoinHandle<std::io::Result<()>>,
    shutdown: CancellationToken,
    redis: Option<SharedRedis>,
    pooled: bool,
) -> TestApp {
    let mut client = reqwest::Client::builder();
    if !pooled {
        client = client.pool_max_idle_per_host(0);
    }
    let client = client.build().expect("a plain HTTP client builds");
    TestApp {
        addr,
        client,
        shutdown,
        handle,
        _redis: redis,
    }
}

/// What a 201 from `POST /rooms/{room_id}/join` says, field by field.
#[derive(Clone, Debug)]
pub struct Joined {
    pub room_id: String,
    pub member_id: String,
    pub token: String,
    pub owner: bool,
    pub capacity: u64,
    /// The other members at the time of the join, oldest first.
    pub members: Vec<Value>,
    pub events_url: String,
    pub poll_url: String,
    /// The `member` object: `{id, name, metadata, joined_at}`.
    pub member: Value,
    /// The whole answer.
    pub body: Value,
}

impl TestApp {
    /// Waits, within the deadline, for `run` to return after a shutdown,
    /// and checks that it returned `Ok`.
    pub async fn expect_run_to_return_ok(&mut self) {
        let result = tokio::time::timeout(DEADLINE, &mut self.handle)
            .await
            .expect("run returns within the deadline")
            .expect("the run task does not panic");
        assert!(result.is_ok(), "run returns Ok: {result:?}");
    }
}

impl Joined {
    /// Reads a join answer, which must be a 201.
    pub async fn from_response(response: Response) -> Joined {
        Joined::from_body(json_body(response, 201).await)
    }

    /// The member a join's answer body describes.
    pub fn from_body(body: Value) -> Joined {
        let text = |field: &str| -> String {
            body[field]
                .as_str()
                .unwrap_or_else(|| panic!("join answer field `{field}` is a string: {body}"))
                .to_owned()
        };
        Joined {
            room_id: text("room_id"),
            member_id: body["member"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("join answer has member.id: {body}"))
                .to_owned(),
            token: text("token"),
            owner: body["owner"]
                .as_bool()
                .unwrap_or_else(|| panic!("join answer field `owner` is a bool: {body}")),
            capacity: body["capacity"]
                .as_u64()
                .unwrap_or_else(|| panic!("join answer field `capacity` is an integer: {body}")),
            members: body["members"]
                .as_array()
                .unwrap_or_else(|| panic!("join answer field `members` is an array: {body}"))
                .clone(),
            events_url: text("events_url"),
            poll_url: text("poll_url"),
            member: body["member"].clone(),
            body,
        }
    }

    /// The path of this member's resource.
    pub fn path(&self) -> String {
        format!("/rooms/{}/members/{}", self.room_id, self.member_id)
    }
}

/// One event of an SSE stream.
#[derive(Clone, Debug)]
pub struct SseEvent {
    /// The `event:` name.
    pub event: String,
    /// The last `id:` the stream set. eventsource-stream carries the id over
    /// to later events as the SSE spec says, so `None` proves that an event had
    /// no `id:` line only when no earlier event of the stream had one either.
    pub id: Option<u64>,
    /// The `data:` parsed as JSON.
    pub data: Value,
}

type SseItem = Result<Event, EventStreamError<reqwest::Error>>;

/// An open `GET .../events` stream, parsed by eventsource-stream.
pub struct EventStream {
    events: BoxStream<'static, SseItem>,
    /// The response headers of the stream.
    pub headers: HeaderMap,
}

impl EventStream {
    /// Wraps a 200 answer of `GET .../events`.
    pub async fn from_response(response: Response) -> EventStream {
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            panic!("opening the event stream answered {status}, not 200: {body}");
        }
        let headers = response.headers().clone();
        EventStream {
            events: response.bytes_stream().eventsource().boxed(),
            headers,
        }
    }

    /// The next event; panics when none comes within `DEADLINE` or the stream ends.
    pub async fn next_event(&mut self) -> SseEvent {
        match self.next_or_end().await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the SSE stream ended while an event was expected"),
            Err(error) => panic!("the SSE stream failed while an event was expected: {error}"),
        }
    }

    /// Every event until the stream ends (cleanly or by a closed
    /// connection); panics when it is still open after `DEADLINE`.
    pub async fn until_end(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Ok(Some(event)) = self.next_or_end().await {
            events.push(event);
        }
        events
    }

    /// The next event, `None` at the stream's end, or how it failed;
    /// panics when nothing happens within `DEADLINE`.
    async fn next_or_end(&mut self) -> Result<Option<SseEvent>, String> {
        match tokio::time::timeout(DEADLINE, self.events.next()).await {
            Err(_) => panic!("no SSE event arrived within {DEADLINE:?}"),
            Ok(None) => Ok(None),
            Ok(Some(Err(error))) => Err(error.to_string()),
            Ok(Some(Ok(event))) => {
                let id = if event.id.is_empty() {
                    None
                } else {
                    Some(
                        event
                            .id
                            .parse()
                            .unwrap_or_else(|_| panic!("the SSE id `{}` is an integer", event.id)),
                    )
                };
                let data = serde_json::from_str(&event.data).unwrap_or_else(|error| {
                    panic!(
                        "the data of SSE event `{}` is JSON ({error}): {}",
                        event.event, event.data
                    )
                });
                Ok(Some(SseEvent {
                    event: event.event,
                    id,
                    data,
                }))
            }
        }
    }

    /// The next event, which must be named `name`.
    pub async fn expect(&mut self, name: &str) -> SseEvent {
        let event = self.next_event().await;
        assert_eq!(
            event.event, name,
            "expected a `{name}` event, got {event:?}"
        );
        event
    }

    /// The next event, which must be `ready` for `member`, resuming after
    /// `last_event_id`, without an id of its own.
    pub async fn expect_ready(&mut self, member: &Joined, last_event_id: u64) {
        let ready = self.expect("ready").await;
        assert_eq!(
            (&ready.data["member_id"], &ready.data["last_event_id"]),
            (&json!(member.member_id), &json!(last_event_id)),
            "the ready event names the member and the resume point: {ready:?}"
        );
        assert!(
            ready.data["keep_alive"]
                .as_f64()
                .is_some_and(|secs| secs > 0.0),
            "the ready event says the keep-alive interval: {ready:?}"
        );
        assert_eq!(ready.id, None, "ready carries no id: {ready:?}");
    }

    /// The next event, which must be a signal; returns its data.
    pub async fn expect_signal(&mut self) -> SseEvent {
        self.expect("signal").await
    }

    /// The stream's member is gone: its last event says so, `member-left`
    /// naming it with `reason`, and the stream ends.
    pub async fn expect_own_leave(&mut self, member: &Joined, reason: &str) {
        let left = self.expect("member-left").await;
        assert_eq!(
            left.data,
            json!({"member_id": member.member_id, "reason": reason}),
            "the last event names the stream's own member"
        );
        self.expect_end().await;
    }

    /// Waits for the stream to end (cleanly or by a closed connection);
    /// panics on an event or when it is still open after `DEADLINE`.
    pub async fn expect_end(&mut self) {
        match tokio::time::timeout(DEADLINE, self.events.next()).await {
            Err(_) => panic!("the SSE stream was still open after {DEADLINE:?}"),
            Ok(None) | Ok(Some(Err(_))) => {}
            Ok(Some(Ok(event))) => panic!("expected the SSE stream to end, got {event:?}"),
        }
    }
}

/// An open `GET .../events` stream read line by line, comments included.
pub struct RawLines {
    bytes: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl RawLines {
    /// The next line, without its line ending; panics when none comes within `DEADLINE`.
    pub async fn next_line(&mut self) -> String {
        self.next_line_or_end()
            .await
            .expect("the SSE stream ended while a line was expected")
    }

    /// Waits for the stream to end, passing over comment lines; panics on
    /// any other line, or when it is still open after `DEADLINE`.
    pub async fn expect_end(&mut self) {
        while let Some(line) = self.next_line_or_end().await {
            assert!(
                line.starts_with(':'),
                "expected the stream to end, got {line:?}"
            );
        }
    }

    /// The next line, or `None` when the stream ends (cleanly or by a
    /// closed connection); panics when neither comes within `DEADLINE`.
    async fn next_line_or_end(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8(line).expect("SSE lines are UTF-8"));
            }
            match tokio::time::timeout(DEADLINE, self.bytes.next()).await {
                Err(_) => panic!("no SSE line nor the end arrived within {DEADLINE:?}"),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
            }
        }
    }
}

/// A response read from a raw TCP connection, for paths a URL parser would rewrite.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl TestApp {
    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /rooms/{room}/join` with `body` as JSON, or with no body at all.
    pub async fn post_join(&self, room: &str, body: Option<Value>) -> Response {
        let mut request = self.client.post(self.url(&format!("/rooms/{room}/join")));
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// Joins `room` with an empty JSON object; the join must succeed.
    pub async fn join(&self, room: &str) -> Joined {
        self.join_with(room, json!({})).await
    }

    /// Joins `room` with `body`; the join must succeed.
    pub async fn join_with(&self, room: &str, body: Value) -> Joined {
        Joined::from_response(self.post_join(room, Some(body)).await).await
    }

    /// `POST /signals` with `token`: to `to` (omitted when `None`), of `kind`, with `payload`.
    pub async fn send(
        &self,
        token: &str,
        to: Option<&str>,
        kind: &str,
        payload: Value,
    ) -> Response {
        let mut body = json!({"type": kind, "payload": payload});
        if let Some(to) = to {
            body["to"] = json!(to);
        }
        self.send_body(token, body).await
    }

    /// `POST /signals` with `token` and any JSON `body`.
    pub async fn send_body(&self, token: &str, body: Value) -> Response {
        send(
            self.client
                .post(self.url("/signals"))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// Sends a signal from `from` to `to` (everyone when `None`); it must be
    /// answered 202. Returns the number of recipients.
    pub async fn signal(
        &self,
        from: &Joined,
        to: Option<&Joined>,
        kind: &str,
        payload: Value,
    ) -> u64 {
        let response = self
            .send(
                &from.token,
                to.map(|to| to.member_id.as_str()),
                kind,
                payload,
            )
            .await;
        let body = json_body(response, 202).await;
        body["recipients"]
            .as_u64()
            .unwrap_or_else(|| panic!("a 202 from /signals is {{\"recipients\": n}}: {body}"))
    }

    /// `DELETE /rooms/{room}/members/{member_id}` with `token`, if any.
    pub async fn remove(&self, room: &str, member_id: &str, token: Option<&str>) -> Response {
        let request = self
            .client
            .delete(self.url(&format!("/rooms/{room}/members/{member_id}")));
        send(with_token(request, token)).await
    }

    /// The member leaves its room.
    pub async fn leave(&self, member: &Joined) -> Response {
        self.remove(&member.room_id, &member.member_id, Some(&member.token))
            .await
    }

    /// `GET .../poll?{query}` with the member's token.
    pub async fn poll(&self, member: &Joined, query: &str) -> Response {
        let url = self.url(&format!("{}/poll?{query}", member.path()));
        send(self.client.get(url).bearer_auth(&member.token)).await
    }

    /// `GET .../poll?{query}`, which must answer 200; returns the `events`.
    pub async fn poll_events(&self, member: &Joined, query: &str) -> Vec<Value> {
        let body = json_body(self.poll(member, query).await, 200).await;
        body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("a poll answers {{\"events\": [...]}}: {body}"))
            .clone()
    }

    /// The request that opens the member's stream, with its token and, if
    /// given, a `Last-Event-ID` header.
    pub fn events_request(&self, member: &Joined, last_event_id: Option<u64>) -> RequestBuilder {
        let mut request = self
            .client
            .get(self.url(&member.events_url))
            .bearer_auth(&member.token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        request
    }

    /// Opens the member's stream, resuming after `last_event_id` if given.
    /// Opens `member`'s stream and reads up to its `ready` and the
    /// `member-joined` events it already holds (`member_joined` of them).
    pub async fn open_drained(&self, member: &Joined, member_joined: usize) -> EventStream {
        let mut events = self.open_events(member, None).await;
        events.expect_ready(member, 0).await;
        for _ in 0..member_joined {
            events.expect("member-joined").await;
        }
        events
    }

    pub async fn open_events(&self, member: &Joined, last_event_id: Option<u64>) -> EventStream {
        self.open_events_with(self.events_request(member, last_event_id))
            .await
    }

    /// Opens a stream with a request of the test's making.
    pub async fn open_events_with(&self, request: RequestBuilder) -> EventStream {
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .unwrap_or_else(|_| panic!("the event stream answered no headers within {DEADLINE:?}"))
            .expect("the event stream request is sent");
        EventStream::from_response(response).await
    }

    /// Opens the member's stream, resuming after `last_event_id` if given,
    /// retrying while the server's stream cap answers 503. The server gives
    /// a stream's place back when it notices the stream ended, a moment
    /// after the client sees the end: retry until then, with a deadline.
    pub async fn open_events_when_a_place_is_free(
        &self,
        member: &Joined,
        last_event_id: Option<u64>,
    ) -> EventStream {
        EventStream::from_response(
            self.stream_response_when_a_place_is_free(member, last_event_id)
                .await,
        )
        .await
    }

    /// The answer that opens the member's stream, as
    /// `open_events_when_a_place_is_free` waits for it.
    pub async fn stream_response_when_a_place_is_free(
        &self,
        member: &Joined,
        last_event_id: Option<u64>,
    ) -> Response {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            // Not `send`: its timeout would cut the stream's body too.
            let response =
                tokio::time::timeout(DEADLINE, self.events_request(member, last_event_id).send())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("the stream answered no headers within {DEADLINE:?}")
                    })
                    .expect("the event stream request is sent");
            if response.status().as_u16() != 503 {
                return response;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no stream place came free within {DEADLINE:?}"
            );
            tokio::task::yield_now().await;
        }
    }

    /// Opens the member's stream and reads it line by line.
    pub async fn open_raw_events(&self, member: &Joined) -> RawLines {
        self.open_raw_events_with(self.events_request(member, None))
            .await
    }

    /// Opens a stream with a request of the test's making, read line by line.
    pub async fn open_raw_events_with(&self, request: RequestBuilder) -> RawLines {
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .unwrap_or_else(|_| panic!("the event stream answered no headers within {DEADLINE:?}"))
            .expect("the event stream request is sent");
        assert_eq!(response.status().as_u16(), 200, "the event stream opens");
        RawLines {
            bytes: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    /// `GET /rooms/{room}` with `token`, if any.
    pub async fn get_room(&self, room: &str, token: Option<&str>) -> Response {
        let request = self.client.get(self.url(&format!("/rooms/{room}")));
        send(with_token(request, token)).await
    }

    /// `PATCH /rooms/{room}` `{"locked": locked}` with `token`, if any.
    pub async fn patch_room(&self, room: &str, token: Option<&str>, locked: bool) -> Response {
        let request = self
            .client
            .patch(self.url(&format!("/rooms/{room}")))
            .json(&json!({"locked": locked}));
        send(with_token(request, token)).await
    }

    /// `GET /rooms` with `token`, if any.
    pub async fn list_rooms(&self, token: Option<&str>) -> Response {
        send(with_token(self.client.get(self.url("/rooms")), token)).await
    }

    /// `GET path` without a token.
    pub async fn get(&self, path: &str) -> Response {
        send(self.client.get(self.url(path))).await
    }

    /// Sends `method path` over a fresh TCP connection exactly as written, so
    /// that no URL parser removes `.` segments, and reads the whole answer.
    pub async fn raw_request(&self, method: &str, path: &str, body: Option<&str>) -> RawResponse {
        let addr = self.addr;
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(body) = body {
            request.push_str("Content-Type: application/json\r\n");
            request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            request.push_str("Content-Length: 0\r\n\r\n");
        }
        let exchange = tokio::task::spawn_blocking(move || {
            let mut stream =
                std::net::TcpStream::connect(addr).expect("the server accepts connections");
            stream
                .set_read_timeout(Some(DEADLINE))
                .expect("a read timeout can be set");
            stream
                .write_all(request.as_bytes())
                .expect("the request is written");
            let mut answer = Vec::new();
            stream
                .read_to_end(&mut answer)
                .expect("the answer is read before the deadline");
            answer
        });
        let answer = exchange.await.expect("the raw exchange does not panic");
        parse_raw_response(&answer)
    }
}

/// `request` with `token` as its bearer, if any.
pub fn with_token(request: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Sends a request that must be answered within `DEADLINE`.
pub async fn send(request: RequestBuilder) -> Response {
    request
        .timeout(DEADLINE)
        .send()
        .await
        .expect("the server answers within the deadline")
}

/// Reads a JSON body, after checking the status.
pub async fn json_body(response: Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.expect("the body is read");
    assert_eq!(got, status, "expected status {status}, got {got}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("the body is JSON ({error}): {text}"))
}

/// Checks that `response` is an RFC 9457 problem with `status` and `code`;
/// returns the problem.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    let text = response.text().await.expect("the body is read");
    check_problem(got, content_type.as_deref(), &text, status, code)
}

/// The same check for a raw response.
pub fn assert_raw_problem(response: &RawResponse, status: u16, code: &str) -> Value {
    check_problem(
        response.status,
        response.header("content-type"),
        &response.body,
        status,
        code,
    )
}

fn check_problem(
    got: u16,
    content_type: Option<&str>,
    text: &str,
    status: u16,
    code: &str,
) -> Value {
    assert_eq!(
        got, status,
        "expected a {status} `{code}` problem, got {got}: {text}"
    );
    let content_type = content_type.unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "errors are application/problem+json, got `{content_type}`: {text}"
    );
    let problem: Value = serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("the problem is JSON ({error}): {text}"));
    for field in ["type", "title", "detail"] {
        assert!(
            problem[field].is_string(),
            "the problem has a string `{field}`: {problem}"
        );
    }
    assert_eq!(
        problem["status"],
        json!(status),
        "the problem repeats the status: {problem}"
    );
    assert_eq!(
        problem["code"],
        json!(code),
        "the problem's code: {problem}"
    );
    problem
}

/// Checks that `value` is an RFC 3339 time in UTC (`Z` or `+00:00`).
pub fn assert_rfc3339_utc(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a time is a string: {value}"));
    assert!(is_rfc3339_utc(text), "`{text}` is an RFC 3339 time in UTC");
}

fn is_rfc3339_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let fields = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    );
    let (Some(_), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields else {
        return false;
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't')
        || bytes[13] != b':'
        || bytes[16] != b':'
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let count = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    matches!(rest, "Z" | "z" | "+00:00")
}

/// Checks that `value` is a member id: a UUID v4.
pub fn assert_uuid_v4(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a member id is a string: {value}"));
    let id = uuid::Uuid::parse_str(text).unwrap_or_else(|_| panic!("`{text}` is a UUID"));
    assert_eq!(id.get_version_num(), 4, "`{text}` is a UUID v4");
}

/// Checks that `listed` describes the member `expected` (a join's `member`):
/// same id, name, metadata and join time.
pub fn assert_same_member(listed: &Value, expected: &Value) {
    for field in ["id", "name", "user_id", "metadata", "joined_at"] {
        assert_eq!(
            listed[field], expected[field],
            "field `{field}` of {listed} matches {expected}"
        );
    }
}

fn parse_raw_response(answer: &[u8]) -> RawResponse {
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("the answer has a head: {}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut body = answer[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("the status line `{status_line}` has a code"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut output = Vec::new();
    while let Some(end) = input.windows(2).position(|window| window == b"\r\n") {
        let size_text = String::from_utf8_lossy(&input[..end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("a chunk size is hexadecimal");
        if size == 0 {
            break;
        }
        let start = end + 2;
        output.extend_from_slice(&input[start..start + size]);
        input = &input[start + size + 2..];
    }
    output
}

/// The real `signalpost` binary, started with `--listen 127.0.0.1:0` and
/// found by its `listening on ADDR` log line. Killed if the test ends first.
pub struct ServerProcess {
    /// Where the binary listens.
    pub addr: SocketAddr,
    pid: u32,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every output line read so far, stdout and stderr mixed.
    pub output: Vec<String>,
    exited: Option<tokio::sync::oneshot::Receiver<std::process::ExitStatus>>,
}

impl ServerProcess {
    /// Starts the binary with `args` (after `--listen 127.0.0.1:0`) and the
    /// extra environment `envs`, and waits for its `listening on` line.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_signalpost"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the signalpost binary starts");
        let pid = child.id();
        let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        for output in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let lines_tx = lines_tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(output)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = lines_tx.send(line);
                }
            });
        }
        let (exit_tx, exited) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let status = child.wait().expect("the child can be waited for");
            let _ = exit_tx.send(status);
        });
        let mut process = ServerProcess {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            pid,
            lines,
            output: Vec::new(),
            exited: Some(exited),
        };
        process.addr = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = process.lines.recv().await {
                let addr = listening_address(&line);
                process.output.push(line);
                if let Some(addr) = addr {
                    return addr;
                }
            }
            panic!(
                "the binary ended its output without `listening on ADDR`: {:?}",
                process.output
            );
        })
        .await
        .expect("the binary logs `listening on ADDR` within the deadline");
        process
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the signal `name` (`TERM`, `INT`) with `kill`.
    pub fn kill(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIG{name} is delivered");
    }

    /// Waits for the process to exit, then reads the rest of its output.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let exited = self.exited.take().expect("wait_exit is called once");
        let status = tokio::time::timeout(DEADLINE, exited)
            .await
            .unwrap_or_else(|_| panic!("the binary did not exit within {DEADLINE:?}"))
            .expect("the wait thread reports the exit");
        // The pipes close with the process, and so does the channel.
        while let Ok(Some(line)) = tokio::time::timeout(DEADLINE, self.lines.recv()).await {
            self.output.push(line);
        }
        status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited.is_some() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// The first socket address after `listening on` in a log line, whatever the
/// log format puts around it (colours, `addr=`, quotes).
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    let plain = strip_ansi(line);
    let rest = &plain[plain.find("listening on")? + "listening on".len()..];
    rest.split(|c: char| c.is_whitespace() || matches!(c, '=' | '"' | '\''))
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .find_map(|word| word.parse().ok())
}

/// `text` without its ANSI colour sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Writes `request` on a fresh connection, waits `linger`, and hangs up
/// before reading anything; then reads, within the deadline, until the
/// server closes its end too, so that the request is over when this
/// returns (dropped at the hang-up, or answered first).
pub async fn send_and_hang_up(addr: SocketAddr, request: String, linger: Duration) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("the server accepts connections");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is written");
    // Not a wait for anything: hanging up 0 to 4 ms after the request
    // lands in different places of a call that takes several round trips.
    if !linger.is_zero() {
        tokio::time::sleep(linger).await;
    }
    // The server sees the hang-up as end of file, as it would a close.
    stream.shutdown().await.expect("the connection half-closes");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server closes a hung-up connection within {DEADLINE:?}"
    );
}
