//! A connection's rate limits: its own allowance for posts and typing events, its client
//! address's shared one, and the count of refusals in a row that marks a flood.

use governor::DefaultDirectRateLimiter;

use super::{End, Settings};
use crate::limits::ClientLimits;

/// Refusals in a row (posts over the rate limit, ignored typing events) after which a
/// client is not a person typing fast but a flood, and is disconnected (1008).
const MAX_STRIKES: u32 = 20;

/// A connection's rate limits, its address's shared ones, and how many refusals it has
/// had in a row.
pub(super) struct Limits {
    /// Made on the first post or typing event: most connections only read, and their
    /// limiters would be 80 bytes of every idle connection. A limiter starts with its
    /// whole burst, so one made late allows exactly what one made at connect would.
    rates: Option<Box<Rates>>,
    /// `None` for a client exempt from per-address limits.
    address: Option<ClientLimits>,
    strikes: u32,
}

/// The connection's own allowances.
struct Rates {
    messages: DefaultDirectRateLimiter,
    typing: DefaultDirectRateLimiter,
}

/// What the limits say about one post or typing event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Allowed,
    /// Over this connection's own limit.
    Connection,
    /// Over the limit shared by every connection from the client's address.
    Address,
}

impl Limits {
    pub(super) fn new(address: Option<ClientLimits>) -> Self {
        Self {
            rates: None,
            address,
            strikes: 0,
        }
    }

    /// Counts one post (or, with `typing`, one typing event) against the allowances in
    /// `settings`. `Err` once refusals in a row show a flood.
    pub(super) fn allow(&mut self, typing: bool, settings: &Settings) -> Result<Verdict, End> {
        let rates = self.rates.get_or_insert_with(|| {
            Box::new(Rates {
                messages: DefaultDirectRateLimiter::direct(settings.message_quota),
                typing: DefaultDirectRateLimiter::direct(settings.typing_quota),
            })
        });
        let verdict = if typing {
            if rates.typing.check().is_ok() {
                Verdict::Allowed
            } else {
                Verdict::Connection
            }
        } else if rates.messages.check().is_err() {
            Verdict::Connection
        } else if self
            .address
            .as_ref()
            .is_some_and(|address| !address.allow_message())
        {
            Verdict::Address
        } else {
            Verdict::Allowed
        };
        if verdict == Verdict::Allowed {
            self.strikes = 0;
            return Ok(verdict);
        }
        self.strikes += 1;
        if self.strikes >= MAX_STRIKES {
            return Err(End::Flooding);
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::limits::per_second;

    #[test]
    fn posts_count_against_the_connection_then_its_address_and_refusals_add_up_to_a_flood() {
        let address = ClientLimits {
            ip: "203.0.113.7".parse().unwrap(),
            limits: Arc::new(crate::limits::AddressLimits::new(
                per_second(1, 2),
                per_second(1, 1),
            )),
        };
        let settings = Settings {
            message_quota: per_second(1, 3),
            ..Settings::from_config(&Config::defaults())
        };
        let mut first = Limits::new(Some(address.clone()));
        let mut second = Limits::new(Some(address));
        assert_eq!(first.allow(false, &settings), Ok(Verdict::Allowed));
        assert_eq!(second.allow(false, &settings), Ok(Verdict::Allowed));
        // The address's burst of two is spent, though each connection has room left.
        assert_eq!(first.allow(false, &settings), Ok(Verdict::Address));
        // Typing is not counted against the address.
        assert_eq!(first.allow(true, &settings), Ok(Verdict::Allowed));
        // A post refused for its address still spends the connection's own allowance
        // (checked first, so that a connection over its own limit spends nothing of its
        // address's, which its siblings share).
        assert_eq!(second.allow(false, &settings), Ok(Verdict::Address));
        assert_eq!(second.allow(false, &settings), Ok(Verdict::Address));
        assert_eq!(second.allow(false, &settings), Ok(Verdict::Connection));
        // An exempt client has only its own limit; refusals in a row end in a flood.
        let mut exempt = Limits::new(None);
        for _ in 0..3 {
            assert_eq!(exempt.allow(false, &settings), Ok(Verdict::Allowed));
        }
        for _ in 1..MAX_STRIKES {
            assert_eq!(exempt.allow(false, &settings), Ok(Verdict::Connection));
        }
        assert_eq!(exempt.allow(false, &settings), Err(End::Flooding));
    }
}
