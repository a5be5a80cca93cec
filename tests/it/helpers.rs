//! `spawn_app()` and a `TestClient` that speaks the page's protocol and keeps the message
//! list the way htmx would (replace on `innerHTML`, append on `beforeend`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hubbub::hub::{Hub, Stats};
use hubbub::store::DatabaseUrl;
use hubbub::{Config, Server};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<std::io::Result<()>>,
    /// Keeps the test's SQLite file alive as long as the app.
    pub db: Arc<TestDb>,
}

/// A server on port 0 over a fresh SQLite file.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(Arc::new(TestDb::sqlite()), "127.0.0.1:0", configure).await
}

/// A server on `addr` over `db`.
pub async fn spawn_app_on(
    db: Arc<TestDb>,
    addr: &str,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
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

/// The URL in `env`, or `None` and a printed reason why `test` is skipped; in CI (where a
/// skip is a failure) a panic.
pub fn configured(env: &str, test: &str, example: &str) -> Option<String> {
    if let Ok(url) = std::env::var(env) {
        return Some(url);
    }
    let reason = format!("{test} SKIPPED: set {env} (e.g. {example}) to run it");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason}; in CI a skip is a failure"
    );
    eprintln!("{reason}");
    None
}

/// A name part no other test (in this process or another) has: process, counter, clock.
pub fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A database for one test: a SQLite file in a temporary directory, or a schema of its own
/// in the PostgreSQL server named by `HUBBUB_TEST_POSTGRES_URL`.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub backend: Backend,
    /// Removed (with the SQLite file) when the test ends.
    _dir: Option<tempfile::TempDir>,
    /// `(server URL, schema)` to drop at the end.
    schema: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const POSTGRES_ENV: &str = "HUBBUB_TEST_POSTGRES_URL";

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::new(format!(
            "sqlite://{}",
            dir.path().join("hubbub.db").display()
        ));
        Self {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
            schema: None,
        }
    }

    /// A database the test set up itself (a private server, a file on a mount of its own);
    /// the test cleans it up.
    pub fn at(url: DatabaseUrl, backend: Backend) -> Self {
        Self {
            url,
            backend,
            _dir: None,
            schema: None,
        }
    }

    /// `None` (and a printed reason) when no PostgreSQL is configured; a panic in CI.
    pub async fn postgres(test: &str) -> Option<Self> {
        let server = configured(
            POSTGRES_ENV,
            test,
            "postgres://postgres@127.0.0.1:5432/test",
        )?;
        let schema = format!("hubbub_test_{}", unique_suffix());
        let admin = sqlx::PgPool::connect(&server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let separator = if server.contains('?') { '&' } else { '?' };
        // Named after the schema, so that the end of the test can find its sessions.
        let url = DatabaseUrl::new(format!(
            "{server}{separator}options[search_path]={schema}&application_name={schema}"
        ));
        Some(Self {
            url,
            backend: Backend::Postgres,
            _dir: None,
            schema: Some((server, schema)),
        })
    }

    /// Runs SQL against the test database directly (for injecting faults).
    pub async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(self.url.expose()).await?;
                let done = sqlx::raw_sql(sql).execute(&pool).await.map(drop);
                pool.close().await;
                done
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(self.url.expose()).await?;
                let done = sqlx::raw_sql(sql).execute(&pool).await.map(drop);
                pool.close().await;
                done
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, schema)) = self.schema.take() else {
            return;
        };
        // Drop the schema on a thread of its own: `Drop` cannot await.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&server).await {
                    // The test's server may still run in the test's runtime, which this
                    // drop blocks, in the middle of a commit: its transaction would hold
                    // locks DROP SCHEMA waits for, and the insert lock every PostgreSQL
                    // test shares, until the idle-in-transaction timeout (10 s), failing
                    // other tests meanwhile (seen twice in full runs). End those sessions.
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&schema)
                    .execute(&admin)
                    .await;
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(&admin)
                            .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Runs a test body once per backend: `sqlite` always, `postgres` when configured.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(std::sync::Arc::new($crate::helpers::TestDb::sqlite())).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = concat!(module_path!(), "::postgres");
                if let Some(db) = $crate::helpers::TestDb::postgres(test).await {
                    super::$name(std::sync::Arc::new(db)).await;
                }
            }
        }
    };
}

