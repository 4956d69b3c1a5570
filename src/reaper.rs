//! The background task that removes members whose inbox nobody reads.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Runs until `shutdown`, checking at least once a second (and at least
/// twice per member timeout, so a short timeout is honoured closely).
pub async fn run(hub: Hub, member_timeout: Duration, shutdown: CancellationToken) {
    let period = (member_timeout / 2).min(Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                hub.reap(Instant::now().into_std());
            }
            () = shutdown.cancelled() => return,
        }
    }
}
