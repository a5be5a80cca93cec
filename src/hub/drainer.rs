//! The task that writes a big room's queue out ([`super::fanout`]), and the commit
//! writer's wait for rooms that fall too far behind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Hub;
use super::fanout::Written;
use super::room::{Effects, Room};

impl Hub {
    /// Waits while some room's fan-out is more than [`MAX_BACKLOG`](super::fanout::MAX_BACKLOG) messages behind
    /// what was delivered to it. The commit writer calls it after each delivery, so a room
    /// that cannot keep up slows commits down (and senders hear "busy") instead of its
    /// queue growing without bound.
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
                let unfinished = Unfinished(Some((hub.clone(), Arc::clone(&room))));
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

/// Armed while a drainer works: if the task ends any other way than by emptying the queue
/// (a panic while writing, the runtime dropping it at shutdown), the room's queue is
/// abandoned, so the room can be drained again and the commit writer does not wait for a
/// backlog nobody will write.
struct Unfinished(Option<(Hub, Arc<Room>)>);

impl Unfinished {
    /// The queue was emptied: nothing to abandon.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some((hub, room)) = self.0.take() {
            tracing::error!(room = %room.name, "a room's fan-out stopped unfinished; its queued frames are dropped");
            let fx = Effects {
                relieved: room.lock().queue.abandon(),
                ..Effects::default()
            };
            hub.settle(&room, fx);
        }
    }
}
