//! Keep-alive for every connection on this node, from one task.
//!
//! Each member is pinged once per ping interval, and one that has sent no whole message (a
//! pong included) for the pong timeout is told to end as unresponsive: what the seed
//! design's write loop did with a ticker per connection. Why one task: a timer per
//! connection cost every idle connection about 150 bytes (its boxed `Sleep` and the
//! interval beside it) and a wheel entry, for something that happens twice a minute. The
//! members are split into [`SLOTS`] by session id and one slot is visited per tick, so the
//! pings of a big room are spread over the interval rather than sent in one burst.
//!
//! When a member was last heard is kept in its outlet (`Outlet::heard`), which its
//! session stamps as whole messages arrive. The ping frame is the same bytes for everyone
//! and goes through the outlet like any frame: a member too far behind to take it is
//! evicted, as by a fan-out.

use std::sync::Arc;
use std::time::Duration;

use hubbub_wire::Frame;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::outlet::{Ending, Offered, Outlet};

/// Ticks per ping interval; each visits the members whose session id falls in its slot.
pub(super) const SLOTS: u64 = 8;

impl Hub {
    /// Pings every member once per `every` and ends those silent for `silent_for`, until
    /// `stop`. The server runs one of these.
    pub async fn keep_alive(self, every: Duration, silent_for: Duration, stop: CancellationToken) {
        let period = (every / SLOTS as u32).max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut turn = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            self.ping_slot(turn % SLOTS, silent_for, Instant::now());
            turn = turn.wrapping_add(1);
        }
    }

    /// Pings the members of one slot, or ends them if they have been silent too long.
    /// The room locks are held only to collect the outlets.
    fn ping_slot(&self, slot: u64, silent_for: Duration, now: Instant) {
        let mut due: Vec<Arc<Outlet>> = Vec::new();
        // A statement of its own: the directory's lock is not held over the rooms'.
        let rooms = self.directory().rooms();
        for entry in rooms {
            due.extend(entry.lock().members.in_slot(slot, SLOTS));
        }
        let ping = Frame::ping();
        let mut evicted = 0;
        for outlet in due {
            if outlet.silent_for(now) >= silent_for {
                outlet.end(Ending::Unresponsive);
            } else if outlet.offer(&ping) == Offered::Full && outlet.end(Ending::Evicted) {
                evicted += 1;
            }
        }
        if evicted > 0 {
            self.count_evictions(evicted);
        }
    }
}
