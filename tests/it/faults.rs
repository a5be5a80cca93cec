//! Faults under a running server: PostgreSQL restarted and stopped, the SQLite disk full,
//! the SQLite database made read-only, the server itself killed with SIGKILL. In each case
//! a sender whose message could not be stored is told so and gets the text back, nothing
//! is broadcast that is not stored, nothing broadcast is lost or stored twice, and the
//! chat recovers by itself.
//!
//! Three of them need what a laptop may not have: PostgreSQL's server binaries (each test
//! runs a private instance, so restarting it disturbs no other test) and root (to mount a
//! small tmpfs; to make files immutable with `chattr +i`, on a filesystem that supports
//! it). Without them they skip and say why; in CI (`CI=true`) a skip fails.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use hubbub::store::DatabaseUrl;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::helpers::{
    Backend, ChildServer, PageModel, ShownMessage, TestApp, TestClient, TestDb, spawn_app_on,
};

/// A fault can keep a sender waiting through several store timeouts (a pool that cannot
/// connect gives up after 3 s) on a loaded machine: the longest wait for any one answer.
const FAULT_PATIENCE: Duration = Duration::from_secs(30);

const UNAVAILABLE: &str =
    "Not sent: the message store is unavailable right now; try again in a moment.";

/// `true` when nothing is missing; otherwise prints why the test skips (a failure in CI).
fn runnable(test: &str, missing: Option<String>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    let reason = format!("{test} SKIPPED: {missing}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason}; in CI a skip is a failure"
    );
    eprintln!("{reason}");
    false
}

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
enum Outcome {
    /// It came back in the room, with this id.
    Broadcast(u64),
    /// A notice (this text), with the message put back into the input.
    Refused(String),
}

/// Sends `text` and reads until it is either broadcast or refused.
async fn send_and_wait(client: &mut TestClient, text: &str) -> Outcome {
    client.notice = None;
    client.restored_input = None;
    let from = client.shown.len();
    client.say(text).await;
    loop {
        if let Some(message) = client.shown[from..].iter().find(|m| m.text == text) {
            return Outcome::Broadcast(message.id);
        }
        if client.restored_input.as_deref() == Some(text) {
            return Outcome::Refused(client.notice.clone().expect("a notice with the text"));
        }
        client.read_frame_within(FAULT_PATIENCE).await;
    }
}

/// A page that only reads, in the background, reporting how many messages it shows.
struct Observer {
    shown: watch::Receiver<usize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<PageModel>,
}

impl Observer {
    /// `client` has read its history frame already.
    fn start(mut client: TestClient) -> Self {
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

    fn count(&self) -> usize {
        *self.shown.borrow()
    }

    async fn wait_for(&mut self, n: usize, what: &str) {
        tokio::time::timeout(FAULT_PATIENCE, self.shown.wait_for(|&shown| shown >= n))
            .await
            .unwrap_or_else(|_| panic!("the observer did not see {what} ({n} messages)"))
            .unwrap_or_else(|_| panic!("the observer's connection ended before {what}"));
    }

    async fn finish(self) -> Vec<ShownMessage> {
        let _ = self.stop.send(());
        self.task.await.unwrap().shown
    }
}

/// Every stored message, `(id, text)`, read from the database directly.
async fn stored(db: &TestDb) -> Vec<(i64, String)> {
    const SQL: &str = "SELECT id, body FROM messages ORDER BY id";
    let url = db.url.expose();
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let rows = sqlx::query_as(SQL).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows = sqlx::query_as(SQL).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }
}

/// Checks the store against what clients saw: no text stored twice, and every message
/// broadcast is stored under the id it was broadcast with. Returns the stored texts.
async fn assert_broadcasts_stored_once<'a>(
    db: &TestDb,
    broadcast: impl IntoIterator<Item = &'a ShownMessage>,
) -> HashMap<String, i64> {
    let rows = stored(db).await;
    let mut by_text = HashMap::new();
    for (id, text) in rows {
        if let Some(other) = by_text.insert(text.clone(), id) {
            panic!("{text:?} is stored twice, as {other} and {id}");
        }
    }
    for message in broadcast {
        assert_eq!(
            by_text.get(&message.text),
            Some(&(message.id as i64)),
            "broadcast as {}, {:?} must be stored under that id",
            message.id,
            message.text
        );
    }
    by_text
}

