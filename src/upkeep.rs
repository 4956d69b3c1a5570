//! The server's background chores, on one task: reaping the members whose
//! inbox nobody reads, now and then forgetting the rate-limit buckets of
//! clients gone quiet, and folding the metrics' histograms.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::hub::Hub;
use crate::observe::metrics;
use crate::rate::Limiters;

/// Runs until `shutdown`, checking at least once a second (and at least
/// twice per member timeout, so a short timeout is honoured closely).
pub async fn run(
    hub: Hub,
    limiters: Arc<Limiters>,
    member_timeout: Duration,
    shutdown: CancellationToken,
) {
    let period = (member_timeout / 2).min(Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut forget = tokio::time::interval(Duration::from_secs(60));
    let mut upkeep = tokio::time::interval(metrics::UPKEEP);
    upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(error) = hub.reap().await {
                    debug!(?error, "reaping failed; trying again at the next tick");
                }
            }
            _ = forget.tick() => limiters.forget_idle(),
            _ = upkeep.tick() => metrics::upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}
