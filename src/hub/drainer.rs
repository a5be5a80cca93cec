//! The task that writes a big room's queue out ([`super::fanout`]), and the commit
//! writer's wait for rooms that fall too far behind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Hub;
use super::fanout::Written;
use super::room::{Effects, Room};

impl Hub {
    /// The commit writer calls it after each delivery. It waits while some room's fan-out
    /// is more than [`MAX_BACKLOG`](super::fanout::MAX_BACKLOG) messages behind what was
    /// delivered to it, so a room that cannot keep up slows commits down (and senders hear
    /// "busy") instead of its queue growing without bound. It never waits for a fan-out
    /// as such: a small room's next message is not held up by a big room's frame.
    pub async fn fanout_caught_up(&self) {
        loop {
            let relieved = self.shared.relieved.notified();
            tokio::pin!(relieved);
            relieved.as_mut().enable();
            if self.shared.backlogged.load(Ordering::Acquire) == 0 {
                return;
            }
            relieved.await;
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
                let unfinished = Unfinished {
                    hub: hub.clone(),
                    room: Some(Arc::clone(&room)),
                };
                runtime.spawn(async move {
                    let parts = hub.shared.settings.fanout_parts;
                    let rest = hub.shared.settings.fanout_rest;
                    loop {
                        // A statement of its own: the room's lock is released before the
                        // job is written.
                        let next = room.lock().queue.next_job();
                        let Some(job) = next else { break };
                        let started = Instant::now();
                        let written = job.write(parts).await;
                        let took = started.elapsed();
                        hub.written(&room, written, took);
                        // The room rests (still drained, so what arrives meanwhile queues
                        // and is joined into one frame) as long as the frame took, plus
                        // the commit window: see `HubSettings::fanout_rest`.
                        if !rest.is_zero() {
                            tokio::time::sleep(rest + took).await;
                        }
                    }
                    unfinished.disarm();
                });
            }
            Err(_) => loop {
                let next = room.lock().queue.next_job();
                let Some(job) = next else { break };
                let started = Instant::now();
                let written = job.write_now();
                hub.written(&room, written, started.elapsed());
            },
        }
    }

    fn written(&self, room: &Arc<Room>, written: Written, took: Duration) {
        if written.messages > 0 {
            self.shared.metrics.fanout(took);
        }
        let mut fx = Effects::default();
        room.lock().written(written, &mut fx);
        self.settle(room, fx);
    }
}

/// A drainer's life: while it is armed, if the task ends any other way than by emptying
/// the queue (a panic while writing, the runtime dropping it at shutdown), it abandons the
/// room's queue, so the room can be drained again and the commit writer does not wait for
/// a backlog nobody will write.
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
        let Some(room) = self.room.take() else {
            return;
        };
        let abandoned = room.lock().queue.abandon();
        if abandoned.jobs > 0 {
            tracing::error!(room = %room.name, jobs = abandoned.jobs,
                "a room's fan-out stopped unfinished; its queued frames are dropped");
        }
        let fx = Effects {
            relieved: abandoned.relieved,
            ..Effects::default()
        };
        self.hub.settle(&room, fx);
    }
}