/// A PostgreSQL server of the test's own, in a temporary directory on a free port, run as
/// the `postgres` user when the test runs as root (initdb refuses root). Stopped (and its
/// files removed) on drop.
struct PrivatePostgres {
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
    async fn start(test: &str) -> Option<Self> {
        let bin = match postgres_bin() {
            Ok(bin) => bin,
            Err(missing) => {
                runnable(test, Some(missing));
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

    async fn restart(&self, mode: &str) {
        assert!(self.pg_ctl("restart", mode).await, "{}", self.log());
    }

    async fn stop(&self) {
        assert!(self.pg_ctl("stop", "fast").await, "{}", self.log());
    }

    async fn resume(&self) {
        assert!(self.pg_ctl("start", "fast").await, "{}", self.log());
    }

    fn url(&self) -> DatabaseUrl {
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

/// PostgreSQL restarts under traffic (cleanly, then as after a crash), then stays down a
/// while, then comes back, all without restarting hubbub.
#[tokio::test]
async fn postgres_restarted_and_stopped_under_traffic() {
    const TEST: &str = "faults::postgres_restarted_and_stopped_under_traffic";
    const SENDERS: usize = 4;
    let Some(pg) = PrivatePostgres::start(TEST).await else {
        return;
    };
    let db = Arc::new(TestDb::at(pg.url(), Backend::Postgres));
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    let mut observer = Observer::start(app.connect().await);

    // Senders talk all along, one message at a time, and note how each one ended.
    let (stop_sending, stop) = watch::channel(false);
    let refusals: Arc<Vec<AtomicUsize>> =
        Arc::new((0..SENDERS).map(|_| AtomicUsize::new(0)).collect());
    let refused_so_far = |refusals: &[AtomicUsize]| -> Vec<usize> {
        refusals.iter().map(|r| r.load(Ordering::Relaxed)).collect()
    };
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let mut client = app.connect().await;
        let stop = stop.clone();
        let refusals = Arc::clone(&refusals);
        senders.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for j in 0.. {
                if *stop.borrow() {
                    break;
                }
                let text = format!("s{i}-{j}");
                let outcome = send_and_wait(&mut client, &text).await;
                if matches!(outcome, Outcome::Refused(_)) {
                    refusals[i].fetch_add(1, Ordering::Relaxed);
                }
                outcomes.push((text, outcome));
            }
            outcomes
        }));
    }

    // 1. Restarts in the middle of the traffic: a clean one (what `pg_ctlcluster restart`
    // does), then a crash (every server process killed, recovery on start).
    observer.wait_for(20, "traffic before the restarts").await;
    for mode in ["fast", "immediate"] {
        pg.restart(mode).await;
        let restarted_at = observer.count();
        observer
            .wait_for(
                restarted_at + 20,
                &format!("traffic after the {mode} restart"),
            )
            .await;
    }

    // 2. Down for a while: every sender is refused at least once.
    let before_outage = refused_so_far(&refusals);
    pg.stop().await;
    let deadline = tokio::time::Instant::now() + FAULT_PATIENCE;
    while refused_so_far(&refusals)
        .iter()
        .zip(&before_outage)
        .any(|(now, before)| now <= before)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every sender was refused while PostgreSQL was down: {:?} before, {:?} now",
            before_outage,
            refused_so_far(&refusals)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut probe = app.connect().await;
    assert!(
        !probe.shown.is_empty(),
        "a page opened during the outage still gets the recent history"
    );
    let outcome = send_and_wait(&mut probe, "while down").await;
    assert_eq!(outcome, Outcome::Refused(UNAVAILABLE.to_owned()));
    assert!(!app.server.is_finished(), "the server is still serving");

    // 3. Back: the pools reconnect by themselves.
    pg.resume().await;
    let resumed_at = observer.count();
    observer
        .wait_for(resumed_at + 20, "traffic after PostgreSQL came back")
        .await;
    stop_sending.send(true).unwrap();
    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    for sender in join_all(senders).await {
        outcomes.extend(sender.unwrap());
    }
    let last = send_and_wait(&mut probe, "last").await;
    assert!(matches!(last, Outcome::Broadcast(_)), "{last:?}");
    let broadcast = outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Broadcast(_)))
        .count();
    observer
        .wait_for(broadcast + 1, "every broadcast message")
        .await;
    let seen = observer.finish().await;
    assert_eq!(seen.last().map(|m| m.text.as_str()), Some("last"));

    // Every broadcast was stored once, under its id, and its sender saw it go through.
    let stored = assert_broadcasts_stored_once(&db, &seen).await;
    let seen_texts: HashSet<&str> = seen.iter().map(|m| m.text.as_str()).collect();
    let mut refused = 0;
    let mut refused_then_shown = 0;
    for (text, outcome) in &outcomes {
        match outcome {
            Outcome::Broadcast(id) => {
                assert!(seen_texts.contains(text.as_str()), "{text} went unseen");
                assert_eq!(stored.get(text), Some(&(*id as i64)), "{text}");
            }
            Outcome::Refused(notice) => {
                refused += 1;
                assert_eq!(notice, UNAVAILABLE, "{text}");
                // A commit whose answer was lost with the connection is stored although
                // its sender was told to send again; the next commit's `prev` then shows
                // the gap and the sequencer reads it back and broadcasts it (once: the
                // store check above). Anything stored is shown: nothing is left stored
                // but unseen.
                assert_eq!(
                    seen_texts.contains(text.as_str()),
                    stored.contains_key(text),
                    "{text} was refused, and is stored without being shown or shown without being stored"
                );
                refused_then_shown += usize::from(stored.contains_key(text));
            }
        }
    }
    for message in &seen {
        if let Some(Outcome::Broadcast(id)) = outcomes.get(&message.text) {
            assert_eq!(*id, message.id, "{}", message.text);
        }
    }
    assert!(!stored.contains_key("while down"));
    println!(
        "postgres restart and outage: {} sent, {} broadcast, {refused} refused \
         ({} around the restarts, {refused_then_shown} stored anyway and shown later)",
        outcomes.len(),
        seen.len(),
        before_outage.iter().sum::<usize>()
    );
}

