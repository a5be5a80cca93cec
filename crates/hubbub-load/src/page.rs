//! From the URL given to what to connect to: the page's own WebSocket URL (its
//! `hx-ws:connect` or `ws-connect` attribute), the Origin to send, the address.

use std::net::SocketAddr;
use std::time::Duration;

use crate::LoadError;

/// Where one room's clients connect on one node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) ws_url: String,
    pub(crate) origin: String,
    pub(crate) addr: SocketAddr,
    /// Spread clients over source addresses 127.0.x.y (loopback targets only).
    pub(crate) spread: bool,
}

impl Node {
    /// The node at `url` (a page or WebSocket URL), for `room`'s page when given.
    pub(crate) async fn find(
        url: &str,
        room: Option<&str>,
        no_spread: bool,
    ) -> Result<Self, LoadError> {
        let (ws_url, origin) = resolve(url, room).await?;
        let addr = socket_addr(&ws_url).await?;
        let spread = !no_spread && addr.ip().is_loopback() && addr.is_ipv4();
        Ok(Self {
            ws_url,
            origin,
            addr,
            spread,
        })
    }
}

/// The WebSocket URL and the Origin to send, from a page or WebSocket URL.
async fn resolve(url: &str, room: Option<&str>) -> Result<(String, String), LoadError> {
    let url = url.trim_end_matches('/').to_owned();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| LoadError::BadUrl(url.clone()))?;
    let authority = rest.split('/').next().unwrap_or_default().to_owned();
    let path = rest.strip_prefix(authority.as_str()).unwrap_or_default();
    let origin_scheme = match scheme {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return Err(LoadError::BadUrl(url.clone())),
    };
    let origin = format!("{origin_scheme}://{authority}");
    if matches!(scheme, "ws" | "wss") {
        return Ok((url.clone(), origin));
    }
    let page_path = match room {
        Some(room) => format!("/rooms/{room}"),
        None if path.is_empty() => "/".to_owned(),
        None => path.to_owned(),
    };
    let page_url = format!("{origin}{page_path}");
    let html = fetch(&page_url).await.map_err(|reason| LoadError::Page {
        url: page_url.clone(),
        reason,
    })?;
    let socket_path = ["hx-ws:connect=\"", "ws-connect=\""]
        .iter()
        .find_map(|attr| {
            html.split_once(attr)
                .and_then(|(_, rest)| rest.split('"').next())
        })
        .ok_or_else(|| LoadError::NoSocket(page_url.clone()))?
        .to_owned();
    let ws_scheme = if origin_scheme == "https" {
        "wss"
    } else {
        "ws"
    };
    let ws_url = if socket_path.starts_with("ws://") || socket_path.starts_with("wss://") {
        socket_path
    } else {
        format!("{ws_scheme}://{authority}{socket_path}")
    };
    Ok((ws_url, origin))
}

async fn fetch(url: &str) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn socket_addr(ws_url: &str) -> Result<SocketAddr, LoadError> {
    let authority = ws_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .ok_or_else(|| LoadError::BadUrl(ws_url.to_owned()))?;
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    tokio::net::lookup_host(with_port)
        .await
        .ok()
        .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
        .ok_or_else(|| LoadError::BadUrl(ws_url.to_owned()))
}
