//! What the tests stand on, one module per idea, so that a test reads like the product:
//! `app` starts a server, `client` opens a page's socket, `page` is what the user sees,
//! `http` makes requests, `db` gives each test a database of its own, `cluster` runs
//! several nodes over PostgreSQL and Redis, `faults` breaks things on purpose (and runs the
//! real binary, to kill it), `browser` drives real browsers, `axe` checks their pages'
//! accessibility, `metrics` reads what an operator sees, `eventually` waits for a state,
//! and `log` is the `TEST_LOG` switch.
//!
//! Also here, because every module needs them: how long a test waits, and what a test
//! does when something it needs from the machine is missing.

pub mod app;
pub mod axe;
pub mod browser;
pub mod client;
pub mod cluster;
pub mod db;
pub mod eventually;
pub mod faults;
pub mod http;
pub mod log;
pub mod metrics;
pub mod page;

use std::time::Duration;

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// `test` cannot run here, for `reason`: says so and returns; in CI (`CI=true`, where a
/// skip would hide a missing install step) fails instead.
pub fn skip(test: &str, reason: &str) {
    let reason = format!("{test} SKIPPED: {reason}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason}; in CI a skip is a failure"
    );
    eprintln!("{reason}");
}

/// The URL in `env`, or `None` after [`skip`]ping `test` with a reason naming `env`.
pub fn configured(env: &str, test: &str, example: &str) -> Option<String> {
    if let Ok(url) = std::env::var(env) {
        return Some(url);
    }
    skip(test, &format!("set {env} (e.g. {example}) to run it"));
    None
}
