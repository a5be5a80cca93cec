//! The hub's periodic upkeep: typing expiry, other nodes gone silent, and the presence and
//! room-list updates that joins and departures only mark, sent here at a pace.

use tokio::time::Instant;

use super::Hub;
use super::room::Effects;

impl Hub {
    /// Periodic upkeep: expires typing indicators, and sends presence and the room list
    /// where they changed. The server calls it twice a second.
    ///
    /// Status updates (presence and the room list, one frame) are paced per room: a room
    /// gets one at most every 100 µs × its members, so a reconnect storm into a
    /// 19,000-member room costs a bounded number of writes per second instead of one per
    /// member per tick. Rooms are visited one at a time; the directory is only read.
    pub fn tick(&self, now: Instant) {
        let nodes = self.nodes();
        if nodes.share() {
            // Nodes that fell silent (a crash, a cut from Redis) leave presence.
            let (expired, touched, known) = nodes.expire(now);
            if expired > 0 {
                tracing::warn!(
                    nodes = expired,
                    "other nodes silent for too long; their users are no longer shown"
                );
                self.metrics().cluster_nodes(known);
                self.others_changed(touched);
            }
        }
        let room_list = self.shared.room_list.refresh(self);
        let activity = self.shared.activity.refresh();
        let rooms = self.directory().rooms();
        for room in rooms {
            let mut fx = Effects::default();
            room.lock().tick(
                &room.name,
                now,
                (&room_list, activity.as_ref()),
                nodes,
                &mut fx,
            );
            self.settle(&room, fx);
        }
    }
}