/// The real `hubbub` binary as a child process; killed on drop if still running.
pub struct ChildServer {
    child: Option<std::process::Child>,
    pub url: String,
    log: Option<std::thread::JoinHandle<Vec<String>>>,
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
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
            .args(["--addr", addr, "--database", db.url.expose()])
            .args(args)
            .env("HUBBUB_LOG", "info")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        let log = std::thread::spawn(move || {
            let mut url_tx = Some(url_tx);
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
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
        let pid = self
            .child
            .as_ref()
            .map(std::process::Child::id)
            .unwrap_or_default();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its status and everything it logged.
    pub async fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut child = self.child.take().unwrap();
        let log = self.log.take().unwrap();
        let status = tokio::task::spawn_blocking(move || (child.wait(), log.join()))
            .await
            .unwrap();
        (status.0.unwrap(), status.1.unwrap())
    }
}

impl TestApp {
    /// Stops this server (1012 to every client) and waits for it to finish.
    pub async fn stop(self) -> Arc<TestDb> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.db
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Connects as a same-origin browser page would and reads the history frame.
    pub async fn connect(&self) -> TestClient {
        let mut client = self.connect_raw().await;
        client.read_frame().await;
        client
    }

    /// Visits a page as a new browser would: returns the identity cookie (`name=value`)
    /// and the page.
    pub async fn visit(&self, path: &str) -> (String, HttpResponse) {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let cookie = page.headers["set-cookie"].to_str().unwrap();
        let pair = cookie.split(';').next().unwrap().to_owned();
        (pair, page)
    }

    /// Connects to a room's socket as the page would (same origin, with its cookie) and
    /// reads the first frame.
    pub async fn connect_to(&self, room: &str, cookie: Option<&str>) -> TestClient {
        self.connect_to_page(room, cookie, PageModel::default())
            .await
    }

    /// Reconnects a page that already shows `page`, as htmx does after a drop.
    pub async fn connect_to_page(
        &self,
        room: &str,
        cookie: Option<&str>,
        page: PageModel,
    ) -> TestClient {
        let mut request = format!("ws://{}/rooms/{room}/ws", self.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Origin", self.url("").parse().unwrap());
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("Cookie", cookie.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut client = TestClient::new(ws);
        client.page = page;
        client.read_frame().await;
        client
    }

    /// A new visitor who took `name`: their identity cookie (`name=value`).
    pub async fn named(&self, name: &str) -> String {
        let (cookie, _) = self.visit("/").await;
        let renamed = self.rename(&cookie, name).await;
        assert_eq!(renamed.status, 200, "{}", renamed.body);
        set_cookie(&renamed)
    }

    /// Renames the user behind `cookie`; returns the response (with the new cookie).
    pub async fn rename(&self, cookie: &str, name: &str) -> HttpResponse {
        let body = format!("name={}", form_encode(name));
        let origin = self.url("");
        self.request_body(
            "POST",
            "/name",
            &[
                ("Cookie", cookie),
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("HX-Request", "true"),
            ],
            &body,
        )
        .await
    }

    /// Connects without reading anything.
    pub async fn connect_raw(&self) -> TestClient {
        let request = self.ws_request(Some(&format!("http://{}", self.addr)));
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        TestClient::new(ws)
    }

    pub fn ws_request(&self, origin: Option<&str>) -> tungstenite::handshake::client::Request {
        let mut request = self.ws_url().into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().unwrap());
        }
        request
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path).await
    }

    pub async fn request(&self, method: &str, path: &str) -> HttpResponse {
        self.request_with(method, path, &[]).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        self.request_body(method, path, headers, "").await
    }

