//! Per-client rate limits: joins per client address, signals per member.
//! Over a limit, a request answers 429 `rate_limited` with `Retry-After`,
//! and nothing else is slowed down: each key has its own bucket.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota};
use uuid::Uuid;

/// A request over its client's limit, which may come again after
/// `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

/// The buckets of every client and member seen recently.
pub struct Limiters {
    joins: DefaultKeyedRateLimiter<IpAddr>,
    signals: DefaultKeyedRateLimiter<Uuid>,
    clock: DefaultClock,
}

impl Limiters {
    /// `joins_per_minute` per client address and `signals_per_second` per
    /// member, each allowing a burst of the same size.
    pub fn new(joins_per_minute: NonZeroU32, signals_per_second: NonZeroU32) -> Self {
        Self {
            joins: DefaultKeyedRateLimiter::keyed(Quota::per_minute(joins_per_minute)),
            signals: DefaultKeyedRateLimiter::keyed(Quota::per_second(signals_per_second)),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_join(&self, client: IpAddr) -> Result<(), RateLimited> {
        self.joins
            .check_key(&client_key(client))
            .map_err(|not_until| self.refusal(&not_until))
    }

    pub fn check_signal(&self, member: Uuid) -> Result<(), RateLimited> {
        self.signals
            .check_key(&member)
            .map_err(|not_until| self.refusal(&not_until))
    }

    fn refusal(&self, not_until: &NotUntil<<DefaultClock as Clock>::Instant>) -> RateLimited {
        RateLimited {
            retry_after: not_until.wait_time_from(self.clock.now()),
        }
    }

    /// Forgets the buckets that are full again, so that the maps hold only
    /// clients seen recently.
    pub fn forget_idle(&self) {
        self.joins.retain_recent();
        self.signals.retain_recent();
        self.joins.shrink_to_fit();
        self.signals.shrink_to_fit();
    }
}

/// The key a client's joins count under. One IPv6 host is given a /64
/// (64 bits of addresses to choose from), so keyed by its address alone
/// it could join without limit, and grow the limiter's map with it.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_limit_is_refused_with_a_wait() {
        let limiters = Limiters::new(NonZeroU32::new(2).unwrap(), NonZeroU32::new(3).unwrap());
        let client = IpAddr::from([127, 0, 0, 1]);
        assert!(limiters.check_join(client).is_ok());
        assert!(limiters.check_join(client).is_ok());
        match limiters.check_join(client) {
            Err(RateLimited { retry_after }) => assert!(retry_after.as_secs() <= 30),
            other => panic!("expected rate_limited, got {other:?}"),
        }
        // Another client has its own bucket.
        assert!(limiters.check_join(IpAddr::from([127, 0, 0, 2])).is_ok());
    }

    #[test]
    fn members_have_separate_signal_buckets() {
        let limiters = Limiters::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(1).unwrap());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(limiters.check_signal(a).is_ok());
        assert!(limiters.check_signal(a).is_err());
        assert!(limiters.check_signal(b).is_ok());
    }

    #[test]
    fn an_ipv6_host_counts_its_joins_per_64_and_a_mapped_ipv4_as_itself() {
        let limiters = Limiters::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(1).unwrap());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiters.check_join(one).is_ok());
        assert!(limiters.check_join(same_64).is_err());
        assert!(limiters.check_join(next_64).is_ok());

        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(limiters.check_join(v4).is_ok());
        assert!(limiters.check_join(mapped).is_err());
    }
}
