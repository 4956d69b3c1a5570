//! The scenarios: what is set up, what is offered, what is measured. Each
//! returns one `Run`; the runner starts a fresh server for every run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::MissedTickBehavior;

use crate::commandstats;
use crate::peer::{Connections, Ctx, Member, Sent};
use crate::procfs::Process;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Rooms of 2, each member trickling candidates to the other, at a fixed rate.
    Relay,
    /// The relay setup at rising rates until p99 > 50 ms or anything is lost.
    Saturate,
    /// One room of 10, one member broadcasting to the other 9.
    Fanout,
    /// Members that only hold their inbox open: the server's memory per member.
    Idle,
    /// Many joins at once, each with its inbox opened.
    JoinStorm,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Saturate => "saturate",
            Self::Fanout => "fanout",
            Self::Idle => "idle",
            Self::JoinStorm => "join-storm",
        }
    }
}

/// The sizes of every scenario; `full` is the benchmark, `smoke` checks in
/// seconds that every peer still runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sizes {
    pub relay_rooms: usize,
    pub relay_rate: f64,
    pub warm_secs: f64,
    pub measure_secs: f64,
    pub drain_secs: f64,
    pub fanout_members: usize,
    pub fanout_rate: f64,
    pub saturate_start: f64,
    pub saturate_factor: f64,
    pub saturate_max_steps: usize,
    pub saturate_max_rate: f64,
    pub saturate_warm_secs: f64,
    pub saturate_secs: f64,
    pub saturate_p99_ms: f64,
    pub idle_sizes: Vec<usize>,
    pub idle_settle_secs: f64,
    pub storm_joins: usize,
}

/// How long one measurement warms up, measures and drains.
#[derive(Clone, Copy)]
struct Phases {
    warm_secs: f64,
    secs: f64,
    drain_secs: f64,
}

impl Sizes {
    /// The phases of a relay or fanout measurement.
    fn steady(&self) -> Phases {
        Phases {
            warm_secs: self.warm_secs,
            secs: self.measure_secs,
            drain_secs: self.drain_secs,
        }
    }

    /// The phases of one saturation step: shorter, and the drain capped so
    /// that a step past saturation does not wait out the whole drain.
    fn saturate_step(&self) -> Phases {
        Phases {
            warm_secs: self.saturate_warm_secs,
            secs: self.saturate_secs,
            drain_secs: self.drain_secs.min(2.0),
        }
    }

    pub fn full() -> Self {
        Self {
            relay_rooms: 200,
            relay_rate: 2000.0,
            warm_secs: 2.0,
            measure_secs: 10.0,
            drain_secs: 5.0,
            fanout_members: 10,
            fanout_rate: 200.0,
            saturate_start: 2000.0,
            saturate_factor: 1.25,
            saturate_max_steps: 16,
            saturate_max_rate: 200_000.0,
            saturate_warm_secs: 0.5,
            saturate_secs: 3.0,
            saturate_p99_ms: 50.0,
            idle_sizes: vec![2000, 10_000],
            idle_settle_secs: 2.0,
            storm_joins: 1000,
        }
    }

    pub fn smoke() -> Self {
        Self {
            relay_rooms: 10,
            relay_rate: 200.0,
            warm_secs: 0.3,
            measure_secs: 1.0,
            drain_secs: 3.0,
            fanout_members: 10,
            fanout_rate: 50.0,
            saturate_start: 200.0,
            saturate_factor: 2.0,
            saturate_max_steps: 2,
            saturate_max_rate: 1000.0,
            saturate_warm_secs: 0.2,
            saturate_secs: 0.5,
            saturate_p99_ms: 50.0,
            idle_sizes: vec![50, 200],
            idle_settle_secs: 0.3,
            storm_joins: 100,
        }
    }
}

/// One scenario against one server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    pub peer: String,
    pub scenario: String,
    pub repeat: u32,
    /// False when the scenario could not be carried out (setup failed, the
    /// server died); `failure` says why.
    pub ok: bool,
    pub failure: Option<String>,
    pub wall_secs: f64,
    /// Joins per second while the members were set up.
    pub setup_joins_per_sec: Option<f64>,
    pub latency: Option<Window>,
    pub saturate: Option<Saturation>,
    pub idle: Vec<IdlePoint>,
    pub join_storm: Option<JoinStorm>,
}

