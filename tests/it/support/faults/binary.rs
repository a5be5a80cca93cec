//! The real `hubbub` binary as a child process, for what only a process can show: a kill
//! with SIGKILL (no goodbye, no flush), a SIGTERM, a node of a cluster that dies. Started
//! on port 0 (or an address given, to come back where open pages expect it), it is ready
//! once it has logged the address it listens on; killed on drop if still running.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use crate::support::PATIENCE;
use crate::support::db::TestDb;
use crate::support::log;

pub struct ChildServer {
    child: Option<Child>,
    pub url: String,
    log: Option<JoinHandle<Vec<String>>>,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ChildServer {
    /// Starts the binary on port 0 over `db` and waits for the line that logs its URL.
    pub async fn start(db: &TestDb, args: &[&str]) -> Self {
        Self::start_on(db, "127.0.0.1:0", args).await
    }

    /// Starts the binary on a given address (to restart it where a page expects it).
    pub async fn start_on(db: &TestDb, addr: &str, args: &[&str]) -> Self {
        log::init();
        let echo = log::filter().is_some();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hubbub"))
            .args(["--addr", addr, "--database", db.url.expose()])
            .args(args)
            .env("HUBBUB_LOG", "info")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        let log = std::thread::spawn(move || {
            let mut url_tx = Some(url_tx);
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[hubbub {pid}] {line}");
                }
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_owned();
                    if let Some(tx) = url_tx.take() {
                        let _ = tx.send(url);
                    }
                }
                lines.push(line);
            }
            lines
        });
        let url = tokio::time::timeout(PATIENCE, url_rx)
            .await
            .expect("the binary logged its URL")
            .expect("the binary exited before listening");
        Self {
            child: Some(child),
            url,
            log: Some(log),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.url.replacen("http://", "ws://", 1))
    }

    /// Sends a signal (`-TERM`, `-KILL`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map(Child::id).unwrap_or_default();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its status and everything it logged.
    pub async fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().unwrap();
        let log = self.log.take().unwrap();
        let status = tokio::task::spawn_blocking(move || (child.wait(), log.join()))
            .await
            .unwrap();
        (status.0.unwrap(), status.1.unwrap())
    }
}
