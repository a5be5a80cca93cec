//! A PostgreSQL server of the test's own, so that it can be restarted, crashed and stopped
//! under a running hubbub without disturbing any other test. Made with the machine's
//! server binaries; a test without them skips, saying why (in CI it fails).

use std::path::PathBuf;
use std::process::Command;

use hubbub::store::DatabaseUrl;

use super::{is_root, run};
use crate::support::skip;

/// A PostgreSQL server of the test's own, in a temporary directory on a free port, run as
/// the `postgres` user when the test runs as root (initdb refuses root). Stopped (and its
/// files removed) on drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

/// The server binaries: `HUBBUB_TEST_PG_BIN`, or the newest under /usr/lib/postgresql.
fn postgres_bin() -> Result<PathBuf, String> {
    if let Ok(bin) = std::env::var("HUBBUB_TEST_PG_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server binaries (install postgresql, or set HUBBUB_TEST_PG_BIN to the \
         directory holding initdb and pg_ctl)"
            .to_owned()
    })
}

impl PrivatePostgres {
    /// `None` (with the reason printed) when the binaries are missing; a panic in CI.
    pub async fn start(test: &str) -> Option<Self> {
        let bin = match postgres_bin() {
            Ok(bin) => bin,
            Err(missing) => {
                skip(test, &missing);
                return None;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("hubbub-pg-")
            .tempdir()
            .unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(dir.path());
            assert!(run(chown).await.status.success());
        }
        let mut pg = Self {
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(pg.data()).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        assert!(run(initdb).await.status.success(), "initdb failed");
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            pg.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if pg.pg_ctl("start", "fast").await {
                return Some(pg);
            }
        }
        panic!("the private PostgreSQL did not start:\n{}", pg.log());
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// `pg_ctl start|stop|restart` with a shutdown mode (`fast`: connections are ended
    /// and transactions rolled back; `immediate`: every server process is killed, as in a
    /// crash), waiting for it to finish; `true` on success.
    async fn pg_ctl(&self, action: &str, mode: &str) -> bool {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "-m", mode, "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.path().display()
            ))
            .arg(action);
        run(command).await.status.success()
    }

    pub async fn restart(&self, mode: &str) {
        assert!(self.pg_ctl("restart", mode).await, "{}", self.log());
    }

    pub async fn stop(&self) {
        assert!(self.pg_ctl("stop", "fast").await, "{}", self.log());
    }

    pub async fn resume(&self) {
        assert!(self.pg_ctl("start", "fast").await, "{}", self.log());
    }

    pub fn url(&self) -> DatabaseUrl {
        DatabaseUrl::new(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port
        ))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("private PostgreSQL log:\n{}", self.log());
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}