    pub async fn request_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let mut request = hyper::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(bytes::Bytes::from(body.to_owned())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Waits until the hub's counters satisfy `done` (state, not time).
    pub async fn wait_for_stats(&self, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let stats = self.hub.stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited too long for {what}: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One message as a page shows it.
/// Reads frames until `done` holds for the client's page.
pub async fn until(client: &mut TestClient, what: &str, done: impl Fn(&TestClient) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(client) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited too long for {what}"
        );
        client.read_frame().await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownMessage {
    pub id: u64,
    pub author: String,
    pub text: String,
}

pub struct TestClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The page as htmx would have it after every frame so far.
    pub page: PageModel,
    pub frames: usize,
}

impl std::ops::Deref for TestClient {
    type Target = PageModel;
    fn deref(&self) -> &PageModel {
        &self.page
    }
}

impl std::ops::DerefMut for TestClient {
    fn deref_mut(&mut self) -> &mut PageModel {
        &mut self.page
    }
}

impl TestClient {
    pub fn new(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            ws,
            page: PageModel::default(),
            frames: 0,
        }
    }

    /// Sends what htmx 4 sends for a form submit.
    pub async fn say(&mut self, text: &str) {
        let frame = serde_json::json!({
            "text": text,
            "headers": {"HX-Request": "true", "HX-Current-URL": "http://x/", "HX-Source": "form#composer"}
        });
        self.send_raw(frame.to_string()).await;
    }

    pub async fn send_raw(&mut self, frame: String) {
        self.ws.send(Message::text(frame)).await.unwrap();
    }

    /// Reads the next text frame (answering pings on the way) and applies it.
    pub async fn read_frame(&mut self) -> String {
        self.read_frame_within(PATIENCE).await
    }

    /// `read_frame`, for when the server may rightly stay silent longer than `PATIENCE`.
    pub async fn read_frame_within(&mut self, patience: Duration) -> String {
        loop {
            let next = tokio::time::timeout(patience, self.ws.next())
                .await
                .expect("no frame within the patience window");
            match next {
                Some(Ok(Message::Text(text))) => {
                    self.apply(text.as_str());
                    return text.as_str().to_owned();
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads frames until at least `n` messages are shown.
    pub async fn wait_for_shown(&mut self, n: usize) -> &[ShownMessage] {
        while self.shown.len() < n {
            self.read_frame().await;
        }
        &self.shown
    }

    /// Reads frames until a notice arrives.
    pub async fn wait_for_notice(&mut self) -> String {
        self.notice = None;
        while self.notice.is_none() {
            self.read_frame().await;
        }
        self.notice.clone().unwrap()
    }

    /// Reads (and applies) everything until the server's close frame.
    pub async fn wait_for_close(&mut self) -> Option<CloseFrame> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no close frame within the patience window");
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(Message::Text(text))) => self.apply(text.as_str()),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Applies a frame the way htmx would swap it.
    fn apply(&mut self, frame: &str) {
        self.page.apply_frame(frame);
        self.frames += 1;
    }
}

/// `application/x-www-form-urlencoded` for one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The cookie pair (`name=value`) a response sets.
pub fn set_cookie(response: &HttpResponse) -> String {
    let cookie = response.headers["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// The parts of a page that frames change: the message list, the notice, presence, the
/// typing line and the room list.
#[derive(Debug, Default)]
pub struct PageModel {
    pub shown: Vec<ShownMessage>,
    pub notice: Option<String>,
    /// What leads the list: a "load older" element (with its cursor) or the start.
    pub older: Older,
    /// The value the server last put back into the input, if any.
    pub restored_input: Option<String>,
    /// How many the presence list says are here (listed or not).
    pub present_total: usize,
    /// Who the presence list shows.
    pub present: Vec<String>,
    /// The typing line ("" when nobody types).
    pub typing: String,
    /// The room list: `(room, online)`.
    pub rooms: Vec<(String, usize)>,
    /// Lines like "alice joined".
    pub events: Vec<String>,
    /// How many times each kind of element was swapped (for "nothing else came" checks).
    pub swaps: std::collections::HashMap<&'static str, usize>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Older {
    /// Nothing leads the list (an empty room).
    #[default]
    Nothing,
    /// "Load older" fetching the messages before this id.
    Before(u64),
    /// "Start of conversation".
    Start,
}

impl PageModel {
    /// Applies a frame the way htmx would swap it.
    pub fn apply_frame(&mut self, frame: &str) {
        const LIST: &str = r#"<div id="messages" hx-swap-oob=""#;
        let mut rest = frame.trim();
        while !rest.is_empty() {
            if rest.starts_with(r#"<p id="notice""#) {
                let (inner, after) = element(rest, "</p>");
                self.notice = Some(unescape(inner));
                self.count("notice");
                rest = after;
            } else if rest.starts_with(r#"<input id="text""#) {
                let end = rest.find('>').unwrap() + 1;
                let tag = &rest[..end];
                assert!(tag.contains(r#"hx-swap-oob="true""#), "{tag}");
                self.restored_input = tag
                    .split_once(" value=\"")
                    .map(|(_, v)| unescape(&v[..v.find('"').unwrap()]));
                self.count("input");
                rest = &rest[end..];
            } else if rest.starts_with(r#"<p id="typing""#) {
                assert!(
                    rest[..rest.find('>').unwrap()].contains("hx-swap-oob"),
                    "{rest}"
                );
                let (inner, after) = element(rest, "</p>");
                self.typing = unescape(inner);
                self.count("typing");
                rest = after;
            } else if rest.starts_with(r#"<section id="presence""#) {
                assert!(
                    rest[..rest.find('>').unwrap()].contains("hx-swap-oob"),
                    "{rest}"
                );
                let (inner, after) = element(rest, "</section>");
                self.present = inner
                    .split("<li>")
                    .skip(1)
                    .map(|li| unescape(between(li, "\">", "</span>")))
                    .collect();
                let count: usize = between(
                    inner,
                    "<span id=\"presence-count\" class=\"count\">",
                    "</span>",
                )
                .parse()
                .unwrap();
                if inner.contains("class=\"more\" hidden>") {
                    assert_eq!(count, self.present.len(), "the count matches the list");
                }
                self.present_total = count;
                self.count("presence");
                rest = after;
            } else if rest.starts_with(r#"<span id="presence-count""#) {
                // The names shown are unchanged; only the count moved.
                assert!(
                    rest[..rest.find('>').unwrap()].contains("hx-swap-oob"),
                    "{rest}"
                );
                let (inner, after) = element(rest, "</span>");
                self.present_total = inner.parse().unwrap();
                self.count("presence-count");
                rest = after;
            } else if rest.starts_with(r#"<p id="presence-more""#) {
                let (_, after) = element(rest, "</p>");
                rest = after;
            } else if rest.starts_with(r#"<nav id="rooms""#) {
                assert!(
                    rest[..rest.find('>').unwrap()].contains("hx-swap-oob"),
                    "{rest}"
                );
                let (inner, after) = element(rest, "</nav>");
                self.rooms = inner
                    .split("<li>")
                    .skip(1)
                    .map(|li| {
                        let room = between(li, "data-room=\"", "\"").to_owned();
                        let online = li
                            .split_once("<span class=\"count\"")
                            .map_or(0, |(_, c)| between(c, ">", "</span>").parse().unwrap());
                        (room, online)
                    })
                    .collect();
                self.count("rooms");
                rest = after;
            } else if let Some(after) = rest.strip_prefix(LIST) {
                let swap = &after[..after.find('"').unwrap()];
                let body = &after[after.find('>').unwrap() + 1..];
                let (older, body) = parse_older(body);
                let end = body
                    .find("</div>")
                    .unwrap_or_else(|| panic!("unclosed list in {frame}"));
                let content = &body[..end];
                let articles = parse_articles(content);
                match swap {
                    "innerHTML" => {
                        self.shown = articles;
                        self.older = older.unwrap_or(Older::Nothing);
                        self.count("history");
                    }
                    "beforeend" => {
                        assert!(older.is_none(), "an append never carries a loader");
                        self.events.extend(
                            content
                                .split("<p class=\"event\">")
                                .skip(1)
                                .map(|e| unescape(&e[..e.find("</p>").unwrap()])),
                        );
                        self.shown.extend(articles);
                        self.count("append");
                    }
                    other => panic!("unexpected swap {other:?} in {frame}"),
                }
                rest = &body[end + "</div>".len()..];
            } else {
                panic!("unparsed frame content: {rest:?}");
            }
            rest = rest.trim_start();
        }
    }

    fn count(&mut self, kind: &'static str) {
        *self.swaps.entry(kind).or_default() += 1;
    }

    /// Applies a page of older messages the way htmx swaps it over the loader.
    pub fn apply_older_page(&mut self, html: &str) {
        let (older, body) = parse_older(html);
        let mut articles = parse_articles(body);
        articles.append(&mut self.shown);
        self.shown = articles;
        self.older = older.expect("an older page leads with a loader or the start");
    }
}

/// Splits a leading "load older" / "start of conversation" element off the list's content.
pub fn parse_older(body: &str) -> (Option<Older>, &str) {
    if let Some(rest) = body.strip_prefix(r#"<div id="older""#) {
        let before = between(rest, "before=", "\"").parse().unwrap();
        let end = rest.find("</div>").unwrap() + "</div>".len();
        (Some(Older::Before(before)), &rest[end..])
    } else if let Some(rest) = body.strip_prefix(r#"<p id="older""#) {
        let end = rest.find("</p>").unwrap() + "</p>".len();
        assert!(rest[..end].contains("Start of conversation"));
        (Some(Older::Start), &rest[end..])
    } else {
        (None, body)
    }
}

/// An element's inner HTML and what follows it (no nesting of the same tag).
fn element<'a>(html: &'a str, close: &str) -> (&'a str, &'a str) {
    let start = html.find('>').unwrap() + 1;
    let end = html
        .find(close)
        .unwrap_or_else(|| panic!("{close} missing in {html}"));
    (&html[start..end], &html[end + close.len()..])
}

/// Message text with its links turned back into the addresses they show, after checking
/// each link has exactly the safe form.
fn unlink(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(at) = rest.find("<a href=\"") {
        text.push_str(&rest[..at]);
        let tag_end = at + rest[at..].find('>').unwrap() + 1;
        let tag = &rest[at..tag_end];
        let href = between(tag, "href=\"", "\"");
        assert!(
            href.starts_with("http://") || href.starts_with("https://"),
            "{tag}"
        );
        assert!(
            tag.ends_with(r#" rel="noopener nofollow ugc" target="_blank">"#),
            "{tag}"
        );
        let close = tag_end + rest[tag_end..].find("</a>").unwrap();
        assert_eq!(&rest[tag_end..close], href, "a link shows its address");
        text.push_str(href);
        rest = &rest[close + "</a>".len()..];
    }
    text.push_str(rest);
    text
}

fn parse_articles(html: &str) -> Vec<ShownMessage> {
    html.split("<article")
        .skip(1)
        .map(|article| {
            let id = between(article, "id=\"msg-", "\"").parse().unwrap();
            let author_tag = between(article, "<span class=\"author c", "</span>");
            let author = unescape(&author_tag[author_tag.find('>').unwrap() + 1..]);
            let text_raw = unlink(between(article, "<p class=\"text\">", "</p>"));
            let text = unescape(&text_raw);
            assert!(
                !text_raw.contains(['<', '>', '"']),
                "unescaped markup in message text: {text_raw:?}"
            );
            ShownMessage { id, author, text }
        })
        .collect()
}

fn between<'a>(haystack: &'a str, start: &str, end: &str) -> &'a str {
    let from = haystack
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {haystack:?}"))
        + start.len();
    let to = from + haystack[from..].find(end).unwrap();
    &haystack[from..to]
}

pub fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}
