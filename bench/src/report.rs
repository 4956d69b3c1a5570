//! From runs to results: the median of each figure over the repeats, the
//! markdown table with the targets of the issue checked, `results.json`,
//! and the chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::chart;
use crate::scenario::{Run, Sizes, Window};

/// The peers in the order of the table's columns.
pub const PEERS: [(&str, &str); 14] = [
    ("signalpost", "signalpost (SSE)"),
    ("signalpost-tls", "signalpost HTTPS/1.1"),
    ("signalpost-h2", "signalpost HTTPS/2"),
    ("signalpost-redis", "signalpost on Redis"),
    ("signalpost-redis-x2", "2 nodes on Redis"),
    ("signalpost-redis-x3", "3 nodes on Redis"),
    ("signalpost-cluster-x3", "3 nodes on a 3-primary Cluster"),
    ("floor", "floor (axum relay)"),
    ("floor-tls", "floor HTTPS/1.1"),
    ("floor-h2", "floor HTTPS/2"),
    ("sio-ws", "socket.io websocket"),
    ("sio-wss", "socket.io wss"),
    ("signalpost-poll", "signalpost long-poll"),
    ("sio-polling", "socket.io polling"),
];

/// The medians of one peer; `None` where the peer had no successful run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub relay_p50_ms: Option<f64>,
    pub relay_p99_ms: Option<f64>,
    pub relay_max_ms: Option<f64>,
    pub relay_delivered: u64,
    pub relay_expected: u64,
    pub relay_cpu_us: Option<f64>,
    /// The backend process's CPU (redis-server), for peers that have one.
    pub relay_backend_cpu_us: Option<f64>,
    /// Its functions' time by its own account (`INFO commandstats`), their
    /// calls, and its other commands (those they called included), per
    /// relayed signal.
    pub relay_backend_script_us: Option<f64>,
    pub relay_backend_scripts: Option<f64>,
    pub relay_backend_commands: Option<f64>,
    /// The other commands' time per relayed signal: with the functions',
    /// all Redis's commands' time, at most (a function's own commands are
    /// counted in both).
    #[serde(default)]
    pub relay_backend_command_us: Option<f64>,
    /// Each primary's share of the calls in the relay, in percent (the
    /// median of each over the repeats), for a peer on several primaries.
    #[serde(default)]
    pub relay_backend_shares: Option<Vec<f64>>,
    pub relay_generator_cpu_us: Option<f64>,
    pub relay_late: u64,
    pub relay_shed: u64,
    pub relay_errors: u64,
    pub fanout_p50_ms: Option<f64>,
    pub fanout_p99_ms: Option<f64>,
    pub fanout_max_ms: Option<f64>,
    pub fanout_delivered: u64,
    pub fanout_expected: u64,
    pub fanout_cpu_us: Option<f64>,
    pub fanout_backend_cpu_us: Option<f64>,
    pub fanout_late: u64,
    pub held_rate: Option<f64>,
    pub saturate_stops: Vec<String>,
    /// Members → (median KiB per member, fewest inboxes open in any repeat).
    pub idle: BTreeMap<usize, (f64, usize)>,
    /// Members → median KiB per member of the backend process.
    pub idle_backend: BTreeMap<usize, f64>,
    pub storm_joins: usize,
    pub storm_joined: usize,
    pub storm_p50_ms: Option<f64>,
    pub storm_p99_ms: Option<f64>,
    pub storm_max_ms: Option<f64>,
    pub storm_cpu_us: Option<f64>,
    pub setup_joins_per_sec: Option<f64>,
    pub failures: Vec<String>,
    /// Latency runs where the generator fell behind its schedule: their
    /// latencies include the wait, whatever the server did.
    pub disturbed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    /// `None` when a peer it needs was not run.
    pub met: Option<bool>,
}

#[derive(Serialize)]
struct Results<'a> {
    smoke: bool,
    sizes: Sizes,
    notes: &'a [String],
    summary: BTreeMap<&'a str, &'a Summary>,
    targets: &'a [Target],
    runs: &'a [Run],
}