/// One measured window at one offered rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Window {
    /// Signals offered per second (scheduled sends, not deliveries).
    pub rate: f64,
    pub secs: f64,
    /// Signals sent; each is expected `copies` times.
    pub sent: u64,
    pub copies: u64,
    /// Copies received, at most `copies` per signal.
    pub delivered: u64,
    pub duplicates: u64,
    /// Sends the server refused or that failed on the way.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Sends dispatched more than `LATE` after their slot: the generator fell behind.
    pub late: u64,
    pub max_lag_ms: f64,
    /// Sends not made because too much was in flight.
    pub shed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The server's user + system CPU over the window and its drain, per delivered copy.
    pub cpu_us_per_msg: f64,
    /// The same for the generator: when it nears a core's worth, the
    /// generator, not the server, is what limits the rate.
    pub generator_cpu_us_per_msg: f64,
    /// The same for the server's backend process (redis-server), if any.
    #[serde(default)]
    pub backend_cpu_us_per_msg: Option<f64>,
    /// The time the backend's functions took by its own account (`INFO
    /// commandstats`), and their calls, per delivered copy.
    #[serde(default)]
    pub backend_script_us_per_msg: Option<f64>,
    #[serde(default)]
    pub backend_scripts_per_msg: Option<f64>,
    /// The backend's other commands per delivered copy, those the
    /// functions called included, and their time.
    #[serde(default)]
    pub backend_commands_per_msg: Option<f64>,
    #[serde(default)]
    pub backend_command_us_per_msg: Option<f64>,
    /// Each primary's share of the calls, in percent, when there are
    /// several (a Cluster).
    #[serde(default)]
    pub backend_shares: Option<Vec<f64>>,
}

