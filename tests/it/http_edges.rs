//! The HTTP surface: the page, assets, health, errors, and the origin check on upgrade.

use tokio_tungstenite::tungstenite;

use crate::support::app::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_page_links_the_socket_and_embedded_assets() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status, 200);
    let html = &page.body;
    assert!(
        html.contains(r#"hx-ws:connect="/rooms/general/ws""#),
        "{html}"
    );
    assert!(html.contains("hx-ws:send") && html.contains(r#"name="text""#));
    assert!(html.contains(r#"role="log""#) && html.contains(r#"aria-live="polite""#));
    assert!(html.contains(r#"maxlength="2000""#));
    assert!(
        !html.contains("unpkg") && !html.contains("cdn"),
        "no third-party hosts"
    );

    // Every asset the page links is served with a long cache lifetime.
    let assets: Vec<&str> = html
        .split("\"/assets/")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(
        assets.len(),
        5,
        "htmx, hx-ws, app.css, app.js, reads.js: {assets:?}"
    );
    for asset in assets {
        let response = app.get(&format!("/assets/{asset}")).await;
        assert_eq!(response.status, 200, "{asset}");
        assert!(
            response.headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(!response.body.is_empty());
        let content_type = response.headers["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(if asset.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        }));
    }
}

#[tokio::test]
async fn the_embedded_htmx_is_the_pinned_release() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    let url = page.body.split("\"/assets/htmx.").nth(1).unwrap();
    let url = format!("/assets/htmx.{}", &url[..url.find('"').unwrap()]);
    let js = app.get(&url).await.body;
    assert!(js.contains("4.0.1"), "htmx 4.0.1 is embedded");
}

#[tokio::test]
async fn unknown_paths_and_stale_assets_are_404_pages() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/assets/htmx.0000000000000000.js",
        "/assets/../Cargo.toml",
        "/ws/extra",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status, 404, "{path}");
        assert!(
            response.body.contains("There is nothing at this address"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = spawn_app().await;
    for path in ["/", "/ws", "/healthz"] {
        let response = app.request("POST", path).await;
        assert_eq!(response.status, 405, "{path}");
        let allow = response.headers["allow"].to_str().unwrap();
        assert!(allow.contains("GET"), "{path}: {allow}");
    }
}

#[tokio::test]
async fn healthz_is_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!((response.status, response.body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn a_plain_get_on_the_socket_explains_itself() {
    let app = spawn_app().await;
    let response = app.get("/ws").await;
    assert_eq!(response.status, 426);
    assert!(
        response.body.contains("speaks WebSocket"),
        "{}",
        response.body
    );
}

#[tokio::test]
async fn a_broken_handshake_is_refused_with_426_and_the_version_we_speak() {
    let app = spawn_app().await;
    let good = [
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let broken = |name: &str, value: &str| {
        good.iter()
            .map(|&(n, v)| {
                if n == name {
                    (n, value.to_owned())
                } else {
                    (n, v.to_owned())
                }
            })
            .collect::<Vec<_>>()
    };
    for (name, value) in [
        ("Sec-WebSocket-Version", "8"),
        ("Sec-WebSocket-Key", "short"),
        ("Sec-WebSocket-Key", ""),
        ("Upgrade", "h2c"),
        ("Connection", "keep-alive"),
    ] {
        let headers = broken(name, value);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = app.request_with("GET", "/ws", &headers).await;
        assert_eq!(response.status, 426, "{name}: {value}");
        assert_eq!(response.headers["sec-websocket-version"], "13", "{name}");
    }
}

#[tokio::test]
async fn a_cross_origin_upgrade_is_refused_with_403() {
    let app = spawn_app().await;
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1:1",
        "https://127.0.0.1.evil.example",
    ] {
        let request = app.ws_request(Some(origin));
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin}");
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned();
                assert!(body.contains("--allowed-origin"), "{body}");
            }
            other => panic!("{origin}: expected 403, got {other:?}"),
        }
    }
    assert_eq!(app.hub.stats().connected, 0);

    // The same host is fine, and so is a client that sends no Origin (not a browser).
    app.connect().await;
    let (_ws, _) = tokio_tungstenite::connect_async(app.ws_request(None))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_allowed_origin_may_connect() {
    let app =
        spawn_app_with(|config| config.allowed_origins = vec!["http://localhost:5173".into()])
            .await;
    let request = app.ws_request(Some("http://localhost:5173"));
    tokio_tungstenite::connect_async(request).await.unwrap();
    let request = app.ws_request(Some("http://localhost:5174"));
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    let asset = page
        .body
        .split("\"/assets/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    for (method, path, status) in [
        ("GET", "/".to_owned(), 200),
        ("GET", "/rooms/design".to_owned(), 200),
        ("GET", format!("/assets/{asset}"), 200),
        ("GET", "/healthz".to_owned(), 200),
        ("GET", "/rooms/general/history?before=x".to_owned(), 400),
        ("GET", "/no/such/page".to_owned(), 404),
        ("GET", "/ws".to_owned(), 426),
        ("DELETE", "/".to_owned(), 405),
    ] {
        let response = app.request(method, &path).await;
        assert_eq!(response.status, status, "{method} {path}");
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("{method} {path}: no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "no inline code, no eval: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
    // The page itself has nothing the policy would block.
    assert!(!page.body.contains(" style=\"") && !page.body.contains("<style"));
    assert!(!page.body.contains("<script>"), "no inline script");
    // No inline event handler attributes (` onclick="…"` and the like).
    let handler = page.body.match_indices(" on").any(|(at, _)| {
        let rest = &page.body[at + 3..];
        let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    });
    assert!(!handler, "{}", page.body);
}

/// The attributes of the identity cookie a response sets.
fn cookie_attributes(response: &crate::support::http::HttpResponse) -> String {
    response.headers["set-cookie"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_identity_cookie_is_secure_when_configured_or_when_a_trusted_proxy_says_https() {
    // Plain HTTP, no proxy: HttpOnly and SameSite, but not Secure (it would never come back).
    let app = spawn_app().await;
    let (_, page) = app.visit("/").await;
    let cookie = cookie_attributes(&page);
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    // A client cannot ask for it by forging the proxy's header.
    let page = app
        .request_with("GET", "/", &[("X-Forwarded-Proto", "https")])
        .await;
    assert!(!cookie_attributes(&page).contains("Secure"));

    // Behind a trusted proxy that terminated TLS.
    let proxied = spawn_app_with(|config| config.trust_proxy = true).await;
    let page = proxied
        .request_with("GET", "/", &[("X-Forwarded-Proto", "https")])
        .await;
    assert!(
        cookie_attributes(&page).contains("; Secure"),
        "{}",
        cookie_attributes(&page)
    );
    let page = proxied
        .request_with("GET", "/", &[("X-Forwarded-Proto", "http")])
        .await;
    assert!(!cookie_attributes(&page).contains("Secure"));

    // `--secure-cookies`: on the page and on a rename.
    let secure = spawn_app_with(|config| config.secure_cookies = true).await;
    let (pair, page) = secure.visit("/").await;
    assert!(cookie_attributes(&page).contains("; Secure"));
    let renamed = secure.rename(&pair, "over https").await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let cookie = cookie_attributes(&renamed);
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

/// Reads from `stream` until the server closes it; how long that took, or `None` if it
/// stayed open for `patience`.
async fn closed_within(
    stream: &mut tokio::net::TcpStream,
    patience: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|config| config.header_timeout = Duration::from_millis(500)).await;

    // Slow headers: a request line and one header, then nothing.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: hubbub\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut slow, Duration::from_secs(10)).await;
    assert!(
        answer.is_some(),
        "a half-sent request head kept the connection open"
    );
    assert!(!answer.unwrap().contains("200 OK"));

    // Trickled headers, one byte every 100 ms, never finishing in time.
    let mut trickle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: hubbub\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = false;
    for byte in head {
        if trickle.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !cut_off {
        // Every byte was accepted by the kernel; the server must still have closed it
        // without answering.
        let answer = closed_within(&mut trickle, Duration::from_secs(10)).await;
        assert!(
            answer.is_some_and(|a| !a.contains("200 OK")),
            "a trickled request head was served"
        );
    }

    // Nothing at all: a connection opened and left silent is closed too.
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(10))
            .await
            .is_some()
    );

    // A whole request head within the timeout is served, and the keep-alive connection
    // is closed once it has been idle for the timeout.
    let mut prompt = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hubbub\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut prompt, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn the_header_timeout_does_not_touch_open_websockets() {
    use std::time::Duration;
    let app = spawn_app_with(|config| config.header_timeout = Duration::from_millis(300)).await;
    let mut alice = app.connect().await;
    let mut bob = app.connect().await;
    // Well past the header timeout, the upgraded connections are the session's, not
    // hyper's: they stay open and keep chatting. A wait for time itself: what must not
    // happen is a timer firing, and no event marks "well past" it (a silent connection
    // closed by the same timer would mark only the 300 ms).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    alice.say("still connected").await;
    assert_eq!(bob.wait_for_shown(1).await[0].text, "still connected");
}