/// A tmpfs of the test's own, unmounted (lazily, should the server still hold files on it)
/// on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with the reason printed) when mounting is not possible; a panic in CI.
    async fn mount(test: &str, size: &str) -> Option<Self> {
        if !runnable(
            test,
            (!is_root()).then(|| "mounting a small tmpfs needs root".to_owned()),
        ) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("hubbub-disk-")
            .tempdir()
            .unwrap();
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path());
        let out = run(mount).await;
        let failed = (!out.status.success()).then(|| {
            format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if !runnable(test, failed) {
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes a file until the disk is full; returns its size.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0_u8; 64 * 1024];
        let mut written = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(err) if err.raw_os_error() == Some(28) => break, // ENOSPC
                Err(err) => panic!("filling the disk: {err}"),
            }
        }
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .status();
    }
}

/// A server on a SQLite file in `dir` with a sender and an observer, for faults of the
/// file's disk; five messages ("before 0" to "before 4") are broadcast to start with.
struct SqliteRoom {
    app: TestApp,
    sender: TestClient,
    observer: Observer,
    /// Every text broadcast so far, in order.
    broadcast: Vec<String>,
    /// Whether the last message sent was refused.
    last_refused: bool,
}

impl SqliteRoom {
    async fn start(dir: &Path) -> Self {
        let url = format!("sqlite://{}", dir.join("hubbub.db").display());
        let db = Arc::new(TestDb::at(DatabaseUrl::new(url), Backend::Sqlite));
        let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
        let sender = app.connect().await;
        let observer = Observer::start(app.connect().await);
        let mut room = Self {
            app,
            sender,
            observer,
            broadcast: Vec::new(),
            last_refused: false,
        };
        room.send_all("before", 5).await;
        room
    }

