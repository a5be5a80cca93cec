//! Faults on purpose, and how a page lives through them. The machinery that breaks things
//! has a module each: `postgres` (a private PostgreSQL to restart and stop), `disk` (a
//! tmpfs to fill, files made read-only) and `binary` (the real hubbub as a child process,
//! to kill). Here: a sender's view of one message under a fault ([`send_and_wait`]), a page
//! that watches in the background ([`Observer`]), and how long a fault may keep either
//! waiting.

mod binary;
mod disk;
mod postgres;

use std::process::{Command, Output};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub use binary::ChildServer;
pub use disk::{ReadOnlyFiles, SmallDisk};
pub use postgres::PrivatePostgres;

use crate::support::client::TestClient;
use crate::support::page::{PageModel, ShownMessage};

/// A fault can keep a sender waiting through several store timeouts (a pool that cannot
/// connect gives up after 3 s) on a loaded machine: the longest wait for any one answer.
pub const FAULT_PATIENCE: Duration = Duration::from_secs(30);

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn run_blocking(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("{shown}: {err}"));
    if !out.status.success() {
        eprintln!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs a command off the runtime: the server under test shares the test's runtime and
/// must keep running while, say, PostgreSQL restarts.
async fn run(command: Command) -> Output {
    tokio::task::spawn_blocking(move || run_blocking(command))
        .await
        .unwrap()
}

/// How one message ended for its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It came back in the room, with this id.
    Broadcast(u64),
    /// A notice (this text), with the message put back into the input.
    Refused(String),
}

/// Sends `text` and reads until it is either broadcast or refused.
pub async fn send_and_wait(client: &mut TestClient, text: &str) -> Outcome {
    client.notice = None;
    client.restored_input = None;
    let from = client.shown.len();
    client.say(text).await;
    let broadcast = |page: &PageModel| {
        page.shown[from..]
            .iter()
            .find(|m| m.text == text)
            .map(|m| m.id)
    };
    let refused = |page: &PageModel| page.restored_input.as_deref() == Some(text);
    client
        .until_within(
            FAULT_PATIENCE,
            &format!("{text:?} to be broadcast or refused"),
            |page| broadcast(page).is_some() || refused(page),
        )
        .await;
    match broadcast(&client.page) {
        Some(id) => Outcome::Broadcast(id),
        None => Outcome::Refused(client.notice.clone().expect("a notice with the text")),
    }
}

/// A page that only reads, in the background, reporting how many messages it shows.
pub struct Observer {
    shown: watch::Receiver<usize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<PageModel>,
}

impl Observer {
    /// `client` has read its history frame already.
    pub fn start(mut client: TestClient) -> Self {
        let (progress, shown) = watch::channel(client.shown.len());
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return client.page,
                    next = client.ws.next() => match next {
                        Some(Ok(Message::Text(text))) => {
                            client.page.apply_frame(text.as_str());
                            let _ = progress.send(client.page.shown.len());
                        }
                        Some(Ok(_)) => {}
                        // The server went away (kill -9).
                        _ => return client.page,
                    },
                }
            }
        });
        Self { shown, stop, task }
    }

    pub fn count(&self) -> usize {
        *self.shown.borrow()
    }

    pub async fn wait_for(&mut self, n: usize, what: &str) {
        tokio::time::timeout(FAULT_PATIENCE, self.shown.wait_for(|&shown| shown >= n))
            .await
            .unwrap_or_else(|_| panic!("the observer did not see {what} ({n} messages)"))
            .unwrap_or_else(|_| panic!("the observer's connection ended before {what}"));
    }

    pub async fn finish(self) -> Vec<ShownMessage> {
        let _ = self.stop.send(());
        self.task.await.unwrap().shown
    }
}
