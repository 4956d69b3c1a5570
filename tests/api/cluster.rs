//! Several nodes, one service: real `signalpost` processes sharing a real
//! redis-server, each test with its own. Members joined through different
//! nodes share rooms and signal each other; capacity holds across nodes; a
//! stream resumes on any node; a dead node's members are reaped once; a
//! killed node loses nothing it answered 202; a Redis outage answers 503
//! and heals without a restart; a node holds three Redis connections however
//! many members it serves, each logged in as its URL says, and a signal
//! costs one round trip, a plain append once the node knows the inbox's
//! tail, on a connection of its own that comes back when cut, which holds the inbox's
//! bounds and its members as the function does; a signal whose client
//! hangs up still wakes the streams; a node killed at any instant leaves
//! no key behind once its members time out; a node refuses to start
//! beside nodes of another format on its prefix.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, DEADLINE, Joined, ServerProcess, TestApp, assert_problem, eventually, json_body,
    send, send_and_hang_up,
};
use crate::redis_server::RedisServer;

/// A redis-server and `count` nodes on it, each with `args`.
async fn cluster(count: usize, args: &[&str]) -> (RedisServer, Vec<ServerProcess>, Vec<TestApp>) {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let mut node_args = vec!["--redis-url", &url, "--admin-token", ADMIN_TOKEN];
    node_args.extend_from_slice(args);
    let processes = join_all((0..count).map(|_| ServerProcess::start(&node_args, &[]))).await;
    let apis = processes
        .iter()
        .map(|process| TestApp::at(process.addr))
        .collect();
    (redis, processes, apis)
}