/// What a smoke run must not show: something offered and not delivered.
pub fn loss(run: &Run) -> Option<String> {
    let window_loss = |window: &Window| {
        (window.lost() > 0 || window.errors > 0 || window.shed > 0).then(|| {
            format!(
                "{} of {} copies delivered, {} errors ({}), {} shed",
                window.delivered,
                window.sent * window.copies,
                window.errors,
                window.last_error.as_deref().unwrap_or("-"),
                window.shed
            )
        })
    };
    if let Some(window) = &run.latency {
        return window_loss(window);
    }
    if let Some(first) = run.saturate.as_ref().and_then(|s| s.steps.first()) {
        return window_loss(first);
    }
    if let Some(point) = run.idle.iter().find(|point| point.open < point.members) {
        return Some(format!(
            "{} of {} idle inboxes open",
            point.open, point.members
        ));
    }
    if let Some(storm) = &run.join_storm
        && storm.joined < storm.joins
    {
        return Some(format!(
            "{} of {} joins succeeded: {}",
            storm.joined,
            storm.joins,
            storm.first_error.as_deref().unwrap_or("-")
        ));
    }
    None
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

pub fn summarize(runs: &[Run], peer: &str) -> Summary {
    let mine = |scenario: &'static str| {
        runs.iter()
            .filter(move |run| run.peer == peer && run.scenario == scenario && run.ok)
    };
    let of = |scenario: &'static str, pick: fn(&Window) -> f64| {
        median(
            mine(scenario)
                .filter_map(|run| run.latency.as_ref())
                .map(pick)
                .collect(),
        )
    };
    let of_backend = |scenario: &'static str, pick: fn(&Window) -> Option<f64>| {
        median(
            mine(scenario)
                .filter_map(|run| pick(run.latency.as_ref()?))
                .collect(),
        )
    };
    let mut summary = Summary {
        relay_backend_cpu_us: of_backend("relay", |w| w.backend_cpu_us_per_msg),
        relay_backend_script_us: of_backend("relay", |w| w.backend_script_us_per_msg),
        relay_backend_scripts: of_backend("relay", |w| w.backend_scripts_per_msg),
        relay_backend_commands: of_backend("relay", |w| w.backend_commands_per_msg),
        relay_backend_command_us: of_backend("relay", |w| w.backend_command_us_per_msg),
        fanout_backend_cpu_us: of_backend("fanout", |w| w.backend_cpu_us_per_msg),
        relay_p50_ms: of("relay", |w| w.p50_ms),
        relay_p99_ms: of("relay", |w| w.p99_ms),
        relay_max_ms: of("relay", |w| w.max_ms),
        relay_cpu_us: of("relay", |w| w.cpu_us_per_msg),
        relay_generator_cpu_us: of("relay", |w| w.generator_cpu_us_per_msg),
        fanout_p50_ms: of("fanout", |w| w.p50_ms),
        fanout_p99_ms: of("fanout", |w| w.p99_ms),
        fanout_max_ms: of("fanout", |w| w.max_ms),
        fanout_cpu_us: of("fanout", |w| w.cpu_us_per_msg),
        ..Summary::default()
    };
    let shares: Vec<&Vec<f64>> = mine("relay")
        .filter_map(|run| run.latency.as_ref()?.backend_shares.as_ref())
        .collect();
    summary.relay_backend_shares = shares.first().map(|first| {
        (0..first.len())
            .map(|at| {
                median(
                    shares
                        .iter()
                        .filter_map(|each| each.get(at).copied())
                        .collect(),
                )
                .unwrap_or(0.0)
            })
            .collect()
    });
    for window in mine("relay").filter_map(|run| run.latency.as_ref()) {
        summary.relay_delivered += window.delivered;
        summary.relay_expected += window.sent * window.copies;
        summary.relay_late += window.late;
        summary.relay_shed += window.shed;
        summary.relay_errors += window.errors;
    }
    for window in mine("fanout").filter_map(|run| run.latency.as_ref()) {
        summary.fanout_delivered += window.delivered;
        summary.fanout_expected += window.sent * window.copies;
        summary.fanout_late += window.late;
    }
    let saturations: Vec<_> = mine("saturate")
        .filter_map(|run| run.saturate.as_ref())
        .collect();
    summary.held_rate = median(
        saturations
            .iter()
            .map(|s| s.held_rate.unwrap_or(0.0))
            .collect(),
    );
    summary.saturate_stops = saturations.iter().map(|s| s.stop.clone()).collect();
    let mut idle: BTreeMap<usize, (Vec<f64>, usize)> = BTreeMap::new();
    for point in mine("idle").flat_map(|run| &run.idle) {
        let entry = idle
            .entry(point.members)
            .or_insert((Vec::new(), usize::MAX));
        entry.0.push(point.kib_per_member);
        entry.1 = entry.1.min(point.open);
    }
    summary.idle = idle
        .into_iter()
        .filter_map(|(members, (kib, open))| median(kib).map(|kib| (members, (kib, open))))
        .collect();
    let mut idle_backend: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for point in mine("idle").flat_map(|run| &run.idle) {
        if let Some(kib) = point.backend_kib_per_member {
            idle_backend.entry(point.members).or_default().push(kib);
        }
    }
    summary.idle_backend = idle_backend
        .into_iter()
        .filter_map(|(members, kib)| median(kib).map(|kib| (members, kib)))
        .collect();
    let storms: Vec<_> = mine("join-storm")
        .filter_map(|run| run.join_storm.as_ref())
        .collect();
    summary.storm_joins = storms.iter().map(|s| s.joins).sum();
    summary.storm_joined = storms.iter().map(|s| s.joined).sum();
    summary.storm_p50_ms = median(storms.iter().map(|s| s.p50_ms).collect());
    summary.storm_p99_ms = median(storms.iter().map(|s| s.p99_ms).collect());
    summary.storm_max_ms = median(storms.iter().map(|s| s.max_ms).collect());
    summary.storm_cpu_us = median(storms.iter().map(|s| s.cpu_us_per_join).collect());
    summary.setup_joins_per_sec = median(
        mine("idle")
            .filter_map(|run| run.setup_joins_per_sec)
            .collect(),
    );
    summary.failures = runs
        .iter()
        .filter(|run| run.peer == peer && !run.ok)
        .map(|run| {
            format!(
                "{} #{}: {}",
                run.scenario,
                run.repeat,
                run.failure.as_deref().unwrap_or("?")
            )
        })
        .collect();
    summary.disturbed = ["relay", "fanout"]
        .into_iter()
        .flat_map(|scenario| mine(scenario))
        .filter_map(|run| {
            let window = run.latency.as_ref()?;
            (window.late > 0).then(|| {
                format!(
                    "{} #{}: {} sends late, up to {:.1} ms behind their time",
                    run.scenario, run.repeat, window.late, window.max_lag_ms
                )
            })
        })
        .collect();
    summary
}