    /// Sends `text` and waits for how it ended, noting it when broadcast.
    async fn send(&mut self, text: String) -> Outcome {
        let outcome = send_and_wait(&mut self.sender, &text).await;
        self.last_refused = matches!(outcome, Outcome::Refused(_));
        if !self.last_refused {
            self.broadcast.push(text);
        }
        outcome
    }

    /// Sends "`prefix` 0" to "`prefix` n-1", each of which must be broadcast.
    async fn send_all(&mut self, prefix: &str, n: usize) {
        for i in 0..n {
            let outcome = self.send(format!("{prefix} {i}")).await;
            assert!(matches!(outcome, Outcome::Broadcast(_)), "{outcome:?}");
        }
    }

    /// Reading needs no writes: a page opened now gets the history from memory, and paging
    /// back reads the store, where every broadcast message must be. Returns that page.
    async fn assert_reading_works(&self) -> TestClient {
        let newest_50 = |texts: &[String]| texts[texts.len().saturating_sub(50)..].to_vec();
        let reader = self.app.connect().await;
        let texts: Vec<String> = reader.shown.iter().map(|m| m.text.clone()).collect();
        assert_eq!(texts, newest_50(&self.broadcast));
        let newest = reader.shown.last().unwrap().id;
        let page = self
            .app
            .get(&format!("/rooms/general/history?before={newest}"))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let mut older = PageModel::default();
        older.apply_older_page(&page.body);
        let texts: Vec<String> = older.shown.iter().map(|m| m.text.clone()).collect();
        assert_eq!(
            texts,
            newest_50(&self.broadcast[..self.broadcast.len() - 1]),
            "the store holds what was broadcast"
        );
        assert!(
            !self.app.server.is_finished(),
            "the server is still serving"
        );
        // The store still answers reads, but the node cannot take messages: not ready
        // (while it is alive).
        if self.last_refused {
            let ready = self.app.get("/readyz").await;
            assert_eq!(ready.status, 503, "{}", ready.body);
            assert!(
                ready.body.contains("the last commit failed"),
                "{}",
                ready.body
            );
            assert_eq!(self.app.get("/healthz").await.status, 200);
        }
        reader
    }

    /// Once the fault is gone, without a restart: five more messages ("after 0" to
    /// "after 4") are broadcast, also to `reader` (opened during the fault); the observer
    /// saw exactly what was broadcast, and the store holds each of those once and nothing
    /// else.
    async fn assert_recovered(mut self, mut reader: TestClient) {
        self.send_all("after", 5).await;
        let ready = self.app.get("/readyz").await;
        assert_eq!(ready.status, 200, "{}", ready.body);
        reader.wait_for_shown(reader.shown.len() + 5).await;
        self.observer
            .wait_for(self.broadcast.len(), "every broadcast message")
            .await;
        let seen = self.observer.finish().await;
        let texts: Vec<&str> = seen.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, self.broadcast, "nothing refused was broadcast");

        let db = self.app.stop().await;
        let stored = assert_broadcasts_stored_once(&db, &seen).await;
        assert_eq!(
            stored.len(),
            self.broadcast.len(),
            "nothing refused was stored"
        );
    }
}

/// The disk under the SQLite file fills up: senders are refused with their text back, the
/// room keeps reading, and once space is freed sending works again, without a restart.
#[tokio::test]
async fn sqlite_disk_full_refuses_messages_and_recovers_when_space_is_freed() {
    const TEST: &str = "faults::sqlite_disk_full_refuses_messages_and_recovers_when_space_is_freed";
    let Some(disk) = SmallDisk::mount(TEST, "4m").await else {
        return;
    };
    let mut room = SqliteRoom::start(disk.path()).await;

    let filled = disk.fill();
    // A commit that fits in space the files already hold could still go through (none did
    // in the runs so far), so only most of these must be refused.
    const WHILE_FULL: usize = 10;
    let mut refused = Vec::new();
    for i in 0..WHILE_FULL {
        let text = format!("while full {i}");
        if let Outcome::Refused(notice) = room.send(text.clone()).await {
            assert_eq!(notice, UNAVAILABLE);
            refused.push(text);
        }
    }
    let reader = room.assert_reading_works().await;
    assert!(
        refused.len() * 2 > WHILE_FULL,
        "the full disk refused only {refused:?}"
    );

    disk.free();
    room.assert_recovered(reader).await;
    println!(
        "disk full after {filled} filler bytes: {WHILE_FULL} sent while full, {} refused",
        refused.len()
    );
}

