//! Rate limits shared by every connection and request from one client address.
//!
//! A session limits its own posts and typing ([`crate::session`]); that alone would let one
//! client multiply its allowance by opening more connections, or rename itself in a loop
//! (each rename re-renders the presence list of every room the user is in). These limits
//! count per client address instead, whichever connection or request the action comes
//! through. The address is the one the connection limits use
//! ([`crate::http::client::ClientAddr`]); exempt addresses (loopback without
//! `--trust-proxy`) are not counted here either.
//!
//! Memory: one small entry per address seen recently. [`AddressLimits::forget_idle`] drops
//! the entries of addresses whose allowance has refilled, so a scan from many addresses does
//! not grow the server for good.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Config;

/// `rate` per second with bursts of `burst` (both at least 1).
pub fn per_second(rate: u32, burst: u32) -> Quota {
    Quota::per_second(nonzero(rate)).allow_burst(nonzero(burst))
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// One client's address and the server's per-address allowances: what a session needs to
/// count its posts against its address.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    pub ip: IpAddr,
    pub limits: Arc<AddressLimits>,
}

impl ClientLimits {
    /// Counts one post from this client's address.
    pub fn allow_message(&self) -> bool {
        self.limits.allow_message(self.ip)
    }
}

/// The per-address allowances of one server.
#[derive(Debug)]
pub struct AddressLimits {
    messages: DefaultKeyedRateLimiter<IpAddr>,
    renames: DefaultKeyedRateLimiter<IpAddr>,
    /// Searches read the whole index; a loop of them from one address would keep the
    /// store's readers from everyone else.
    searches: DefaultKeyedRateLimiter<IpAddr>,
}

impl AddressLimits {
    pub fn new(messages: Quota, renames: Quota) -> Self {
        Self::with_searches(messages, renames, Quota::per_minute(nonzero(60)))
    }

    pub fn with_searches(messages: Quota, renames: Quota, searches: Quota) -> Self {
        Self {
            messages: DefaultKeyedRateLimiter::keyed(messages),
            renames: DefaultKeyedRateLimiter::keyed(renames),
            searches: DefaultKeyedRateLimiter::keyed(searches),
        }
    }

    /// From `--ip-message-rate`, `--ip-message-burst`, `--renames-per-minute` and
    /// `--searches-per-minute`.
    pub fn from_config(config: &Config) -> Self {
        let renames = nonzero(config.renames_per_minute);
        let searches = nonzero(config.searches_per_minute);
        Self::with_searches(
            per_second(config.ip_message_rate, config.ip_message_burst),
            Quota::per_minute(renames).allow_burst(renames),
            Quota::per_minute(searches).allow_burst(searches),
        )
    }

    /// Counts one post from `ip`: `true` when it is within the address's allowance.
    pub fn allow_message(&self, ip: IpAddr) -> bool {
        self.messages.check_key(&ip).is_ok()
    }

    /// Counts one rename from `ip`: `Err` with how long until the next one is allowed.
    pub fn allow_rename(&self, ip: IpAddr) -> Result<(), Duration> {
        self.renames
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Counts one search from `ip`: `Err` with how long until the next one is allowed.
    pub fn allow_search(&self, ip: IpAddr) -> Result<(), Duration> {
        self.searches
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Drops the entries of addresses whose allowance is full again (they would behave
    /// the same as a fresh entry).
    pub fn forget_idle(&self) {
        for limiter in [&self.messages, &self.renames, &self.searches] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Addresses with an entry, for tests and introspection.
    pub fn tracked(&self) -> usize {
        self.messages.len() + self.renames.len() + self.searches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_has_its_own_allowance() {
        let limits = AddressLimits::new(per_second(1, 3), per_second(1, 1));
        let (a, b) = (ip("203.0.113.1"), ip("2001:db8::1"));
        for _ in 0..3 {
            assert!(limits.allow_message(a));
        }
        assert!(!limits.allow_message(a), "a burst of 3, then refused");
        assert!(limits.allow_message(b), "another address is not affected");

        limits.allow_rename(a).unwrap();
        let wait = limits.allow_rename(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limits.allow_rename(b).unwrap();
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let limits = AddressLimits::new(per_second(1000, 1), per_second(1000, 1));
        for i in 0..100u8 {
            assert!(limits.allow_message(IpAddr::from([198, 51, 100, i])));
        }
        assert_eq!(limits.tracked(), 100);
        // At 1000/s a burst of one refills within a millisecond.
        std::thread::sleep(Duration::from_millis(20));
        limits.forget_idle();
        assert_eq!(limits.tracked(), 0);
    }
}