/// A figure of two peers, repeat by repeat. Within a repeat the peers run
/// one after the other, so the machine's drift from repeat to repeat, which
/// moves every peer's medians, cancels in each pair.
fn pairs(
    runs: &[Run],
    scenario: &str,
    a: &str,
    b: &str,
    pick: fn(&Window) -> f64,
) -> Vec<(f64, f64)> {
    let of = |peer: &str| -> BTreeMap<u32, f64> {
        runs.iter()
            .filter(|run| run.peer == peer && run.scenario == scenario && run.ok)
            .filter_map(|run| {
                run.latency
                    .as_ref()
                    .map(|window| (run.repeat, pick(window)))
            })
            .collect()
    };
    let theirs = of(b);
    of(a)
        .into_iter()
        .filter_map(|(repeat, mine)| theirs.get(&repeat).map(|theirs| (mine, *theirs)))
        .collect()
}

/// How the pairs compared: the range of their ratio when `ratio`, and in
/// how many of them the target held. A verdict on medians that differ by
/// less than the repeats do says little, and this shows it.
fn by_repeat(pairs: &[(f64, f64)], holds: impl Fn(f64, f64) -> bool, ratio: bool) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let held = pairs.iter().filter(|(a, b)| holds(*a, *b)).count();
    let range = if ratio {
        let ratios = pairs.iter().map(|(a, b)| a / b);
        let low = ratios.clone().fold(f64::INFINITY, f64::min);
        let high = ratios.fold(f64::NEG_INFINITY, f64::max);
        let (low, high) = (format!("{low:.2}×"), format!("{high:.2}×"));
        if low == high {
            format!("{low}, ")
        } else {
            format!("{low} to {high}, ")
        }
    } else {
        String::new()
    };
    format!("; by repeat: {range}met in {held} of {}", pairs.len())
}