#[tokio::test]
async fn members_joined_on_different_nodes_share_a_room_and_signal() {
    let (_redis, _processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join_with("lobby", json!({"name": "alice"})).await;
    let mut alice_events = nodes[0].open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;

    let bob = nodes[1].join_with("lobby", json!({"name": "bob"})).await;
    assert_eq!(
        bob.members.len(),
        1,
        "bob sees alice, joined on the other node"
    );
    let joined = alice_events.expect("member-joined").await;
    assert_eq!(joined.data["member"]["id"], bob.member_id);
    let mut bob_events = nodes[1].open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    // Directed, sent through a third path: alice's own node.
    assert_eq!(
        nodes[0]
            .signal(&alice, Some(&bob), "offer", json!({"sdp": "v=0"}))
            .await,
        1
    );
    let offer = bob_events.expect_signal().await;
    assert_eq!(offer.data["from"], alice.member_id);
    assert_eq!(offer.data["payload"], json!({"sdp": "v=0"}));

    // Broadcast, sent through the node alice is not on.
    assert_eq!(nodes[1].signal(&bob, None, "candidate", json!(1)).await, 1);
    let candidate = alice_events.expect_signal().await;
    assert_eq!(candidate.data["from"], bob.member_id);
    assert_eq!(candidate.data["to"], Value::Null);

    assert_eq!(nodes[0].leave(&bob).await.status(), 204);
    let left = alice_events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": bob.member_id, "reason": "left"})
    );
    bob_events.expect_own_leave(&bob, "left").await;

    // The room disappears with its last member, for every node.
    assert_eq!(nodes[1].leave(&alice).await.status(), 204);
    for node in &nodes {
        let rooms = json_body(node.list_rooms(Some(ADMIN_TOKEN)).await, 200).await;
        assert_eq!(rooms["rooms"], json!([]), "no room is left");
        assert_problem(
            node.get_room("lobby", Some(ADMIN_TOKEN)).await,
            404,
            "room_not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn capacity_holds_when_fifty_joins_race_over_three_nodes() {
    let (_redis, _processes, nodes) = cluster(3, &[]).await;
    let joins = (0..50).map(|n| {
        let node = &nodes[n % nodes.len()];
        node.post_join("race", Some(json!({"capacity": 2})))
    });
    let statuses: Vec<u16> = join_all(joins)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    let admitted = statuses.iter().filter(|status| **status == 201).count();
    let full = statuses.iter().filter(|status| **status == 409).count();
    assert_eq!((admitted, full), (2, 48), "statuses: {statuses:?}");
    let room = json_body(nodes[2].get_room("race", Some(ADMIN_TOKEN)).await, 200).await;
    assert_eq!(room["members"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_stream_resumes_on_another_node_with_exactly_what_it_missed() {
    let (_redis, _processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join("resume").await;
    let bob = nodes[0].join("resume").await;
    let mut stream = nodes[0].open_events(&alice, None).await;
    stream.expect_ready(&alice, 0).await;
    assert_eq!(stream.expect("member-joined").await.id, Some(1));
    for n in 0..3 {
        nodes[1].signal(&bob, Some(&alice), "note", json!(n)).await;
    }
    for n in 0..3 {
        let event = stream.expect_signal().await;
        assert_eq!(
            (event.id, event.data["payload"].clone()),
            (Some(2 + n), json!(n))
        );
    }
    drop(stream);
    // Sent while alice is away; she had processed up to id 3.
    for n in 3..6 {
        nodes[0].signal(&bob, Some(&alice), "note", json!(n)).await;
    }
    let mut resumed = nodes[1].open_events(&alice, Some(3)).await;
    resumed.expect_ready(&alice, 3).await;
    for n in 2..6 {
        let event = resumed.expect_signal().await;
        assert_eq!(
            (event.id, event.data["payload"].clone()),
            (Some(2 + n), json!(n))
        );
    }
    // Nothing else: the next event is one sent now.
    nodes[1]
        .signal(&bob, Some(&alice), "note", json!("last"))
        .await;
    let last = resumed.expect_signal().await;
    assert_eq!(
        (last.id, last.data["payload"].clone()),
        (Some(8), json!("last"))
    );
}

#[tokio::test]
async fn a_long_poll_on_one_node_wakes_for_a_signal_sent_through_another() {
    let (_redis, _processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join("poll").await;
    let bob = nodes[1].join("poll").await;
    let already = nodes[1].poll_events(&alice, "after=0&timeout=0").await;
    assert_eq!(already.len(), 1, "the member-joined of bob: {already:?}");
    let waiting = nodes[1].poll_events(&alice, "after=1&timeout=30");
    // The signal goes out only once node 1 shows the poll waiting, so the
    // answer can only come from a wake-up across nodes; the poll's 30 s
    // would fail the deadline of `poll_events`.
    let sending = async {
        crate::metrics::wait_for_sample(
            &nodes[1],
            "signalpost_open_streams{transport=\"poll\"}",
            1.0,
        )
        .await;
        nodes[0]
            .signal(&bob, Some(&alice), "offer", json!("x"))
            .await
    };
    let (events, recipients) = tokio::join!(waiting, sending);
    assert_eq!(recipients, 1);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["id"], 2);
    assert_eq!(events[0]["data"]["payload"], "x");
}

#[tokio::test]
async fn the_members_of_a_dead_node_are_reaped_once_by_a_live_one() {
    let (_redis, mut processes, nodes) = cluster(3, &["--member-timeout", "1"]).await;
    let watcher = nodes[0].join("reap").await;
    let mut events = nodes[0].open_events(&watcher, None).await;
    events.expect_ready(&watcher, 0).await;
    let doomed = nodes[2].join("reap").await;
    events.expect("member-joined").await;
    let mut doomed_events = nodes[2].open_events(&doomed, None).await;
    doomed_events.expect_ready(&doomed, 0).await;

    processes[2].kill("KILL");
    processes[2].wait_exit().await;
    drop(doomed_events);

    // Reaped after the member timeout, by node 0 or 1: the watcher's
    // stream, open all along, keeps the watcher itself.
    let left = tokio::time::timeout(Duration::from_secs(10), events.expect("member-left"))
        .await
        .expect("the dead node's member is reaped within 10 s");
    assert_eq!(
        left.data,
        json!({"member_id": doomed.member_id, "reason": "timeout"})
    );
    // Once: the next event is the marker, not a second member-left.
    let marker = nodes[1].join("reap").await;
    let next = events.expect("member-joined").await;
    assert_eq!(next.data["member"]["id"], marker.member_id);
    let room = json_body(nodes[1].get_room("reap", Some(ADMIN_TOKEN)).await, 200).await;
    assert_eq!(room["members"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_node_killed_with_sigkill_loses_nothing_it_accepted() {
    let (_redis, mut processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join("kill").await;
    let bob = nodes[1].join("kill").await;
    let mut stream = nodes[0].open_events(&alice, None).await;
    stream.expect_ready(&alice, 0).await;
    stream.expect("member-joined").await;
    for n in 0..10 {
        nodes[1].signal(&bob, Some(&alice), "note", json!(n)).await;
    }
    // Alice processes four, then her node dies under her.
    for n in 0..4 {
        assert_eq!(stream.expect_signal().await.data["payload"], json!(n));
    }
    processes[0].kill("KILL");
    processes[0].wait_exit().await;
    drop(stream);
    for n in 10..20 {
        nodes[1].signal(&bob, Some(&alice), "note", json!(n)).await;
    }
    // She resumes on the live node after the last event she processed.
    let mut resumed = nodes[1].open_events(&alice, Some(5)).await;
    resumed.expect_ready(&alice, 5).await;
    for n in 4..20 {
        let event = resumed.expect_signal().await;
        assert_eq!(
            (event.id, event.data["payload"].clone()),
            (Some(n + 2), json!(n)),
            "every accepted signal, once, in order"
        );
    }
}

#[tokio::test]
async fn a_redis_outage_answers_503_fast_and_heals_without_a_restart() {
    let (mut redis, _processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join("outage").await;
    let bob = nodes[1].join("outage").await;
    assert_eq!(
        json_body(nodes[0].get("/readyz").await, 200).await["status"],
        "ready"
    );

    redis.stop().await;
    for node in &nodes {
        let started = tokio::time::Instant::now();
        assert_problem(node.get("/readyz").await, 503, "server_busy").await;
        assert_problem(node.post_join("outage", None).await, 503, "server_busy").await;
        let response = node
            .send(&alice.token, Some(&bob.member_id), "offer", json!("x"))
            .await;
        assert_problem(response, 503, "server_busy").await;
        assert!(
            started.elapsed() < DEADLINE,
            "refusals come within the deadline, not after long retries"
        );
        // Alive all the same: the process does not need a restart.
        assert_eq!(node.get("/healthz").await.status(), 200);
    }

    redis.restart().await;
    for node in &nodes {
        ready_within_deadline(node).await;
    }
    // The state survived (Redis keeps an append-only file here), and the
    // members carry on where they were.
    let mut stream = nodes[1].open_events(&bob, None).await;
    stream.expect_ready(&bob, 0).await;
    nodes[0]
        .signal(&alice, Some(&bob), "offer", json!("after"))
        .await;
    assert_eq!(stream.expect_signal().await.data["payload"], "after");
}

/// Asks `/readyz` until it answers 200: readiness comes back with Redis,
/// and nothing announces it.
async fn ready_within_deadline(node: &TestApp) {
    eventually(
        "the node is ready again after Redis's return",
        DEADLINE,
        || async { send(node.client.get(node.url("/readyz"))).await.status() == 200 },
    )
    .await;
}

/// A connection of the test's own to the Redis at `url`, whose answers are
/// waited for up to the deadline: redis-rs gives up after half a second,
/// which a replica that is syncing or a loaded machine can take.
async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("the test Redis URL is valid");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(DEADLINE));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("the test connects to its Redis")
}

/// `INFO <section>` of the test's Redis, as `field → value`.
async fn redis_info(
    redis: &RedisServer,
    section: &str,
) -> std::collections::HashMap<String, String> {
    let mut connection = connect(&redis.url()).await;
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut connection)
        .await
        .expect("INFO answers");
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(field, value)| (field.to_owned(), value.to_owned()))
        .collect()
}

/// How much `figure` of `command` grew from `before` to `after`.
fn delta(
    before: &std::collections::HashMap<String, String>,
    after: &std::collections::HashMap<String, String>,
    command: &str,
    figure: &str,
) -> u64 {
    stat(after, command, figure) - stat(before, command, figure)
}

/// One figure (`calls`, `failed_calls`…) of one command in `INFO
/// commandstats`, 0 when never called.
fn stat(stats: &std::collections::HashMap<String, String>, command: &str, figure: &str) -> u64 {
    stats
        .get(&format!("cmdstat_{command}"))
        .and_then(|value| {
            value.split(',').find_map(|part| {
                part.strip_prefix(figure)
                    .and_then(|rest| rest.strip_prefix('='))
            })
        })
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_node_keeps_three_redis_connections_and_a_signal_costs_one_round_trip() {
    let (redis, _processes, nodes) = cluster(2, &[]).await;
    // The two nodes' connections (commands, appends, subscription), and
    // the one `redis_info` opens itself.
    let connected = |info: &std::collections::HashMap<String, String>| {
        info["connected_clients"].parse::<usize>().expect("a count")
    };
    assert_eq!(connected(&redis_info(&redis, "clients").await), 2 * 3 + 1);

    let mut members = Vec::new();
    let mut streams = Vec::new();
    for n in 0..40 {
        let node = &nodes[n % 2];
        let member = node.join(&format!("room-{}", n / 4)).await;
        let mut stream = node.open_events(&member, None).await;
        stream.expect_ready(&member, 0).await;
        streams.push(stream);
        members.push(member);
    }
    assert_eq!(
        connected(&redis_info(&redis, "clients").await),
        2 * 3 + 1,
        "40 members and 40 open streams add no connection"
    );
    drop(streams);

    // Two members with no reader, so that only the sender's work counts.
    let sender = nodes[0].join("quiet").await;
    let recipient = nodes[1].join("quiet").await;
    nodes[0]
        .signal(&sender, Some(&recipient), "warm-up", json!(0))
        .await;

    // Through one node, which learned the inbox's tail from the function
    // that took the warm-up: each signal one plain append, no function.
    let before = redis_info(&redis, "commandstats").await;
    for n in 0..20 {
        nodes[0]
            .signal(&sender, Some(&recipient), "candidate", json!(n))
            .await;
    }
    let after = redis_info(&redis, "commandstats").await;
    assert_eq!(
        (
            delta(&before, &after, "fcall", "calls"),
            delta(&before, &after, "evalsha", "calls"),
            delta(&before, &after, "xadd", "calls"),
            delta(&before, &after, "xadd", "failed_calls"),
        ),
        (0, 0, 20, 0),
        "each signal through one node: one append, in one round trip with the readers' lookup"
    );
    assert_eq!(delta(&before, &after, "hkeys", "calls"), 20);

    // Twenty at once through one node: each waits for the append before
    // it rather than going by the function.
    let before = redis_info(&redis, "commandstats").await;
    join_all((100..120).map(|n| nodes[0].signal(&sender, Some(&recipient), "candidate", json!(n))))
        .await;
    let after = redis_info(&redis, "commandstats").await;
    assert_eq!(
        (
            delta(&before, &after, "fcall", "calls"),
            delta(&before, &after, "xadd", "calls"),
            delta(&before, &after, "xadd", "failed_calls"),
        ),
        (0, 20, 0),
        "signals to one inbox at once through one node: one append each, no function"
    );

    // Through both nodes in turn: each node's tail is out of date at every
    // signal, so the function takes them, and few appends are tried for
    // nothing.
    let before = redis_info(&redis, "commandstats").await;
    for n in 0..20 {
        nodes[n % 2]
            .signal(&sender, Some(&recipient), "candidate", json!(n))
            .await;
    }
    let after = redis_info(&redis, "commandstats").await;
    let functions = delta(&before, &after, "fcall", "calls");
    let refused = delta(&before, &after, "xadd", "failed_calls");
    assert!(
        functions <= 20 && refused <= 4,
        "through both nodes in turn: {functions} function calls and {refused} refused appends for 20 signals"
    );
    assert!(
        (1..=2).contains(&delta(&before, &after, "get", "calls")),
        "the sender's token is looked up once by each node, not at every signal: {}",
        delta(&before, &after, "get", "calls")
    );

    // Every signal is in the inbox once, those sent one after the other in
    // order.
    let mut stream = nodes[1].open_events(&recipient, None).await;
    stream.expect_ready(&recipient, 0).await;
    let mut seen = payloads(&mut stream, 61).await;
    let mut at_once = seen.drain(21..41).collect::<Vec<_>>();
    at_once.sort_unstable();
    assert_eq!(at_once, (100..120).collect::<Vec<_>>());
    let expected: Vec<_> = std::iter::once(0).chain(0..20).chain(0..20).collect();
    assert_eq!(seen, expected);
}

/// The connections to `redis` of the user `user`, from `CLIENT LIST`:
/// each as its fields (`id`, `cmd`…).
async fn clients_of(
    redis: &RedisServer,
    user: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let mut connection = connect(&redis.url()).await;
    let text: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut connection)
        .await
        .expect("CLIENT LIST answers");
    text.lines()
        .map(|line| {
            line.split(' ')
                .filter_map(|field| field.split_once('='))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect::<std::collections::HashMap<_, _>>()
        })
        .filter(|client| client.get("user").map(String::as_str) == Some(user))
        .collect()
}

/// The signals' payloads `stream` brings, `count` of them.
async fn payloads(stream: &mut crate::helpers::EventStream, count: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let event = stream.next_event().await;
        if event.event == "signal" {
            seen.push(event.data["payload"].as_u64().expect("a number"));
        }
    }
    seen
}

#[tokio::test]
async fn a_node_logs_in_with_the_url_s_user_password_and_database_on_every_connection() {
    let redis = RedisServer::start().await;
    let mut admin = connect(&redis.url()).await;
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "node", "on", ">s3cret", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER answers");
    let url = format!("redis://node:s3cret@127.0.0.1:{}/2", redis.port);
    let process = ServerProcess::start(&["--redis-url", &url], &[]).await;
    let node = TestApp::at(process.addr);
    let alice = node.join("lobby").await;
    let bob = node.join("lobby").await;
    let mut stream = node.open_events(&bob, None).await;
    stream.expect_ready(&bob, 0).await;
    // The first signal goes by the function, which tells the inbox's tail;
    // the next are plain appends, on a connection of their own.
    for n in 0..5 {
        node.signal(&alice, Some(&bob), "candidate", json!(n)).await;
    }
    assert_eq!(payloads(&mut stream, 5).await, vec![0, 1, 2, 3, 4]);
    let clients = clients_of(&redis, "node").await;
    assert_eq!(
        clients.len(),
        3,
        "commands, appends and subscription, each logged in as the URL's user: {clients:?}"
    );
    assert!(
        clients.iter().all(|client| client["db"] == "2"),
        "every connection on the URL's database: {clients:?}"
    );
    assert!(
        clients.iter().any(|client| client["cmd"] == "hkeys"),
        "the appends went on their own connection: {clients:?}"
    );
}

#[tokio::test]
async fn appends_go_on_when_their_connection_is_cut() {
    let (redis, _processes, nodes) = cluster(1, &[]).await;
    let node = &nodes[0];
    let alice = node.join("lobby").await;
    let bob = node.join("lobby").await;
    let mut stream = node.open_events(&bob, None).await;
    stream.expect_ready(&bob, 0).await;
    for n in 0..3 {
        node.signal(&alice, Some(&bob), "candidate", json!(n)).await;
    }
    assert_eq!(payloads(&mut stream, 3).await, vec![0, 1, 2]);
    let appends = |clients: &[std::collections::HashMap<String, String>]| {
        clients
            .iter()
            .find(|client| client["cmd"] == "hkeys")
            .map(|client| client["id"].clone())
    };
    let cut = appends(&clients_of(&redis, "default").await).expect("the appends' connection");
    let mut admin = connect(&redis.url()).await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "ID", &cut][..])
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL answers");
    assert_eq!(killed, 1);

    // While it connects again, the signals take the other connection.
    for n in 3..13 {
        node.signal(&alice, Some(&bob), "candidate", json!(n)).await;
    }
    assert_eq!(payloads(&mut stream, 10).await, (3..13).collect::<Vec<_>>());

    // Then the appends have their own connection again.
    let mut n: u64 = 13;
    let (alice, bob, redis, cut, appends) = (&alice, &bob, &redis, &cut, &appends);
    eventually("the appends' connection is back", DEADLINE, || {
        n += 1;
        let payload = n;
        async move {
            node.signal(alice, Some(bob), "candidate", json!(payload))
                .await;
            appends(&clients_of(redis, "default").await).is_some_and(|id| id != *cut)
        }
    })
    .await;
    assert_eq!(
        payloads(&mut stream, usize::try_from(n - 13).expect("a count")).await,
        (14..=n).collect::<Vec<_>>(),
        "every signal once, in order"
    );
}

/// Once a node has appended as many signals as the last function's answer
/// allowed, the next goes by the function, which allows more. Signals that
/// come meanwhile wait for it rather than each going by a function of its
/// own, and none is appended beside it and refused.
#[tokio::test]
async fn signals_past_the_allowance_wait_for_one_function_instead_of_racing_it() {
    let (redis, _processes, nodes) = cluster(1, &["--inbox-limit", "64"]).await;
    let alice = nodes[0].join("allowance").await;
    let bob = nodes[0].join("allowance").await;
    let mut stream = nodes[0].open_events(&bob, None).await;
    stream.expect_ready(&bob, 0).await;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 81 {
            if stream.next_event().await.event == "signal" {
                seen += 1;
            }
        }
    });
    // The function that takes the first allows what the inbox takes then;
    // fifty plain appends spend most of it.
    for n in 0..51 {
        nodes[0]
            .signal(&alice, Some(&bob), "candidate", json!(n))
            .await;
    }
    let before = redis_info(&redis, "commandstats").await;
    join_all((0..30).map(|n| nodes[0].signal(&alice, Some(&bob), "candidate", json!(n)))).await;
    let after = redis_info(&redis, "commandstats").await;
    // The function that renews the allowance, and the readers' delivered
    // marks told as they pile up (a quarter of the bounds at a time).
    assert!(
        delta(&before, &after, "fcall", "calls") <= 5,
        "thirty signals past the allowance: {} function calls",
        delta(&before, &after, "fcall", "calls")
    );
    assert_eq!(
        delta(&before, &after, "xadd", "failed_calls"),
        0,
        "no append refused"
    );
    tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("every signal reaches bob within the deadline")
        .expect("the reader ends well");
}

/// Another node's signal makes this node's next append refused; a few
/// signals go by the function after it, and then plain appends again.
#[tokio::test]
async fn a_node_whose_append_was_refused_appends_plainly_again_after_a_few_signals() {
    let (redis, _processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join("refused").await;
    let bob = nodes[0].join("refused").await;
    // The function's answer tells node 0 the tail; the next is plain.
    nodes[0].signal(&alice, Some(&bob), "note", json!(0)).await;
    nodes[0].signal(&alice, Some(&bob), "note", json!(1)).await;
    nodes[1].signal(&alice, Some(&bob), "note", json!(2)).await;

    let before = redis_info(&redis, "commandstats").await;
    for n in 0..20 {
        nodes[0]
            .signal(&alice, Some(&bob), "candidate", json!(n))
            .await;
    }
    let after = redis_info(&redis, "commandstats").await;
    assert_eq!(
        delta(&before, &after, "xadd", "failed_calls"),
        1,
        "the first append is refused"
    );
    let functions = delta(&before, &after, "fcall", "calls");
    assert!(
        (1..=9).contains(&functions),
        "the refused signal and at most eight more by the function, then plain appends: {functions} function calls for 20 signals"
    );
}

/// The entries an inbox lets go leave Redis: the delivered ones past the
/// window as signals come, and all of them once acknowledged.
#[tokio::test]
async fn delivered_and_acknowledged_entries_leave_the_inbox_in_redis() {
    // A window of 8 events, and a headroom of 2 × 4 + 2 membership events.
    let args = [
        "--inbox-limit",
        "8",
        "--max-capacity",
        "4",
        "--default-capacity",
        "2",
    ];
    let (redis, _processes, nodes) = cluster(1, &args).await;
    let alice = nodes[0].join("window").await;
    let bob = nodes[0].join("window").await;
    let inbox = format!("signalpost:{{window}}:i:{}", bob.member_id);
    let mut connection = connect(&redis.url()).await;
    let mut stream = nodes[0].open_events(&bob, None).await;
    stream.expect_ready(&bob, 0).await;
    let mut last = 0;
    for n in 0..60u64 {
        nodes[0].signal(&alice, Some(&bob), "note", json!(n)).await;
        let event = stream.expect_signal().await;
        assert_eq!(event.data["payload"], json!(n), "in order, none lost");
        last = event.id.expect("a signal has an id");
    }
    let held: u64 = redis::cmd("XLEN")
        .arg(&inbox)
        .query_async(&mut connection)
        .await
        .expect("XLEN answers");
    // The hard bound of delivered entries (8 + 10), and what plain appends
    // added since a function last trimmed (the window's 8 at most).
    assert!(held <= 26, "60 delivered signals, {held} entries held");
    drop(stream);

    let events = nodes[0]
        .poll_events(&bob, &format!("after={last}&timeout=0"))
        .await;
    assert!(events.is_empty(), "nothing after {last}: {events:?}");
    let held: u64 = redis::cmd("XLEN")
        .arg(&inbox)
        .query_async(&mut connection)
        .await
        .expect("XLEN answers");
    assert_eq!(held, 0, "every acknowledged entry is gone");
    nodes[0]
        .signal(&alice, Some(&bob), "note", json!("after"))
        .await;
    let events = nodes[0]
        .poll_events(&bob, &format!("after={last}&timeout=0"))
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["payload"], json!("after"));
}

#[tokio::test]
async fn signals_appended_by_a_node_that_knows_the_tail_keep_the_inbox_bounds() {
    let (_redis, _processes, nodes) = cluster(2, &["--inbox-limit", "4"]).await;
    // Bob joins last: his inbox starts empty.
    let alice = nodes[0].join("lobby").await;
    let bob = nodes[0].join("lobby").await;

    // The first through node 0 goes by the function, the next three are
    // appended plainly; the fifth finds the inbox full, through either node.
    for n in 0..4 {
        nodes[0].signal(&alice, Some(&bob), "chat", json!(n)).await;
    }
    for node in &nodes {
        let response = node
            .send(&alice.token, Some(&bob.member_id), "chat", json!("over"))
            .await;
        assert_problem(response, 429, "inbox_full").await;
    }

    // Bob reads them through node 1: his inbox has room again for node 0's
    // signals.
    let mut bob_events = nodes[1].open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;
    for n in 0..4 {
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
    for n in 4..12 {
        nodes[0].signal(&alice, Some(&bob), "chat", json!(n)).await;
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
}

#[tokio::test]
async fn delivered_signals_past_the_hard_bound_leave_redis_oldest_first() {
    // Four undelivered events, and room for 2 × 2 + 2 = 6 more, delivered
    // ones included: an inbox keeps 10 delivered events for a resume.
    let (redis, _processes, nodes) = cluster(
        1,
        &[
            "--inbox-limit",
            "4",
            "--max-capacity",
            "2",
            "--default-capacity",
            "2",
        ],
    )
    .await;
    let node = &nodes[0];
    let alice = node.join("lobby").await;
    let bob = node.join("lobby").await;
    let mut bob_events = node.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;
    // Each read before the next is sent: the node appends most of them
    // plainly, and the functions between trim what was delivered.
    for n in 1..=40 {
        node.signal(&alice, Some(&bob), "chat", json!(n)).await;
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
    drop(bob_events);
    let mut connection = connect(&redis.url()).await;
    let held: usize = redis::cmd("XLEN")
        .arg(format!("signalpost:{{lobby}}:i:{}", bob.member_id))
        .query_async(&mut connection)
        .await
        .expect("XLEN answers");
    assert!(
        (10..=10 + 4).contains(&held),
        "the 10 delivered events kept, and at most the 4 appended since: {held}"
    );

    // A resume from the start: the oldest are gone, the rest come in order.
    let mut bob_events = node.open_events(&bob, Some(0)).await;
    bob_events.expect_ready(&bob, 0).await;
    let gap = bob_events.expect("gap").await;
    assert_eq!(gap.data["from"], json!(1));
    let to = gap.data["to"].as_u64().expect("an id");
    assert_eq!(to, 40 - held as u64, "the gap is what Redis let go");
    for n in to + 1..=40 {
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
    // The counters still agree with the inbox: more signals are taken.
    for n in 41..=60 {
        node.signal(&alice, Some(&bob), "chat", json!(n)).await;
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
}

#[tokio::test]
async fn a_node_that_knows_an_inboxs_tail_takes_signals_only_from_members() {
    let (_redis, _processes, nodes) = cluster(2, &[]).await;
    let carol = nodes[0].join("lobby").await;
    let alice = nodes[0].join("lobby").await;
    let bob = nodes[0].join("lobby").await;
    let mut bob_events = nodes[1].open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    // Carol's token is known to node 0, which she signals alice through;
    // she leaves through node 1. Node 0 then learns bob's tail anew from
    // alice's signals (the first few by the function, the rest appended
    // plainly), and vouches for alice alone: carol's is refused.
    nodes[0]
        .signal(&carol, Some(&alice), "chat", json!("hi"))
        .await;
    nodes[0]
        .signal(&alice, Some(&bob), "chat", json!("before"))
        .await;
    assert_eq!(
        bob_events.expect_signal().await.data["payload"],
        json!("before")
    );
    assert_eq!(nodes[1].leave(&carol).await.status().as_u16(), 204);
    assert_eq!(
        bob_events.expect("member-left").await.data["member_id"],
        json!(carol.member_id)
    );
    // She was the owner: alice is now.
    assert_eq!(
        bob_events.expect("room-updated").await.data["owner"],
        json!(alice.member_id)
    );
    for n in 0..12 {
        nodes[0].signal(&alice, Some(&bob), "chat", json!(n)).await;
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
    let response = nodes[0]
        .send(&carol.token, Some(&bob.member_id), "chat", json!("gone"))
        .await;
    assert_problem(response, 401, "unauthorized").await;

    // Bob leaves through node 1: node 0's tail of his inbox is refused.
    assert_eq!(nodes[1].leave(&bob).await.status().as_u16(), 204);
    let response = nodes[0]
        .send(&alice.token, Some(&bob.member_id), "chat", json!("gone"))
        .await;
    assert_problem(response, 404, "member_not_found").await;
}

/// Signals sent and hung up on at once: the server drops each request at
/// the hang-up, which may come after Redis took the signal.
const HUNG_UP_SIGNALS: usize = 40;

#[tokio::test]
async fn a_signal_whose_client_hangs_up_still_reaches_the_open_stream() {
    // Bob's stream on the node alice signals through, then on the other.
    for reader in [0, 1] {
        hung_up_signals_reach_a_stream_on(reader).await;
    }
}

async fn hung_up_signals_reach_a_stream_on(reader: usize) {
    let (redis, _processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join("lobby").await;
    let bob = nodes[0].join("lobby").await;
    let mut events = nodes[reader].open_events(&bob, None).await;
    events.expect_ready(&bob, 0).await;
    // Node 0 learns the end of bob's inbox: the next signals are appended.
    nodes[0].signal(&alice, Some(&bob), "chat", json!(-1)).await;
    let warm_up = events.expect_signal().await;
    assert_eq!(warm_up.data["payload"], json!(-1));
    let warm_up = warm_up.id.expect("a signal has an id");

    // Each request is over when `send_and_hang_up` returns: the node has
    // closed its end.
    join_all((0..HUNG_UP_SIGNALS).map(|n| {
        let body = format!(
            r#"{{"to":"{}","type":"chat","payload":{n}}}"#,
            bob.member_id
        );
        let request = format!(
            "POST /signals HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            nodes[0].addr,
            alice.token,
            body.len()
        );
        send_and_hang_up(nodes[0].addr, request, Duration::ZERO)
    }))
    .await;

    // Whatever Redis took is in bob's inbox; the stream hands it all out,
    // up to the inbox's last entry, with no other signal to wake it. A
    // signal whose request was dropped runs on to its end after the node
    // closed the connection, so Redis may take it a moment later.
    let key = format!("signalpost:{{lobby}}:i:{}", bob.member_id);
    let connection = tokio::sync::Mutex::new(connect(&redis.url()).await);
    let top = || async {
        let top: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut *connection.lock().await)
            .await
            .expect("XREVRANGE answers");
        top.first()
            .and_then(|(id, _)| id.strip_prefix("0-")?.parse::<u64>().ok())
            .expect("the inbox holds its entries")
    };
    eventually(
        "Redis takes some of the hung-up signals",
        DEADLINE,
        || async { top().await > warm_up },
    )
    .await;
    let mut last = warm_up;
    while last < top().await {
        last = events.expect_signal().await.id.expect("a signal has an id");
    }
}

#[tokio::test]
async fn events_an_inbox_lets_go_in_redis_are_counted_by_the_nodes() {
    let (_redis, _processes, nodes) = cluster(2, &crate::metrics::CHURN_FLAGS).await;
    let alice = nodes[0].join("churn").await;
    crate::metrics::churn_past_the_hard_bound(&nodes, &alice).await;
    let dropped = crate::metrics::events_dropped(&nodes[0]).await
        + crate::metrics::events_dropped(&nodes[1]).await;
    assert_eq!(dropped, 3.0, "the same count as one node in memory");
}

/// Every key in the test's Redis.
async fn redis_keys(redis: &crate::redis_server::RedisServer) -> Vec<String> {
    let mut connection = connect(&redis.url()).await;
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .expect("KEYS answers")
}

/// One member's life as a storm sends it, through whatever fails once the
/// node is killed: a join, a stream opened and read until `ready`, a
/// signal to the room, and a leave (every other member stays, for the
/// reaper).
async fn storm_member(node: &TestApp, n: usize) {
    let room = format!("storm-{}", n % 12);
    let Ok(response) = node
        .client
        .post(node.url(&format!("/rooms/{room}/join")))
        .send()
        .await
    else {
        return;
    };
    let Ok(joined) = response.json::<Value>().await else {
        return;
    };
    let (Some(member), Some(token)) = (joined["member"]["id"].as_str(), joined["token"].as_str())
    else {
        return;
    };
    let events = node
        .client
        .get(node.url(&format!("/rooms/{room}/members/{member}/events")))
        .bearer_auth(token)
        .send()
        .await;
    if let Ok(mut events) = events {
        // The stream is open once its first bytes come.
        let _ = events.chunk().await;
    }
    let _ = node
        .client
        .post(node.url("/signals"))
        .bearer_auth(token)
        .json(&json!({"type": "note", "payload": n}))
        .send()
        .await;
    if n.is_multiple_of(2) {
        let _ = node
            .client
            .delete(node.url(&format!("/rooms/{room}/members/{member}")))
            .bearer_auth(token)
            .send()
            .await;
    }
}

#[tokio::test]
async fn a_node_killed_at_any_instant_leaves_no_key_behind() {
    let redis = crate::redis_server::RedisServer::start().await;
    let url = redis.url();
    let args = [
        "--redis-url",
        &url,
        "--admin-token",
        ADMIN_TOKEN,
        "--member-timeout",
        "1",
    ];
    // The node that lives, and reaps what the others leave.
    let survivor = ServerProcess::start(&args, &[]).await;
    let watcher = TestApp::at(survivor.addr);
    // Six deaths, each at a random point.
    for _ in 0..6 {
        let mut victim = ServerProcess::start(&args, &[]).await;
        let node = TestApp::at(victim.addr);
        // Forty clients, each living one member's life after another until
        // the node dies (or a bound of 50 lives, far past any instant).
        let node = &node;
        let storm = join_all((0..40).map(|client| async move {
            for life in 0..50 {
                storm_member(node, client * 50 + life).await;
            }
        }));
        // Killed at a random instant of the storm: in a join, a stream's
        // opening, a signal or a removal, or between two round trips.
        let instant = Duration::from_millis(rand::random_range(10..400));
        tokio::select! {
            _ = storm => {}
            () = tokio::time::sleep(instant) => {}
        }
        victim.kill("KILL");
        victim.wait_exit().await;
    }
    // Within two member timeouts and the reaper's ticks, nothing is left:
    // no member, no room, a count of zero, and no key at all.
    eventually(
        "every key of the dead nodes is gone",
        5 * DEADLINE,
        || async { redis_keys(&redis).await.is_empty() },
    )
    .await;
    let rooms = json_body(watcher.list_rooms(Some(ADMIN_TOKEN)).await, 200).await;
    assert_eq!(rooms, json!({"rooms": []}));
    let metrics = send(watcher.client.get(watcher.url("/metrics")))
        .await
        .text()
        .await
        .expect("the metrics are text");
    for gauge in ["signalpost_members 0", "signalpost_rooms 0"] {
        assert!(
            metrics.lines().any(|line| line == gauge),
            "{gauge} in {metrics}"
        );
    }
}

/// A room the service made keeps an entry in the kept index, which the
/// reaper looks at to close it. Should its maker die before writing it (or
/// the reaper delete it as the maker was under way), the room index's
/// reconciliation writes it again: the room still closes at its timeout,
/// and nothing is left.
#[tokio::test]
async fn a_room_made_in_advance_closes_even_when_its_kept_entry_was_lost() {
    let (redis, _processes, nodes) = cluster(2, &["--member-timeout", "1"]).await;
    let made = nodes[0]
        .client
        .put(nodes[0].url("/rooms/orphan"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"empty_timeout": 1}))
        .send()
        .await
        .expect("answered");
    assert_eq!(made.status(), 201);
    let mut connection = connect(&redis.url()).await;
    let removed: i64 = redis::cmd("ZREM")
        .arg("signalpost:{index}:kept")
        .arg("orphan")
        .query_async(&mut connection)
        .await
        .expect("ZREM answers");
    assert_eq!(removed, 1, "the room was in the kept index");
    eventually(
        "the room closes and no key is left",
        5 * DEADLINE,
        || async { redis_keys(&redis).await.is_empty() },
    )
    .await;
    let rooms = json_body(nodes[1].list_rooms(Some(ADMIN_TOKEN)).await, 200).await;
    assert_eq!(rooms, json!({"rooms": []}));
}

/// Sentinel's view of the primary named `name`, as `field → value`.
async fn sentinel_view(
    sentinel: &crate::redis_server::RedisServer,
    name: &str,
) -> std::collections::HashMap<String, String> {
    let client = redis::Client::open(sentinel.url()).expect("the Sentinel's URL is valid");
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return Default::default();
    };
    let fields: Vec<String> = redis::cmd("SENTINEL")
        .arg("master")
        .arg(name)
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    fields
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

#[tokio::test]
async fn a_primary_killed_under_load_fails_over_to_its_replica_without_a_node_restart() {
    use crate::redis_server::RedisServer;
    let mut primary = RedisServer::start().await;
    let replica = RedisServer::replica_of(&primary).await;
    let sentinels = join_all((0..3).map(|_| RedisServer::sentinel(&primary, "failover"))).await;
    // Each Sentinel knows the replica and the two others, or they could
    // not agree on a failover.
    for sentinel in &sentinels {
        eventually(
            "a Sentinel knows its replica and peers",
            4 * DEADLINE,
            || async {
                let view = sentinel_view(sentinel, "failover").await;
                view.get("num-slaves").map(String::as_str) == Some("1")
                    && view.get("num-other-sentinels").map(String::as_str) == Some("2")
            },
        )
        .await;
    }
    let addrs: Vec<String> = sentinels
        .iter()
        .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
        .collect();
    let addrs = addrs.join(",");
    let args = [
        "--redis-sentinel",
        &addrs,
        "--redis-master-name",
        "failover",
        "--admin-token",
        ADMIN_TOKEN,
    ];
    let processes = join_all((0..2).map(|_| ServerProcess::start(&args, &[]))).await;
    let nodes: Vec<TestApp> = processes
        .iter()
        .map(|process| TestApp::at(process.addr))
        .collect();
    let alice = nodes[0].join("failover").await;
    let bob = nodes[1].join("failover").await;
    nodes[1]
        .signal(&bob, Some(&alice), "note", json!("before"))
        .await;
    // The members are on the replica before the primary dies: replication
    // is asynchronous, and what it had not copied would be lost.
    replica_has_everything(&primary, &replica).await;

    primary.stop().await;
    // While Sentinel switches, a signal answers 503 `server_busy` with
    // `Retry-After`, and nothing else; then 202 on the new primary.
    accepted_again_after_a_switch(&nodes[1], &bob, &alice).await;
    // Alice, on the other node, reads both signals from the new primary,
    // once that node has followed it too (at its next reaper tick).
    ready_within_deadline(&nodes[0]).await;
    reads_before_and_after(&nodes[0], &alice).await;
    drop(processes);
}

#[tokio::test]
async fn a_redis_that_lost_the_functions_is_given_them_again() {
    let (redis, _processes, nodes) = cluster(1, &[]).await;
    let alice = nodes[0].join("flushed").await;
    let bob = nodes[0].join("flushed").await;
    // As a Redis restarted without its data would be.
    let mut connection = connect(&redis.url()).await;
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await
        .expect("FUNCTION FLUSH answers");
    let recipients = nodes[0].signal(&bob, Some(&alice), "note", json!(1)).await;
    assert_eq!(
        recipients, 1,
        "the signal went through once the functions were back"
    );
}

#[tokio::test]
async fn a_member_removed_through_one_node_is_refused_at_once_by_the_other() {
    let (_redis, _processes, nodes) = cluster(2, &[]).await;
    let alice = nodes[0].join("gone").await;
    let bob = nodes[0].join("gone").await;
    // Node 1 looks Bob's token up for this signal, and keeps what it found.
    nodes[1].signal(&bob, Some(&alice), "note", json!(1)).await;
    assert_eq!(nodes[0].leave(&bob).await.status().as_u16(), 204);

    let ice = nodes[1]
        .client
        .get(nodes[1].url("/ice-servers"))
        .bearer_auth(&bob.token);
    for response in [
        nodes[1]
            .send(&bob.token, Some(&alice.member_id), "note", json!(2))
            .await,
        nodes[1].poll(&bob, "timeout=0").await,
        send(nodes[1].events_request(&bob, None)).await,
        nodes[1].get_room("gone", Some(&bob.token)).await,
        send(ice).await,
        nodes[1].leave(&bob).await,
    ] {
        assert_problem(response, 401, "unauthorized").await;
    }
}

/// `CLUSTER NODES` of the cluster, as (port, id, primary's id or `-`, slot
/// ranges) of each node.
async fn cluster_nodes(node: &RedisServer) -> Vec<(u16, String, String, Vec<(u16, u16)>)> {
    let mut connection = connect(&node.url()).await;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut connection)
        .await
        .expect("CLUSTER NODES answers");
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            let slots = fields
                .iter()
                .skip(8)
                .filter_map(|range| {
                    let (low, high) = range.split_once('-').unwrap_or((range, range));
                    Some((low.parse().ok()?, high.parse().ok()?))
                })
                .collect();
            Some((
                port,
                fields[0].to_owned(),
                fields.get(3)?.to_string(),
                slots,
            ))
        })
        .collect()
}

#[tokio::test]
async fn a_cluster_primary_killed_under_load_fails_over_to_its_replica_without_a_node_restart() {
    let mut redis = crate::redis_server::RedisCluster::start_with_replicas(1).await;
    let urls = redis.urls();
    let args = ["--redis-cluster", "--redis-url", &urls];
    let processes = join_all((0..2).map(|_| ServerProcess::start(&args, &[]))).await;
    let nodes: Vec<TestApp> = processes
        .iter()
        .map(|process| TestApp::at(process.addr))
        .collect();
    let alice = nodes[0].join("failover").await;
    let bob = nodes[1].join("failover").await;
    nodes[1]
        .signal(&bob, Some(&alice), "note", json!("before"))
        .await;

    // The primary that holds the room, and its replica.
    let mut connection = connect(&redis.nodes[0].url()).await;
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("signalpost:{failover}:room")
        .query_async(&mut connection)
        .await
        .expect("CLUSTER KEYSLOT answers");
    // Replicas are known to every node a moment after the slots are.
    let found = std::sync::Mutex::new(None);
    eventually(
        "the room's primary and its replica are known",
        4 * DEADLINE,
        || async {
            let layout = cluster_nodes(&redis.nodes[0]).await;
            let primary = layout.iter().find(|(_, _, _, slots)| {
                slots
                    .iter()
                    .any(|(low, high)| (*low..=*high).contains(&slot))
            });
            let replica = primary.and_then(|(_, primary_id, ..)| {
                layout.iter().find(|(_, _, of, _)| of == primary_id)
            });
            if let (Some(primary), Some(replica)) = (primary, replica) {
                *found.lock().expect("not poisoned") = Some((primary.0, replica.0));
                return true;
            }
            false
        },
    )
    .await;
    let (primary_port, replica_port) = found
        .into_inner()
        .expect("not poisoned")
        .expect("found above");
    let server = |port: u16| {
        redis
            .nodes
            .iter()
            .position(|node| node.port == port)
            .expect("the port is one of the cluster's")
    };
    let (primary, replica) = (server(primary_port), server(replica_port));
    // The room is on the replica before the primary dies: replication is
    // asynchronous, and what it had not copied would be lost.
    replica_has_everything(&redis.nodes[primary], &redis.nodes[replica]).await;

    redis.nodes[primary].stop().await;
    // While the cluster fails over, a signal answers 503 `server_busy`
    // with `Retry-After`, and nothing else; then 202 on the promoted
    // replica, with no node restarted.
    accepted_again_after_a_switch(&nodes[1], &bob, &alice).await;
    reads_before_and_after(&nodes[0], &alice).await;
    drop(processes);
}

/// Waits until `replica` has all that `primary` had when asked: the
/// replica's offset at least the primary's read before it. The nodes keep
/// writing (heartbeats, marks), so the two offsets need not ever be read
/// equal.
async fn replica_has_everything(primary: &RedisServer, replica: &RedisServer) {
    // A replica's first full sync, on a machine busy with the rest of the
    // suite, took longer than one deadline in CI.
    eventually("the replica has everything", 3 * DEADLINE, || async {
        let offset = |info: &std::collections::HashMap<String, String>| {
            info.get("master_repl_offset")
                .and_then(|offset| offset.parse::<u64>().ok())
        };
        let on_primary = offset(&redis_info(primary, "replication").await);
        let on_replica = offset(&redis_info(replica, "replication").await);
        matches!((on_primary, on_replica), (Some(had), Some(has)) if has >= had)
    })
    .await;
}

/// Sends `from`'s note "after" to `to` through `node` until it is
/// accepted, while Redis switches to another primary: meanwhile it answers
/// 503 `server_busy` with `Retry-After: 1` and nothing else, at least once.
async fn accepted_again_after_a_switch(node: &TestApp, from: &Joined, to: &Joined) {
    let refused = std::sync::atomic::AtomicUsize::new(0);
    eventually("signals are accepted again", 6 * DEADLINE, || async {
        let response = node
            .send(&from.token, Some(&to.member_id), "note", json!("after"))
            .await;
        match response.status().as_u16() {
            202 => true,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                assert_problem(response, 503, "server_busy").await;
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
            status => panic!("a signal during the switch-over answered {status}"),
        }
    })
    .await;
    assert!(
        refused.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the switch-over was seen as 503 server_busy"
    );
}

/// `member`'s new stream on `node` has, after the other member's join, the
/// notes "before" and "after" of a switch-over.
async fn reads_before_and_after(node: &TestApp, member: &Joined) {
    let mut stream = node.open_events(member, None).await;
    stream.expect_ready(member, 0).await;
    stream.expect("member-joined").await;
    assert_eq!(
        stream.expect_signal().await.data["payload"],
        json!("before")
    );
    assert_eq!(stream.expect_signal().await.data["payload"], json!("after"));
}

/// The format channels of `prefix` that have subscribers on any of
/// `servers` (every node of a Cluster: each lists its own subscribers).
async fn formats_shown(servers: &[RedisServer], prefix: &str, shard: bool) -> Vec<String> {
    let mut shown = Vec::new();
    for server in servers {
        let mut connection = connect(&server.url()).await;
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg(if shard { "SHARDCHANNELS" } else { "CHANNELS" })
            .arg(format!("{prefix}:{{index}}:format:*"))
            .query_async(&mut connection)
            .await
            .expect("PUBSUB answers");
        shown.extend(channels);
    }
    shown.sort();
    shown.dedup();
    shown
}

/// Runs the binary with `args` until it exits, which it must within the
/// deadline; its output, stdout and stderr together.
async fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_signalpost"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the binary exits within the deadline")
    .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// The format after the one `shown` (`…:format:<n>`).
fn later_format(shown: &str) -> u32 {
    let own: u32 = shown
        .rsplit(':')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a format channel ends with its number");
    own + 1
}

#[tokio::test]
async fn a_node_refuses_to_start_beside_nodes_of_another_format_on_its_prefix() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let args = ["--redis-url", url.as_str()];
    let _running = ServerProcess::start(&args, &[]).await;
    let servers = std::slice::from_ref(&redis);
    let shown = formats_shown(servers, "signalpost", false).await;
    assert_eq!(shown.len(), 1, "a running node shows its format: {shown:?}");
    let own = shown[0].clone();

    // A node of the next version, as it would show itself.
    let later = later_format(&own);
    let client = redis::Client::open(url.as_str()).expect("a valid URL");
    let mut newer = client.get_async_pubsub().await.expect("subscribes");
    newer
        .subscribe(format!("signalpost:{{index}}:format:{later}"))
        .await
        .expect("SUBSCRIBE answers");

    let (status, output) = run_to_exit(&args).await;
    assert!(!status.success(), "the node refuses to start: {output}");
    assert!(
        output.contains(&format!("format {later}")) && output.contains("--redis-prefix signalpost"),
        "the refusal names the other format and the prefix: {output}"
    );
    // Its subscription went with it: only the two formats show.
    assert_eq!(formats_shown(servers, "signalpost", false).await.len(), 2);

    // Another prefix is another service.
    let _other = ServerProcess::start(&["--redis-url", &url, "--redis-prefix", "other"], &[]).await;

    // Once the newer node is gone, a node of this format starts: nothing
    // it left to wait out.
    drop(newer);
    eventually(
        "the newer node's subscription is gone",
        DEADLINE,
        || async { formats_shown(servers, "signalpost", false).await == [own.clone()] },
    )
    .await;
    let started = ServerProcess::start(&args, &[]).await;
    let joined = TestApp::at(started.addr).join("after-the-upgrade").await;
    assert!(!joined.token.is_empty());
}

#[tokio::test]
async fn on_a_cluster_a_node_shows_its_format_on_a_shard_channel_and_is_refused_beside_another() {
    let redis = crate::redis_server::RedisCluster::start().await;
    let urls = redis.urls();
    let args = ["--redis-cluster", "--redis-url", urls.as_str()];
    let _running = ServerProcess::start(&args, &[]).await;
    let shown = formats_shown(&redis.nodes, "signalpost", true).await;
    assert_eq!(shown.len(), 1, "a running node shows its format: {shown:?}");

    let later = later_format(&shown[0]);
    let seeds: Vec<String> = redis.nodes.iter().map(RedisServer::url).collect();
    let mut newer = redis::cluster::ClusterClientBuilder::new(seeds)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(|_: redis::PushInfo| Ok::<(), redis::aio::SendError>(()))
        .build()
        .expect("a valid cluster client")
        .get_async_connection()
        .await
        .expect("connects to the cluster");
    newer
        .ssubscribe(format!("signalpost:{{index}}:format:{later}"))
        .await
        .expect("SSUBSCRIBE answers");

    let (status, output) = run_to_exit(&args).await;
    assert!(!status.success(), "the node refuses to start: {output}");
    assert!(output.contains(&format!("format {later}")), "{output}");
}
