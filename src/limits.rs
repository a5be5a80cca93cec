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
    /// Sign-in and sign-up attempts: each is a password hash, and a guess.
    sign_ins: DefaultKeyedRateLimiter<IpAddr>,
    /// Sign-in attempts per name (by [`crate::domain::NameKey`]), from any address.
    sign_ins_per_name: DefaultKeyedRateLimiter<String>,
}

impl AddressLimits {
    pub fn new(messages: Quota, renames: Quota) -> Self {
        Self::with_searches(messages, renames, Quota::per_minute(nonzero(60)))
    }

    pub fn with_searches(messages: Quota, renames: Quota, searches: Quota) -> Self {
        let sign_ins = Quota::per_minute(nonzero(10)).allow_burst(nonzero(10));
        Self {
            messages: DefaultKeyedRateLimiter::keyed(messages),
            renames: DefaultKeyedRateLimiter::keyed(renames),
            searches: DefaultKeyedRateLimiter::keyed(searches),
            sign_ins: DefaultKeyedRateLimiter::keyed(sign_ins),
            sign_ins_per_name: DefaultKeyedRateLimiter::keyed(sign_ins),
        }
    }

    /// The same, with sign-in allowances per address and per name.
    pub fn with_sign_ins(mut self, per_address: Quota, per_name: Quota) -> Self {
        self.sign_ins = DefaultKeyedRateLimiter::keyed(per_address);
        self.sign_ins_per_name = DefaultKeyedRateLimiter::keyed(per_name);
        self
    }

    /// From `--ip-message-rate`, `--ip-message-burst`, `--renames-per-minute`,
    /// `--searches-per-minute`, `--sign-ins-per-minute` and
    /// `--sign-ins-per-name-per-minute`.
    pub fn from_config(config: &Config) -> Self {
        let renames = nonzero(config.renames_per_minute);
        let searches = nonzero(config.searches_per_minute);
        let sign_ins = nonzero(config.sign_ins_per_minute);
        let per_name = nonzero(config.sign_ins_per_name_per_minute);
        Self::with_searches(
            per_second(config.ip_message_rate, config.ip_message_burst),
            Quota::per_minute(renames).allow_burst(renames),
            Quota::per_minute(searches).allow_burst(searches),
        )
        .with_sign_ins(
            Quota::per_minute(sign_ins).allow_burst(sign_ins),
            Quota::per_minute(per_name).allow_burst(per_name),
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

    /// Counts one sign-in or sign-up attempt from `ip` (`None`: an exempt address) for the
    /// name with key `name`: `Err` with how long until the next one is allowed. The
    /// address is counted first, so an address already refused cannot go on spending the
    /// allowance of the names it tries (locking their owners out).
    pub fn allow_sign_in(&self, ip: Option<IpAddr>, name: &str) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        let wait = |not_until: governor::NotUntil<_>| not_until.wait_time_from(now);
        if let Some(ip) = ip {
            self.sign_ins.check_key(&ip).map_err(wait)?;
        }
        self.sign_ins_per_name
            .check_key(&name.to_owned())
            .map_err(wait)
    }

    /// Drops the entries of addresses whose allowance is full again (they would behave
    /// the same as a fresh entry).
    pub fn forget_idle(&self) {
        for limiter in [
            &self.messages,
            &self.renames,
            &self.searches,
            &self.sign_ins,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.sign_ins_per_name.retain_recent();
        self.sign_ins_per_name.shrink_to_fit();
    }

    /// Addresses with an entry, for tests and introspection.
    pub fn tracked(&self) -> usize {
        self.messages.len()
            + self.renames.len()
            + self.searches.len()
            + self.sign_ins.len()
            + self.sign_ins_per_name.len()
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