/// The targets, checked against the medians, with each repeat's
/// pair beside them.
pub fn targets(
    runs: &[Run],
    summaries: &BTreeMap<&str, Summary>,
    largest_idle: Option<usize>,
) -> Vec<Target> {
    let get = |peer: &str| summaries.get(peer);
    let sp = get("signalpost");
    let floor = get("floor");
    let ws = get("sio-ws");
    let mut targets = Vec::new();
    let both = |a: Option<f64>, b: Option<f64>| a.zip(b);
    let cpu = |w: &Window| w.cpu_us_per_msg;

    let relay_cpu = |summary: Option<&Summary>| summary.and_then(|s| s.relay_cpu_us);
    // The floor does no more than relay, so its own ratio says how far any
    // server of this shape can go below socket.io on this machine.
    let floor_against_ws = both(relay_cpu(floor), relay_cpu(ws)).map_or(String::new(), |(f, w)| {
        format!("; the floor: {:.2}×", f / w)
    });
    let cpu_target = |target: &str, other: &str, holds: fn(f64, f64) -> bool, extra: &str| {
        let medians = both(relay_cpu(sp), relay_cpu(get(other)));
        let repeats = pairs(runs, "relay", "signalpost", other, cpu);
        Target {
            target: target.into(),
            measured: medians.map_or("-".into(), |(a, b)| {
                format!(
                    "{a:.1} µs vs {b:.1} µs ({:.2}×){}{extra}",
                    a / b,
                    by_repeat(&repeats, holds, true)
                )
            }),
            met: medians.map(|(a, b)| holds(a, b)),
        }
    };
    targets.push(cpu_target(
        "server CPU per relayed signal ≤ ½ of socket.io websocket",
        "sio-ws",
        |a, b| a <= b / 2.0,
        &floor_against_ws,
    ));
    let no_more = |a: f64, b: f64| a <= b;
    targets.push(cpu_target(
        "server CPU per relayed signal ≤ the floor's",
        "floor",
        no_more,
        "",
    ));
    for (scenario, label, pick) in [
        (
            "relay",
            "relay p99 ≤ the floor's",
            (|s: &Summary| s.relay_p99_ms) as fn(&Summary) -> Option<f64>,
        ),
        ("fanout", "fanout p99 ≤ the floor's", |s: &Summary| {
            s.fanout_p99_ms
        }),
    ] {
        let p99 = both(sp.and_then(pick), floor.and_then(pick));
        let repeats = pairs(runs, scenario, "signalpost", "floor", |w| w.p99_ms);
        targets.push(Target {
            target: label.into(),
            measured: p99.map_or("-".into(), |(a, b)| {
                format!(
                    "{a:.2} ms vs {b:.2} ms{}",
                    by_repeat(&repeats, no_more, false)
                )
            }),
            met: p99.map(|(a, b)| no_more(a, b)),
        });
    }
    if let Some(size) = largest_idle {
        let kib = |s: &Summary| s.idle.get(&size).map(|(kib, _)| *kib);
        let memory = both(sp.and_then(kib), ws.and_then(kib));
        targets.push(Target {
            target: format!(
                "server memory per idle SSE member ≤ ⅓ of socket.io's per websocket client ({size} members)"
            ),
            measured: memory.map_or("-".into(), |(a, b)| {
                format!("{a:.1} KiB vs {b:.1} KiB ({:.2}×)", a / b)
            }),
            met: memory.map(|(a, b)| a <= b / 3.0),
        });
        let open = sp.and_then(|s| s.idle.get(&size)).map(|(_, open)| *open);
        targets.push(Target {
            target: format!("{size} idle members held on this machine"),
            measured: open.map_or("-".into(), |open| {
                format!("fewest open in a repeat: {open} of {size}")
            }),
            met: open.map(|open| open >= size),
        });
        // Over HTTPS: at most 8 KiB a member, and a third of socket.io's
        // per `wss` client.
        let wss = get("sio-wss").and_then(kib);
        for (peer, label) in [
            ("signalpost-tls", "HTTPS/1.1"),
            ("signalpost-h2", "HTTPS/2"),
        ] {
            let Some(mine) = get(peer).and_then(kib) else {
                continue;
            };
            targets.push(Target {
                target: format!(
                    "server memory per idle member over {label} ≤ 8 KiB and ≤ ⅓ of socket.io's per wss client ({size} members)"
                ),
                measured: match wss {
                    Some(wss) => format!("{mine:.1} KiB vs {wss:.1} KiB ({:.2}×)", mine / wss),
                    None => format!("{mine:.1} KiB"),
                },
                met: Some(mine <= 8.0 && wss.is_none_or(|wss| mine <= wss / 3.0)),
            });
        }
    }
    let h2 = get("signalpost-h2");
    if let Some((mine, clear)) = both(relay_cpu(h2), relay_cpu(sp)) {
        targets.push(Target {
            target: "server CPU per relayed signal over HTTPS/2 ≤ 1.3× over cleartext HTTP/1.1"
                .into(),
            measured: format!("{mine:.1} µs vs {clear:.1} µs ({:.2}×)", mine / clear),
            met: Some(mine <= clear * 1.3),
        });
    }
    let p99 = |summary: Option<&Summary>| summary.and_then(|s| s.relay_p99_ms);
    redis_targets(get("signalpost-redis"), sp, &mut targets);
    if let Some(shares) = get("signalpost-cluster-x3").and_then(|s| s.relay_backend_shares.as_ref())
    {
        let fair = 100.0 / shares.len() as f64;
        targets.push(Target {
            target: "3-primary Cluster: each primary's share of Redis's calls in the relay within ±25 % of a third".into(),
            measured: format!("{} %", percents(shares)),
            met: Some(
                shares
                    .iter()
                    .all(|share| (share - fair).abs() <= fair * 0.25),
            ),
        });
    }
    if let Some((mine, floor)) = both(p99(h2), p99(get("floor-h2"))) {
        targets.push(Target {
            target: "relay p99 over HTTPS/2 ≤ the floor's over HTTPS/2".into(),
            measured: format!("{mine:.2} ms vs {floor:.2} ms"),
            met: Some(mine <= floor),
        });
    }
    targets
}

