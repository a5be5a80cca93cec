//! `spawn_app()` and a `TestClient` that speaks the page's protocol and keeps the message
//! list the way htmx would (replace on `innerHTML`, append on `beforeend`).

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hubbub::hub::{Hub, Stats};
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
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::defaults();
    configure(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(config).unwrap();
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
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
        let mut request = hyper::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).unwrap();
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
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
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

/// The parts of a page that frames change: the message list and the notice.
#[derive(Debug, Default)]
pub struct PageModel {
    pub shown: Vec<ShownMessage>,
    pub notice: Option<String>,
}

impl PageModel {
    /// Applies a frame the way htmx would swap it.
    pub fn apply_frame(&mut self, frame: &str) {
        const OPEN: &str = r#"<div id="messages" hx-swap-oob=""#;
        let mut rest = frame;
        loop {
            let notice_at = rest.find(r#"<p id="notice""#);
            let list_at = rest.find(OPEN);
            match (notice_at, list_at) {
                (Some(n), l) if l.is_none_or(|l| n < l) => {
                    let start = n + rest[n..].find('>').unwrap() + 1;
                    let end = start + rest[start..].find("</p>").unwrap();
                    self.notice = Some(unescape(&rest[start..end]));
                    rest = &rest[end + 4..];
                }
                (_, Some(l)) => {
                    let after = &rest[l + OPEN.len()..];
                    let swap_end = after.find('"').unwrap();
                    let swap = &after[..swap_end];
                    let body_start = swap_end + after[swap_end..].find('>').unwrap() + 1;
                    let body_end = after.find("</div>").unwrap();
                    let articles = parse_articles(&after[body_start..body_end]);
                    match swap {
                        "innerHTML" => self.shown = articles,
                        "beforeend" => self.shown.extend(articles),
                        other => panic!("unexpected swap {other:?} in {frame}"),
                    }
                    rest = &after[body_end + 6..];
                }
                _ => {
                    assert!(rest.trim().is_empty(), "unparsed frame content: {rest:?}");
                    return;
                }
            }
        }
    }
}

fn parse_articles(html: &str) -> Vec<ShownMessage> {
    html.split("<article")
        .skip(1)
        .map(|article| {
            let id = between(article, "id=\"msg-", "\"").parse().unwrap();
            let author = unescape(between(article, "<span class=\"author\">", "</span>"));
            let text = unescape(between(article, "<p class=\"text\">", "</p>"));
            let text_raw = between(article, "<p class=\"text\">", "</p>");
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
