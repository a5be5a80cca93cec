//! A page's WebSocket: [`TestClient`] connects as the page does (same origin, with its
//! cookie), sends what htmx sends, and applies every frame to its [`PageModel`], so a test
//! asserts on what the user would see. Waiting for the page to show something is
//! [`TestClient::until`], built on `eventually`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::PATIENCE;
use super::app::TestApp;
use super::eventually::Deadline;
use super::faults::ChildServer;
use super::page::{PageModel, ShownMessage};

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

    /// Opens the socket at `url` for a page that already shows `page`, with an `Origin`
    /// and a `Cookie` when given, and reads the first frame.
    pub async fn open(
        url: &str,
        origin: Option<&str>,
        cookie: Option<&str>,
        page: PageModel,
    ) -> Self {
        let mut request = url.into_client_request().unwrap();
        let headers = request.headers_mut();
        if let Some(origin) = origin {
            headers.insert("Origin", origin.parse().unwrap());
        }
        if let Some(cookie) = cookie {
            headers.insert("Cookie", cookie.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut client = Self::new(ws);
        client.page = page;
        client.read_frame().await;
        client
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

    /// Reads frames until the page shows what `done` looks for; past [`PATIENCE`], fails
    /// naming `what` and the page as it was.
    pub async fn until(&mut self, what: &str, done: impl Fn(&PageModel) -> bool) {
        self.until_within(PATIENCE, what, done).await;
    }

    /// [`Self::until`], for when the server may rightly take longer than [`PATIENCE`].
    pub async fn until_within(
        &mut self,
        patience: Duration,
        what: &str,
        done: impl Fn(&PageModel) -> bool,
    ) {
        let deadline = Deadline::after(patience, what);
        while !done(&self.page) {
            // Frames that keep coming do not stretch the wait.
            if deadline.passed() || deadline.run(self.read_frame()).await.is_none() {
                deadline.fail(&self.page);
            }
        }
    }

    /// Reads frames until at least `n` messages are shown.
    pub async fn wait_for_shown(&mut self, n: usize) -> &[ShownMessage] {
        self.until(&format!("{n} messages shown"), |page| page.shown.len() >= n)
            .await;
        &self.shown
    }

    /// Reads frames until a notice arrives.
    pub async fn wait_for_notice(&mut self) -> String {
        self.notice = None;
        self.until("a notice", |page| page.notice.is_some()).await;
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

impl TestApp {
    /// The socket of the default room, as the root page links it.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A request for [`Self::ws_url`], with an `Origin` when given (a browser always sends
    /// one).
    pub fn ws_request(&self, origin: Option<&str>) -> tungstenite::handshake::client::Request {
        let mut request = self.ws_url().into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().unwrap());
        }
        request
    }

    /// Connects as a same-origin browser page would and reads the history frame.
    pub async fn connect(&self) -> TestClient {
        let mut client = self.connect_raw().await;
        client.read_frame().await;
        client
    }

    /// Connects without reading anything.
    pub async fn connect_raw(&self) -> TestClient {
        let request = self.ws_request(Some(&self.url("")));
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        TestClient::new(ws)
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
        let url = format!("ws://{}/rooms/{room}/ws", self.addr);
        TestClient::open(&url, Some(&self.url("")), cookie, page).await
    }
}

impl ChildServer {
    /// Connects to the default room's socket (sending no `Origin`, as a script would) and
    /// reads the history frame.
    pub async fn connect(&self) -> TestClient {
        TestClient::open(&self.ws_url(), None, None, PageModel::default()).await
    }

    /// Connects to a room's socket as a page with `cookie` would.
    pub async fn connect_to(&self, room: &str, cookie: &str) -> TestClient {
        let url = format!(
            "{}/rooms/{room}/ws",
            self.url.replacen("http://", "ws://", 1)
        );
        TestClient::open(&url, Some(&self.url), Some(cookie), PageModel::default()).await
    }
}
