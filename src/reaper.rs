//! The background task that removes members whose inbox nobody reads,
//! now and then forgets the rate-limit buckets of clients gone quiet, and
//! keeps the metrics' histograms up to date.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::hub::Hub;
use crate::limits::Limiters;

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
    let mut upkeep = tokio::time::interval(crate::metrics::UPKEEP);
    upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(error) = hub.reap().await {
                    debug!(?error, "reaping failed; trying again at the next tick");
                }
            }
            _ = forget.tick() => limiters.forget_idle(),
            _ = upkeep.tick() => crate::metrics::upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}
