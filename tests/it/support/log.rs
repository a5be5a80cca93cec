//! The `TEST_LOG` switch. Quiet by default; `TEST_LOG=1 cargo test --test it …` logs
//! hubbub at debug level (everything else at warn), and any other value is taken as
//! `EnvFilter` directives (`TEST_LOG=hubbub=trace,sqlx=info`). The subscriber is set once
//! per test binary, by whichever test first starts a server or opens a database, and
//! writes through the test harness: a failing test shows its lines, `--nocapture` shows
//! them all. The real binary run as a child keeps its own logging; its lines are echoed
//! too when the switch is on.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// The directives `TEST_LOG` asks for, or `None` for quiet.
pub fn filter() -> Option<String> {
    match std::env::var("TEST_LOG").ok()?.as_str() {
        "" | "0" => None,
        "1" => Some("warn,hubbub=debug".to_owned()),
        directives => Some(directives.to_owned()),
    }
}

/// Turns the subscriber on if `TEST_LOG` asks for it; the first call decides.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Some(directives) = filter() else {
            return;
        };
        let filter = EnvFilter::try_new(&directives)
            .unwrap_or_else(|err| panic!("TEST_LOG={directives:?} is not a log filter: {err}"));
        // Another subscriber set first (by a test of its own) wins; that is not an error.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            // Plain text: the harness prints it as a failing test's output, or into a CI log.
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    });
}