/// Files made immutable (`chattr +i`): even descriptors the server already holds open
/// then fail every write with EPERM, and opening them for writing fails. Root is not
/// exempt. The flag is cleared again on drop, before the directory holding the files is
/// removed (an immutable file cannot be deleted), whether the test passed or not.
struct ReadOnlyFiles {
    files: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl ReadOnlyFiles {
    /// A directory under `/var/tmp`, which is on disk where `/tmp` may be a tmpfs (one
    /// that supports the flag only on recent kernels). `None` (with the reason printed)
    /// when the flag cannot be set there; a panic in CI.
    async fn dir(test: &str) -> Option<Self> {
        if !runnable(
            test,
            (!is_root()).then(|| "making a file immutable (chattr +i) needs root".to_owned()),
        ) {
            return None;
        }
        let parent = Path::new("/var/tmp");
        let dir = if parent.is_dir() {
            tempfile::Builder::new()
                .prefix("hubbub-ro-")
                .tempdir_in(parent)
        } else {
            tempfile::Builder::new().prefix("hubbub-ro-").tempdir()
        }
        .unwrap();
        let files = Self {
            files: Vec::new(),
            dir,
        };
        // Try the flag on a file of its own first, so an unsupported filesystem skips
        // before any server starts.
        let probe = files.path().join("probe");
        std::fs::write(&probe, b"probe").unwrap();
        let failed = files.chattr("+i", std::slice::from_ref(&probe)).await.err();
        files
            .chattr("-i", std::slice::from_ref(&probe))
            .await
            .unwrap();
        std::fs::remove_file(probe).unwrap();
        runnable(test, failed).then_some(files)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn chattr(&self, flag: &str, files: &[PathBuf]) -> Result<(), String> {
        let mut chattr = Command::new("chattr");
        chattr.arg(flag).args(files);
        let out = run(chattr).await;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "chattr {flag} failed in {}: {}",
                self.path().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Makes `files` (in this directory) immutable until [`Self::writable`] or drop.
    async fn read_only(&mut self, files: &[&str]) {
        let files: Vec<PathBuf> = files.iter().map(|f| self.path().join(f)).collect();
        for file in &files {
            assert!(file.exists(), "{} does not exist", file.display());
        }
        // Recorded first: a flag set on some files before a failure is still cleared.
        self.files.clone_from(&files);
        self.chattr("+i", &files).await.unwrap();
    }

    async fn writable(&mut self) {
        let files = std::mem::take(&mut self.files);
        self.chattr("-i", &files).await.unwrap();
    }
}

impl Drop for ReadOnlyFiles {
    fn drop(&mut self) {
        if !self.files.is_empty() {
            let _ = Command::new("chattr").arg("-i").args(&self.files).status();
        }
    }
}

/// The SQLite database and its write-ahead log are made read-only under the running
/// server: senders are refused with their text back, the room keeps reading, and once the
/// files are writable again sending works, without a restart.
#[tokio::test]
async fn sqlite_read_only_refuses_messages_and_recovers() {
    const TEST: &str = "faults::sqlite_read_only_refuses_messages_and_recovers";
    let Some(mut files) = ReadOnlyFiles::dir(TEST).await else {
        return;
    };
    let mut room = SqliteRoom::start(files.path()).await;

    // Commits write to the log (`-wal`), checkpoints copy it into the database file: both
    // are made read-only. The first refused commit fails writing the log through the
    // descriptor already open ("disk I/O error", SQLITE_IOERR_WRITE); the store then
    // closes that connection, and the next one SQLite opens read-only ("attempt to write
    // a readonly database"). The shared-memory index (`-shm`) holds no messages and stays
    // writable: SQLite maps it into memory and writes to it there, and on an immutable
    // file such a write kills the process with SIGBUS (seen in a trial run of this test,
    // and with Python's sqlite3 alone), whatever the server does.
    files.read_only(&["hubbub.db", "hubbub.db-wal"]).await;
    const WHILE_READ_ONLY: usize = 10;
    for i in 0..WHILE_READ_ONLY {
        let text = format!("while read-only {i}");
        let outcome = room.send(text.clone()).await;
        assert_eq!(outcome, Outcome::Refused(UNAVAILABLE.to_owned()), "{text}");
    }
    let reader = room.assert_reading_works().await;

    files.writable().await;
    room.assert_recovered(reader).await;
    println!("read-only: {WHILE_READ_ONLY} sent while read-only, all refused");
}

/// Senders here post far faster than people type.
const UNLIMITED: &[&str] = &["--message-rate", "100000", "--message-burst", "100000"];

both_backends!(kill_9_again_and_again_keeps_every_broadcast_once);
/// The real binary is killed with SIGKILL mid-traffic and started again on the same
/// database, three times over; clients reconnect to each new process and keep sending.
async fn kill_9_again_and_again_keeps_every_broadcast_once(db: Arc<TestDb>) {
    use futures::SinkExt;
    const ROUNDS: usize = 3;
    const SENDERS: usize = 4;
    const EACH: usize = 150;
    let mut seen: HashMap<u64, ShownMessage> = HashMap::new();
    for round in 0..ROUNDS {
        let server = ChildServer::start(&db, UNLIMITED).await;
        let connect = || async {
            let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
                .await
                .unwrap();
            let mut client = TestClient::new(ws);
            client.read_frame().await;
            client
        };
        let mut observer = Observer::start(connect().await);
        let already = observer.count();
        let mut sends = Vec::new();
        for i in 0..SENDERS {
            let (mut sink, _) = connect().await.ws.split();
            sends.push(tokio::spawn(async move {
                for j in 0..EACH {
                    let text = format!("r{round}-s{i}-{j}");
                    let frame = serde_json::json!({"text": text, "headers": {}});
                    if sink.send(Message::text(frame.to_string())).await.is_err() {
                        break; // killed mid-send
                    }
                    if j % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                // Kept open until the kill, so nothing is cut off by a close.
                sink
            }));
        }
        observer
            .wait_for(already + SENDERS * EACH / 4, "part of the traffic")
            .await;
        server.signal("-KILL");
        let (status, _) = server.wait().await;
        assert!(!status.success(), "round {round}: {status}");
        for send in join_all(sends).await {
            drop(send.unwrap());
        }
        for message in observer.finish().await {
            if let Some(earlier) = seen.insert(message.id, message.clone()) {
                assert_eq!(earlier, message, "one id, one message, across restarts");
            }
        }
    }
    // One more start recovers from the last kill; a page then shows the newest messages.
    let server = ChildServer::start(&db, UNLIMITED).await;
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let mut page = TestClient::new(ws);
    page.read_frame().await;
    drop(server);

    let stored = assert_broadcasts_stored_once(&db, seen.values()).await;
    let mut newest: Vec<(i64, &str)> = stored.iter().map(|(t, id)| (*id, t.as_str())).collect();
    newest.sort_unstable();
    let newest: Vec<(u64, &str)> = newest[newest.len() - page.shown.len()..]
        .iter()
        .map(|(id, text)| (*id as u64, *text))
        .collect();
    let shown: Vec<(u64, &str)> = page.shown.iter().map(|m| (m.id, m.text.as_str())).collect();
    assert_eq!(
        shown, newest,
        "the restarted server shows the stored history"
    );
    println!(
        "kill -9 x{ROUNDS}: {} sent, {} broadcast, {} stored",
        ROUNDS * SENDERS * EACH,
        seen.len(),
        stored.len()
    );
}
