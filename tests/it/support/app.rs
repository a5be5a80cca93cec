//! A hubbub server for one test, in this process: bound to port 0 before it serves (so
//! connections queue in the backlog and no test waits for start-up), over a database of
//! its own, stopped as a deployment would stop it. Requests go through `http`, sockets
//! through `client`; the real binary, for tests that kill it, is in `faults`.

use std::net::SocketAddr;
use std::sync::Arc;

use hubbub::hub::{Hub, Stats};
use hubbub::{Config, Server};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::PATIENCE;
use super::db::TestDb;
use super::eventually::eventually;

pub struct TestApp {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<std::io::Result<()>>,
    /// Keeps the test's database alive as long as the app.
    pub db: Arc<TestDb>,
}

/// A server on port 0 over a fresh SQLite file.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`], configured further.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(Arc::new(TestDb::sqlite()), "127.0.0.1:0", configure).await
}

/// A server on `addr` over `db`.
pub async fn spawn_app_on(
    db: Arc<TestDb>,
    addr: &str,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    super::log::init();
    let mut config = Config::defaults();
    config.database = db.url.clone();
    // Tests send bursts (history seeding, ordering checks) far above what one person
    // types; the rate-limit tests set their own limits.
    config.message_rate = 100_000;
    config.message_burst = 100_000;
    config.ip_message_rate = 100_000;
    config.ip_message_burst = 100_000;
    configure(&mut config);
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(config).await.unwrap();
    let hub = server.hub();
    let shutdown = CancellationToken::new();
    // The listener is bound before `serve` starts: connections queue in the backlog, so no
    // test ever waits for start-up.
    let server = tokio::spawn(server.serve(listener, shutdown.clone()));
    TestApp {
        addr,
        hub,
        shutdown,
        server,
        db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops this server (1012 to every client) and waits for it to finish; gives back
    /// the database, for a restart.
    pub async fn stop(self) -> Arc<TestDb> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.db
    }

    /// Waits until the hub's counters satisfy `done` (state, not time).
    pub async fn wait_for_stats(&self, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
        eventually(what, async || {
            let stats = self.hub.stats();
            if done(&stats) { Ok(stats) } else { Err(stats) }
        })
        .await
    }
}