impl Window {
    pub fn lost(&self) -> u64 {
        (self.sent * self.copies).saturating_sub(self.delivered)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saturation {
    pub steps: Vec<Window>,
    /// The highest offered rate with p99 within bounds and nothing lost.
    pub held_rate: Option<f64>,
    /// Why the ramp stopped.
    pub stop: String,
    /// Steps measured again because the generator fell behind.
    #[serde(default)]
    pub retried_steps: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdlePoint {
    pub members: usize,
    /// Inboxes still open after the settle time.
    pub open: usize,
    pub rss_base_kib: u64,
    pub rss_kib: u64,
    pub kib_per_member: f64,
    /// The growth of the backend process's resident memory (redis-server),
    /// if any, per member.
    #[serde(default)]
    pub backend_kib_per_member: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinStorm {
    pub joins: usize,
    pub joined: usize,
    pub first_error: Option<String>,
    /// From the start of the storm to each member's open inbox.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub cpu_us_per_join: f64,
}

/// A send more than this after its slot counts as late.
const LATE: Duration = Duration::from_millis(5);

/// How many times a saturation step is measured when the generator was
/// starved during it.
const SATURATE_ATTEMPTS: u32 = 3;

/// Joins in flight while a scenario sets up its members.
const SETUP_CONCURRENCY: usize = 64;

pub async fn run(
    ctx: Arc<Ctx>,
    server: Process,
    scenario: Scenario,
    sizes: &Sizes,
    run: &mut Run,
) -> Result<()> {
    match scenario {
        Scenario::Relay => {
            let members = setup(&ctx, run, sizes.relay_rooms, 2).await?;
            let routes = pairs(&members);
            let window = measure(
                &ctx,
                server,
                &routes,
                1,
                sizes.relay_rate,
                sizes.steady(),
                &mut 0,
            )
            .await?;
            run.latency = Some(window);
        }
        Scenario::Fanout => {
            let members = setup(&ctx, run, 1, sizes.fanout_members).await?;
            let sender = members
                .first()
                .and_then(|room| room.first())
                .context("the fanout room is empty")?;
            let routes = [(sender, None)];
            let copies = (sizes.fanout_members - 1) as u64;
            let window = measure(
                &ctx,
                server,
                &routes,
                copies,
                sizes.fanout_rate,
                sizes.steady(),
                &mut 0,
            )
            .await?;
            run.latency = Some(window);
        }
        Scenario::Saturate => {
            let members = setup(&ctx, run, sizes.relay_rooms, 2).await?;
            let routes = pairs(&members);
            run.saturate = Some(saturate(&ctx, server, &routes, sizes).await?);
        }
        Scenario::Idle => idle(&ctx, server, sizes, run).await?,
        Scenario::JoinStorm => run.join_storm = Some(join_storm(&ctx, server, sizes).await?),
    }
    if !server.is_alive() {
        anyhow::bail!("the server process is gone");
    }
    Ok(())
}

/// Joins `rooms` rooms of `per_room` members, inboxes open, a few joins at
/// a time so that setup is not itself a storm.
async fn setup(
    ctx: &Arc<Ctx>,
    run: &mut Run,
    rooms: usize,
    per_room: usize,
) -> Result<Vec<Vec<Member>>> {
    let started = Instant::now();
    let members = join_many(
        ctx,
        "room",
        0,
        rooms * per_room,
        per_room,
        Connections::OwnPerMember,
    )
    .await?;
    run.setup_joins_per_sec = Some(members.len() as f64 / started.elapsed().as_secs_f64());
    let mut rooms_of: Vec<Vec<Member>> = (0..rooms).map(|_| Vec::new()).collect();
    for (index, member) in members.into_iter().enumerate() {
        rooms_of[index / per_room].push(member);
    }
    Ok(rooms_of)
}

/// Members `first..first + count`, member `i` in room `i / per_room`, in order.
async fn join_many(
    ctx: &Arc<Ctx>,
    prefix: &str,
    first: usize,
    count: usize,
    per_room: usize,
    connections: Connections,
) -> Result<Vec<Member>> {
    let capacity = u32::try_from(per_room).context("room size")?;
    let joins = futures_util::stream::iter(first..first + count)
        .map(|index| {
            let room = format!("{prefix}-{}", index / per_room);
            async move {
                ctx.join(&room, capacity, connections)
                    .await
                    .with_context(|| format!("member {index} joining {room}"))
            }
        })
        .buffered(SETUP_CONCURRENCY);
    joins.collect::<Vec<_>>().await.into_iter().collect()
}

/// In each room, each member sends to the next one.
fn pairs(rooms: &[Vec<Member>]) -> Vec<(&Member, Option<&Member>)> {
    rooms
        .iter()
        .flat_map(|room| {
            room.iter()
                .enumerate()
                .map(move |(index, member)| (member, Some(&room[(index + 1) % room.len()])))
        })
        .collect()
}

/// A warm-up at `rate`, then a measured window with the server's CPU read
/// on both sides of it, then a drain until everything in flight arrived or
/// `drain_secs` passed.
async fn measure(
    ctx: &Arc<Ctx>,
    server: Process,
    routes: &[(&Member, Option<&Member>)],
    copies: u64,
    rate: f64,
    phases: Phases,
    next_seq: &mut u64,
) -> Result<Window> {
    let Phases {
        warm_secs,
        secs,
        drain_secs,
    } = phases;
    if warm_secs > 0.0 {
        drive(ctx, routes, copies, rate, warm_secs, next_seq).await;
    }
    let first = *next_seq;
    let planned = scheduled(rate, secs);
    ctx.recorder.open_window(
        first..first + planned,
        u8::try_from(copies).context("copies per signal")?,
    );
    let errors_before = ctx.send_errors.load(Ordering::Relaxed);
    let generator = Process::new(std::process::id())?;
    let backend = server.backend();
    let cpu_before = server.cpu()?;
    let own_before = generator.cpu()?;
    let backend_before = backend.map(|backend| backend.cpu()).transpose()?;
    let commands_before = commands(ctx).await?;
    let driven = drive(ctx, routes, copies, rate, secs, next_seq).await;
    drain(ctx, drain_secs).await;
    let cpu = server.cpu()?.saturating_sub(cpu_before);
    let own = generator.cpu()?.saturating_sub(own_before);
    let backend_cpu = match (backend, backend_before) {
        (Some(backend), Some(before)) => Some(backend.cpu()?.saturating_sub(before)),
        _ => None,
    };
    let each = match (commands(ctx).await?, commands_before) {
        (Some(after), Some(before)) => Some(
            after
                .iter()
                .zip(&before)
                .map(|(after, before)| after.since(*before))
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    let commands = each.as_deref().map(commandstats::sum);
    let backend_shares = each
        .as_deref()
        .filter(|each| each.len() > 1)
        .map(commandstats::shares);
    let receipts = ctx.recorder.receipts();
    let per_copy_count = |count: u64| {
        if receipts.delivered == 0 {
            0.0
        } else {
            count as f64 / receipts.delivered as f64
        }
    };
    let per_copy = |spent: Duration| {
        if receipts.delivered == 0 {
            0.0
        } else {
            spent.as_secs_f64() * 1e6 / receipts.delivered as f64
        }
    };
    Ok(Window {
        rate,
        secs,
        sent: driven.sent,
        copies,
        delivered: receipts.delivered,
        duplicates: receipts.duplicates,
        errors: ctx.send_errors.load(Ordering::Relaxed) - errors_before,
        last_error: ctx
            .last_error
            .lock()
            .expect("no panic holds the lock")
            .clone(),
        late: driven.late,
        max_lag_ms: driven.max_lag.as_secs_f64() * 1000.0,
        shed: driven.shed,
        p50_ms: receipts.p50_ms,
        p99_ms: receipts.p99_ms,
        max_ms: receipts.max_ms,
        cpu_us_per_msg: per_copy(cpu),
        generator_cpu_us_per_msg: per_copy(own),
        backend_cpu_us_per_msg: backend_cpu.map(per_copy),
        backend_script_us_per_msg: commands
            .map(|totals| per_copy(Duration::from_micros(totals.scripts.usec))),
        backend_scripts_per_msg: commands.map(|totals| per_copy_count(totals.scripts.calls)),
        backend_commands_per_msg: commands.map(|totals| per_copy_count(totals.commands.calls)),
        backend_command_us_per_msg: commands
            .map(|totals| per_copy(Duration::from_micros(totals.commands.usec))),
        backend_shares,
    })
}

/// The store's commandstats, each primary's, when the peer has a store.
async fn commands(ctx: &Ctx) -> Result<Option<Vec<commandstats::Totals>>> {
    if ctx.backend_addrs.is_empty() {
        return Ok(None);
    }
    commandstats::read_all(&ctx.backend_addrs).await.map(Some)
}

fn scheduled(rate: f64, secs: f64) -> u64 {
    (rate * secs).round().max(1.0) as u64
}

struct Driven {
    sent: u64,
    shed: u64,
    late: u64,
    max_lag: Duration,
}

/// Open loop: send `i` is due at `i / rate` seconds whatever the server
/// answered so far. A 1 ms tick sends everything that fell due; a send
/// that goes out more than `LATE` after its slot is counted, never dropped.
async fn drive(
    ctx: &Arc<Ctx>,
    routes: &[(&Member, Option<&Member>)],
    copies: u64,
    rate: f64,
    secs: f64,
    next_seq: &mut u64,
) -> Driven {
    let total = scheduled(rate, secs);
    let slot = Duration::from_secs_f64(1.0 / rate);
    let mut driven = Driven {
        sent: 0,
        shed: 0,
        late: 0,
        max_lag: Duration::ZERO,
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut issued: u64 = 0;
    while issued < total {
        ticker.tick().await;
        let now = started.elapsed();
        let due = ((now.as_secs_f64() * rate) as u64 + 1).min(total);
        while issued < due {
            let lag = now.saturating_sub(slot.mul_f64(issued as f64));
            if lag > LATE {
                driven.late += 1;
            }
            driven.max_lag = driven.max_lag.max(lag);
            let (from, to) = routes[(issued % routes.len() as u64) as usize];
            match ctx.send(from, to, *next_seq, copies) {
                Sent::Dispatched => driven.sent += 1,
                Sent::Shed => driven.shed += 1,
            }
            *next_seq += 1;
            issued += 1;
        }
    }
    driven
}

/// Waits until nothing is in flight, or `secs`.
async fn drain(ctx: &Ctx, secs: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while ctx.recorder.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn saturate(
    ctx: &Arc<Ctx>,
    server: Process,
    routes: &[(&Member, Option<&Member>)],
    sizes: &Sizes,
) -> Result<Saturation> {
    let mut saturation = Saturation::default();
    let mut rate = sizes.saturate_start;
    let mut next_seq = 0;
    for _ in 0..sizes.saturate_max_steps {
        let mut attempt = 1;
        let (step, stop) = loop {
            let step = measure(
                ctx,
                server,
                routes,
                1,
                rate,
                sizes.saturate_step(),
                &mut next_seq,
            )
            .await?;
            let stop = saturation_verdict(&step, server, sizes);
            // A generator that fell behind its own schedule was starved of
            // its core (by another process: it needs far less than a core
            // at these rates); what it measured says little about the
            // server, so the step is measured again.
            let generator_late = step.late * 100 > step.sent;
            if stop.is_some() && generator_late && attempt < SATURATE_ATTEMPTS {
                attempt += 1;
                saturation.retried_steps += 1;
                continue;
            }
            break (step, stop);
        };
        let offered = step.rate;
        saturation.steps.push(step);
        if let Some(stop) = stop {
            saturation.stop = format!("at {offered:.0}/s: {stop}");
            return Ok(saturation);
        }
        saturation.held_rate = Some(offered);
        rate = (rate * sizes.saturate_factor).round();
        if rate > sizes.saturate_max_rate {
            break;
        }
    }
    saturation.stop = "the last step held (the ramp's end)".to_owned();
    Ok(saturation)
}

/// Why a saturation step did not hold, if it did not.
fn saturation_verdict(step: &Window, server: Process, sizes: &Sizes) -> Option<String> {
    if !server.is_alive() {
        Some("the server died".to_owned())
    } else if step.shed > 0 {
        Some(format!("{} sends shed: too much in flight", step.shed))
    } else if step.errors > 0 {
        Some(format!("{} sends failed", step.errors))
    } else if step.lost() > 0 {
        Some(format!("{} signals lost", step.lost()))
    } else if step.p99_ms > sizes.saturate_p99_ms {
        Some(format!(
            "p99 {:.1} ms > {} ms",
            step.p99_ms, sizes.saturate_p99_ms
        ))
    } else if step.late * 100 > step.sent {
        // The server kept up but the generator did not: the rate held is
        // a lower bound.
        Some(format!(
            "the generator fell behind ({} late sends)",
            step.late
        ))
    } else {
        None
    }
}

/// Grows the number of idle members to each of `sizes.idle_sizes` in turn
/// (rooms of 2) and reads the server's resident memory at each size.
async fn idle(ctx: &Arc<Ctx>, server: Process, sizes: &Sizes, run: &mut Run) -> Result<()> {
    let settle = Duration::from_secs_f64(sizes.idle_settle_secs);
    tokio::time::sleep(settle).await;
    let rss_base_kib = server.rss_kib()?;
    let backend = server.backend();
    let backend_base_kib = backend.map(|backend| backend.rss_kib()).transpose()?;
    let mut members: Vec<Member> = Vec::new();
    let mut joining = Duration::ZERO;
    for &size in &sizes.idle_sizes {
        let first = members.len();
        if size <= first {
            continue;
        }
        let joined_at = Instant::now();
        members.extend(join_many(ctx, "idle", first, size - first, 2, Connections::Shared).await?);
        joining += joined_at.elapsed();
        tokio::time::sleep(settle).await;
        let rss_kib = server.rss_kib()?;
        let backend_kib = backend.map(|backend| backend.rss_kib()).transpose()?;
        run.idle.push(IdlePoint {
            members: size,
            open: ctx.open_inboxes.load(Ordering::Relaxed),
            rss_base_kib,
            rss_kib,
            kib_per_member: rss_kib.saturating_sub(rss_base_kib) as f64 / size as f64,
            backend_kib_per_member: backend_kib
                .zip(backend_base_kib)
                .map(|(kib, base)| kib.saturating_sub(base) as f64 / size as f64),
        });
    }
    run.setup_joins_per_sec = Some(members.len() as f64 / joining.as_secs_f64().max(1e-9));
    Ok(())
}

/// `storm_joins` members (rooms of 2) join at the same instant; each one's
/// time runs until its inbox is open.
async fn join_storm(ctx: &Arc<Ctx>, server: Process, sizes: &Sizes) -> Result<JoinStorm> {
    let joins = sizes.storm_joins;
    let cpu_before = server.cpu()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..joins)
        .map(|index| {
            let ctx = Arc::clone(ctx);
            tokio::spawn(async move {
                let member = ctx
                    .join(&format!("storm-{}", index / 2), 2, Connections::Shared)
                    .await?;
                Ok::<_, anyhow::Error>((started.elapsed(), member))
            })
        })
        .collect();
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).expect("the bounds are valid");
    let mut members = Vec::with_capacity(joins);
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok((took, member))) => {
                histogram.saturating_record(took.as_micros().max(1) as u64);
                members.push(member);
            }
            Ok(Err(error)) => {
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
            Err(error) => {
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    let cpu = server.cpu()?.saturating_sub(cpu_before);
    let ms = |us: u64| us as f64 / 1000.0;
    let joined = members.len();
    Ok(JoinStorm {
        joins,
        joined,
        first_error,
        p50_ms: ms(histogram.value_at_quantile(0.5)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        max_ms: ms(histogram.max()),
        cpu_us_per_join: if joined == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1e6 / joined as f64
        },
    })
}
