//! The task that writes a big room's queue out ([`super::fanout`]), and the commit
//! writer's wait for rooms that fall too far behind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Hub;
use super::fanout::Written;
use super::room::{Effects, Room};

impl Hub {
    /// The commit writer calls it after each delivery. It waits while some room's fan-out
    /// is more than [`MAX_BACKLOG`](super::fanout::MAX_BACKLOG) messages behind what was
    /// delivered to it, so a room that cannot keep up slows commits down (and senders hear
    /// "busy") instead of its queue growing without bound. Then it gives the fan-outs at
    /// work up to [`HubSettings::fanout_settle`] to finish: without that pause the writer
    /// committed more often than the big rooms could send, each commit a frame of its own
    /// to every member (a 1,000-member room at 2,000 msg/s took 40% more fan-outs, and a
    /// third more CPU per delivery, than when the writer fanned out itself).
    ///
    /// [`HubSettings::fanout_settle`]: super::HubSettings::fanout_settle
    pub async fn fanout_caught_up(&self) {
        loop {
            let relieved = self.shared.relieved.notified();
            tokio::pin!(relieved);
            relieved.as_mut().enable();
            if self.shared.backlogged.load(Ordering::Acquire) == 0 {
                break;
            }
            relieved.await;
        }
        let settle = self.shared.settings.fanout_settle;
        let deadline = tokio::time::Instant::now() + settle;
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.shared.draining.load(Ordering::Acquire) == 0
                || settle.is_zero()
                || tokio::time::timeout_at(deadline, drained).await.is_err()
            {
                return;
            }
        }
    }

    /// Empties a room's queue: in a task of its own when there is a runtime, here and now
    /// otherwise (tests and benchmarks that drive the hub directly).
    pub(super) fn drain(&self, room: Arc<Room>) {
        let hub = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // Made before the task, so that a task dropped before it ever ran
                // abandons the queue too.
                hub.shared.draining.fetch_add(1, Ordering::AcqRel);
                let unfinished = Unfinished {
                    hub: hub.clone(),
                    room: Some(Arc::clone(&room)),
                };
                runtime.spawn(async move {
                    let parts = hub.shared.settings.fanout_parts;
                    loop {
                        // A statement of its own: the room's lock is released before the
                        // job is written.
                        let next = room.lock().queue.next_job();
                        let Some(job) = next else { break };
                        let started = Instant::now();
                        let written = job.write(parts).await;
                        hub.written(&room, written, started);
                        // Frames back to back: the room is fanning out all the time. A
                        // commit window between two lets the next frame carry a whole
                        // window's messages, as when the commit writer fanned out between
                        // its commits (at 10,000 members: 7% fewer frames, CPU per
                        // delivery 1.69 µs against 1.86 without the pause).
                        let more = room.lock().queue.has_jobs();
                        if more && !hub.shared.settings.fanout_settle.is_zero() {
                            tokio::time::sleep(hub.shared.settings.fanout_settle).await;
                        }
                    }
                    unfinished.disarm();
                });
            }
            Err(_) => loop {
                let next = room.lock().queue.next_job();
                let Some(job) = next else { break };
                let started = Instant::now();
                hub.written(&room, job.write_now(), started);
            },
        }
    }

    fn written(&self, room: &Arc<Room>, written: Written, started: Instant) {
        if written.messages > 0 {
            self.shared.metrics.fanout(started.elapsed());
        }
        let mut fx = Effects::default();
        room.lock().written(written, &mut fx);
        self.settle(room, fx);
    }
}

/// A drainer's life: it counts the drainer out when it ends (for the commit writer's
/// pause), and, while it is armed, if the task ends any other way than by emptying the
/// queue (a panic while writing, the runtime dropping it at shutdown), abandons the room's
/// queue, so the room can be drained again and the commit writer does not wait for a
/// backlog nobody will write.
struct Unfinished {
    hub: Hub,
    /// The room whose queue is abandoned if the drainer ends unfinished; `None` once
    /// disarmed.
    room: Option<Arc<Room>>,
}

impl Unfinished {
    /// The queue was emptied: nothing to abandon.
    fn disarm(mut self) {
        self.room = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.hub.shared.draining.fetch_sub(1, Ordering::AcqRel);
        self.hub.shared.drained.notify_waiters();
        if let Some(room) = self.room.take() {
            tracing::error!(room = %room.name, "a room's fan-out stopped unfinished; its queued frames are dropped");
            let fx = Effects {
                relieved: room.lock().queue.abandon(),
                ..Effects::default()
            };
            self.hub.settle(&room, fx);
        }
    }
}