/// The scale-out issue's targets for one node on one redis-server.
fn redis_targets(redis: Option<&Summary>, memory: Option<&Summary>, targets: &mut Vec<Target>) {
    let Some(redis) = redis else {
        return;
    };
    if let Some(held) = redis.held_rate {
        targets.push(Target {
            target: "one node on Redis: at least 18 000 signals/s held".into(),
            measured: format!("{held:.0} signals/s"),
            met: Some(held >= 18_000.0),
        });
    }
    if let Some(functions) = redis.relay_backend_script_us {
        // Signals go by plain commands as well as by functions: both count.
        let us = functions + redis.relay_backend_command_us.unwrap_or(0.0);
        let cpu = redis.relay_backend_cpu_us.map_or(String::new(), |cpu| {
            format!(" (its whole CPU: {cpu:.1} µs)")
        });
        targets.push(Target {
            target:
                "one node on Redis: Redis commands' time per relayed signal ≤ 20 µs (commandstats: functions' and other commands', at most)"
                    .into(),
            measured: format!("{us:.1} µs{cpu}"),
            met: Some(us <= 20.0),
        });
    }
    if let Some((node, alone)) = redis.relay_cpu_us.zip(memory.and_then(|s| s.relay_cpu_us)) {
        targets.push(Target {
            target: "one node on Redis: node CPU per relayed signal ≤ 1.5× the memory node's"
                .into(),
            measured: format!("{node:.1} µs vs {alone:.1} µs ({:.2}×)", node / alone),
            met: Some(node <= alone * 1.5),
        });
    }
    if let Some(p99) = redis.relay_p99_ms {
        targets.push(Target {
            target: "one node on Redis: relay p99 at 2 000/s ≤ 2 ms".into(),
            measured: format!("{p99:.2} ms"),
            met: Some(p99 <= 2.0),
        });
    }
}

