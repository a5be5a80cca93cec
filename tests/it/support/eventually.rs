//! Waiting for a state, never for a time: [`eventually`] retries a check until it passes,
//! and past the deadline fails saying what it waited for and what it saw last. A fixed
//! sleep is too short on a loaded CI machine and wasted time everywhere else.
//!
//! A check returns `Ok(value)` when the state is there, or `Err(last)`: what it saw
//! instead, shown if the wait fails. Waits that are driven by events rather than polled (a
//! page reading frame after frame, `TestClient::until`) loop over the events themselves
//! with the same [`Deadline`], so every wait fails the same way. (They also stay `Send`:
//! the future of an async closure that borrows is not yet, so a spawned task could not
//! wait through [`eventually`].)

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::PATIENCE;

/// How long a polled check rests before it looks again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it passes, for at most [`PATIENCE`].
pub async fn eventually<T, L: Debug>(what: &str, check: impl AsyncFnMut() -> Result<T, L>) -> T {
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`], for a state that may rightly take longer than [`PATIENCE`].
pub async fn eventually_within<T, L: Debug>(
    patience: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, L>,
) -> T {
    let deadline = Deadline::after(patience, what);
    let mut last = None;
    loop {
        // A look still unfinished at the deadline fails with the one before it.
        let Some(looked) = deadline.run(check()).await else {
            deadline.fail(&last);
        };
        match looked {
            Ok(done) => return done,
            Err(seen) => last = Some(seen),
        }
        if deadline.passed() {
            deadline.fail(&last);
        }
        tokio::time::sleep_until(deadline.at.min(Instant::now() + POLL)).await;
    }
}

/// The end of one wait, and what it is for.
pub struct Deadline<'a> {
    what: &'a str,
    patience: Duration,
    at: Instant,
}

impl<'a> Deadline<'a> {
    pub fn after(patience: Duration, what: &'a str) -> Self {
        Self {
            what,
            patience,
            at: Instant::now() + patience,
        }
    }

    /// `step` (reading the next frame, say), or `None` if the deadline comes first.
    pub async fn run<F: Future>(&self, step: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.at, step).await.ok()
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Fails the test: what was awaited, for how long, and `last`, what was seen last.
    pub fn fail(&self, last: &impl Debug) -> ! {
        panic!(
            "waited {:?} for {}; last seen: {last:?}",
            self.patience, self.what
        )
    }
}

/// What a check saw, already put into words: a failure prints it as it is, unquoted (a
/// whole metrics page, say).
pub struct Seen(pub String);

impl Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