/// Percentages as `34.4 / 30.8 / 34.8`.
fn percents(shares: &[f64]) -> String {
    shares
        .iter()
        .map(|share| format!("{share:.1}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

/// `p50 / p99 / max` in milliseconds, as one cell.
fn latencies(p50: Option<f64>, p99: Option<f64>, max: Option<f64>) -> String {
    format!("{} / {} / {}", cell(p50, 2), cell(p99, 2), cell(max, 1))
}

fn ratio(done: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{done}/{of}")
    }
}

/// The markdown table: one column per peer, one row per figure.
pub fn table(
    peers: &[(&str, &str)],
    summaries: &BTreeMap<&str, Summary>,
    targets: &[Target],
    sizes: &Sizes,
    ran: &dyn Fn(&str) -> bool,
    notes: &[String],
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| figure (median of the repeats) | {} |",
        peers.iter().map(|p| p.1).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---:|".repeat(peers.len()));
    // The backend's rows only when a peer has a backend process.
    let backend = summaries.values().any(|s| {
        s.relay_backend_cpu_us.is_some()
            || s.fanout_backend_cpu_us.is_some()
            || !s.idle_backend.is_empty()
    });
    let mut row = |label: String, value: &dyn Fn(&Summary) -> String| {
        let cells: Vec<String> = peers
            .iter()
            .map(|(peer, _)| summaries.get(peer).map_or("-".into(), value))
            .collect();
        let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
    };
    if ran("relay") {
        let relay = format!(
            "relay ({} rooms of 2, {:.0} signals/s)",
            sizes.relay_rooms, sizes.relay_rate
        );
        row(format!("{relay}: p50 / p99 / max ms"), &|s| {
            latencies(s.relay_p50_ms, s.relay_p99_ms, s.relay_max_ms)
        });
        row("relay: delivered / sent (all repeats)".into(), &|s| {
            ratio(s.relay_delivered, s.relay_expected)
        });
        row("relay: server CPU µs per relayed signal".into(), &|s| {
            cell(s.relay_cpu_us, 1)
        });
        if backend {
            row("relay: Redis CPU µs per relayed signal".into(), &|s| {
                cell(s.relay_backend_cpu_us, 1)
            });
            row(
                "relay: Redis functions' time µs / functions / other commands / their time µs per relayed signal (commandstats)".into(),
                &|s| {
                    format!(
                        "{} / {} / {} / {}",
                        cell(s.relay_backend_script_us, 1),
                        cell(s.relay_backend_scripts, 2),
                        cell(s.relay_backend_commands, 2),
                        cell(s.relay_backend_command_us, 1)
                    )
                },
            );
            if summaries.values().any(|s| s.relay_backend_shares.is_some()) {
                row(
                    "relay: each primary's share of Redis's calls, % (commandstats)".into(),
                    &|s| {
                        s.relay_backend_shares
                            .as_deref()
                            .map_or("-".into(), percents)
                    },
                );
            }
        }
        row(
            "relay: the generator's own CPU µs per signal".into(),
            &|s| cell(s.relay_generator_cpu_us, 1),
        );
        row("relay: late / shed / failed sends".into(), &|s| {
            format!("{} / {} / {}", s.relay_late, s.relay_shed, s.relay_errors)
        });
    }
    if ran("fanout") {
        let fanout = format!(
            "fanout (room of {}, {:.0} broadcasts/s)",
            sizes.fanout_members, sizes.fanout_rate
        );
        row(format!("{fanout}: p50 / p99 / max ms"), &|s| {
            latencies(s.fanout_p50_ms, s.fanout_p99_ms, s.fanout_max_ms)
        });
        row(
            "fanout: delivered / sent copies (all repeats)".into(),
            &|s| ratio(s.fanout_delivered, s.fanout_expected),
        );
        row("fanout: server CPU µs per delivered copy".into(), &|s| {
            cell(s.fanout_cpu_us, 1)
        });
        if backend {
            row("fanout: Redis CPU µs per delivered copy".into(), &|s| {
                cell(s.fanout_backend_cpu_us, 1)
            });
        }
    }
    if ran("saturate") {
        row(
            format!(
                "saturate: highest rate held, signals/s (p99 ≤ {:.0} ms, nothing lost)",
                sizes.saturate_p99_ms
            ),
            &|s| cell(s.held_rate, 0),
        );
    }
    if ran("idle") {
        for &size in &sizes.idle_sizes {
            row(format!("idle {size}: server KiB per member"), &|s| {
                s.idle
                    .get(&size)
                    .map_or("-".into(), |(kib, _)| format!("{kib:.1}"))
            });
            if backend {
                row(format!("idle {size}: Redis KiB per member"), &|s| {
                    cell(s.idle_backend.get(&size).copied(), 1)
                });
            }
            row(
                format!("idle {size}: inboxes open (fewest in a repeat)"),
                &|s| {
                    s.idle
                        .get(&size)
                        .map_or("-".into(), |(_, open)| format!("{open}/{size}"))
                },
            );
        }
        row("idle: joins per second while setting up".into(), &|s| {
            cell(s.setup_joins_per_sec, 0)
        });
    }
    if ran("join-storm") {
        let storm = format!("join storm ({} at once)", sizes.storm_joins);
        row(
            format!("{storm}: to inbox open, p50 / p99 / max ms"),
            &|s| {
                format!(
                    "{} / {} / {}",
                    cell(s.storm_p50_ms, 1),
                    cell(s.storm_p99_ms, 1),
                    cell(s.storm_max_ms, 1)
                )
            },
        );
        row("join storm: joined (all repeats)".into(), &|s| {
            ratio(s.storm_joined as u64, s.storm_joins as u64)
        });
        row("join storm: server CPU µs per join".into(), &|s| {
            cell(s.storm_cpu_us, 0)
        });
    }
    let _ = writeln!(
        md,
        "\n| target (same run, same machine, same rate) | measured | |\n|---|---|---|"
    );
    for target in targets {
        let verdict = match target.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not run",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {verdict} |",
            target.target, target.measured
        );
    }

    let _ = writeln!(md);
    for (peer, label) in peers {
        let Some(summary) = summaries.get(peer) else {
            continue;
        };
        if !summary.saturate_stops.is_empty() {
            let _ = writeln!(
                md,
                "- {label}, saturate stopped: {}",
                summary.saturate_stops.join("; ")
            );
        }
        for failure in &summary.failures {
            let _ = writeln!(md, "- {label}, **failed run**: {failure}");
        }
        for run in &summary.disturbed {
            let _ = writeln!(
                md,
                "- {label}, generator behind in {run}; that run's latencies include the wait"
            );
        }
    }
    for note in notes {
        let _ = writeln!(md, "- {note}");
    }
    md
}

/// Reads the runs, writes the three result files, returns the table.
pub fn write(runs_path: &Path, out: &Path, smoke: bool, notes: &[String]) -> Result<String> {
    let text = std::fs::read_to_string(runs_path)
        .with_context(|| format!("reading {}", runs_path.display()))?;
    let runs: Vec<Run> = text
        .lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a line of runs is not a run")?;
    let sizes = if smoke { Sizes::smoke() } else { Sizes::full() };
    let peers: Vec<(&str, &str)> = PEERS
        .iter()
        .copied()
        .filter(|(peer, _)| runs.iter().any(|run| run.peer == *peer))
        .collect();
    let summaries: BTreeMap<&str, Summary> = peers
        .iter()
        .map(|(peer, _)| (*peer, summarize(&runs, peer)))
        .collect();
    let largest_idle = sizes.idle_sizes.iter().copied().max();
    let targets = targets(&runs, &summaries, largest_idle);
    let ran = |scenario: &str| runs.iter().any(|run| run.scenario == scenario);
    let table = table(&peers, &summaries, &targets, &sizes, &ran, notes);

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let results = Results {
        smoke,
        sizes: sizes.clone(),
        notes,
        summary: summaries.iter().map(|(peer, s)| (*peer, s)).collect(),
        targets: &targets,
        runs: &runs,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    std::fs::write(out.join("results.md"), &table)?;
    std::fs::write(
        out.join("chart.svg"),
        chart::svg(&peers, &summaries, &sizes),
    )?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn a_window_with_a_lost_copy_fails_the_smoke_check() {
        let mut run = Run {
            latency: Some(Window {
                sent: 10,
                copies: 2,
                delivered: 20,
                ..Window::default()
            }),
            ..Run::default()
        };
        assert_eq!(loss(&run), None);
        if let Some(window) = run.latency.as_mut() {
            window.delivered = 19;
        }
        assert!(loss(&run).is_some());
    }

    fn relay(peer: &str, repeat: u32, cpu_us_per_msg: f64, p99_ms: f64) -> Run {
        Run {
            peer: peer.into(),
            scenario: "relay".into(),
            repeat,
            ok: true,
            latency: Some(Window {
                cpu_us_per_msg,
                p99_ms,
                ..Window::default()
            }),
            ..Run::default()
        }
    }

    #[test]
    fn a_target_shows_how_each_repeat_s_pair_compared() {
        let mut runs = vec![
            relay("signalpost", 1, 40.0, 0.40),
            relay("floor", 1, 44.0, 0.38),
            relay("signalpost", 2, 43.0, 0.41),
            relay("floor", 2, 41.0, 0.42),
            relay("signalpost", 3, 42.0, 0.45),
            relay("floor", 3, 42.0, 0.43),
            relay("sio-ws", 1, 80.0, 0.6),
            relay("sio-ws", 2, 88.0, 0.6),
            relay("sio-ws", 3, 76.0, 0.6),
            // Paired with nothing: a repeat the floor did not finish.
            relay("signalpost", 4, 10.0, 0.10),
        ];
        runs.push(Run {
            ok: false,
            ..relay("floor", 4, 1.0, 0.01)
        });
        let summaries: BTreeMap<&str, Summary> = ["signalpost", "floor", "sio-ws"]
            .into_iter()
            .map(|peer| (peer, summarize(&runs, peer)))
            .collect();
        let targets = targets(&runs, &summaries, None);

        let half = &targets[0];
        assert_eq!(
            half.measured,
            "41.0 µs vs 80.0 µs (0.51×); by repeat: 0.49× to 0.55×, met in 2 of 3; the floor: 0.53×"
        );
        assert_eq!(half.met, Some(false));
        let floor = &targets[1];
        assert_eq!(
            floor.measured,
            "41.0 µs vs 42.0 µs (0.98×); by repeat: 0.91× to 1.05×, met in 2 of 3"
        );
        assert_eq!(floor.met, Some(true));
        let p99 = &targets[2];
        assert_eq!(p99.measured, "0.41 ms vs 0.42 ms; by repeat: met in 1 of 3");
        assert_eq!(p99.met, Some(true));
        assert_eq!(targets[3].measured, "-");
        assert!(summaries["signalpost"].disturbed.is_empty());
        assert_eq!(targets[3].met, None);
    }

    #[test]
    fn a_cluster_s_shares_are_the_median_of_each_primary_s_and_a_third_is_the_aim() {
        let cluster = |repeat: u32, shares: Vec<f64>| {
            let mut run = relay("signalpost-cluster-x3", repeat, 120.0, 1.0);
            if let Some(window) = run.latency.as_mut() {
                window.backend_shares = Some(shares);
            }
            run
        };
        // The Cluster's target of a run of these repeats.
        let spread = |runs: &[Run]| {
            let summaries: BTreeMap<&str, Summary> = [(
                "signalpost-cluster-x3",
                summarize(runs, "signalpost-cluster-x3"),
            )]
            .into_iter()
            .collect();
            targets(runs, &summaries, None)
                .into_iter()
                .find(|target| target.target.starts_with("3-primary Cluster"))
                .expect("the Cluster's target")
        };
        let even = spread(&[
            cluster(1, vec![34.0, 31.0, 35.0]),
            cluster(2, vec![36.0, 30.0, 34.0]),
            cluster(3, vec![30.0, 33.0, 37.0]),
        ]);
        assert_eq!(even.measured, "34.0 / 31.0 / 35.0 %");
        assert_eq!(even.met, Some(true));
        let lopsided = spread(&[cluster(1, vec![50.0, 25.0, 25.0])]);
        assert_eq!(lopsided.met, Some(false));
    }

    #[test]
    fn a_run_whose_generator_fell_behind_is_named_under_the_table() {
        let mut late = relay("floor", 2, 48.0, 7.8);
        if let Some(window) = late.latency.as_mut() {
            window.late = 181;
            window.max_lag_ms = 37.85;
        }
        let runs = vec![relay("floor", 1, 42.0, 0.4), late];
        let summary = summarize(&runs, "floor");
        assert_eq!(
            summary.disturbed,
            ["relay #2: 181 sends late, up to 37.9 ms behind their time"]
        );
        let summaries = BTreeMap::from([("floor", summary)]);
        let md = table(
            &[("floor", "floor (axum relay)")],
            &summaries,
            &[],
            &Sizes::full(),
            &|scenario| scenario == "relay",
            &[],
        );
        assert!(md.contains(
            "- floor (axum relay), generator behind in relay #2: 181 sends late, up to 37.9 ms behind their time; that run's latencies include the wait"
        ));
    }

    #[test]
    fn one_pair_gives_one_ratio_not_a_range() {
        let text = by_repeat(&[(43.0, 86.0)], |a, b| a <= b / 2.0, true);
        assert_eq!(text, "; by repeat: 0.50×, met in 1 of 1");
        assert_eq!(by_repeat(&[], |a, b| a <= b, true), "");
    }
}
