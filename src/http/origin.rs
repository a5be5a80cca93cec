//! Same-origin WebSocket upgrades.
//!
//! Browsers send cookies with cross-site WebSocket handshakes, so without this check any
//! page on the web could open a socket as the user (cross-site WebSocket hijacking). An
//! upgrade is allowed when its `Origin` names the host it was sent to, or one of the
//! `--allowed-origin`s. A request without `Origin` does not come from a browser page and
//! cannot carry a victim's cookies this way; it is allowed (load tools, scripts).

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

/// Lower-cases an origin and drops a default port: `HTTP://Example.com:80` becomes
/// `http://example.com`. `None` if it is not `scheme://host[:port]`.
pub fn normalize(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let authority = authority
        .strip_suffix('/')
        .unwrap_or(authority)
        .to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // Split off the port, minding IPv6 literals such as `[::1]:3000`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port = if after.is_empty() {
                None
            } else {
                Some(after.strip_prefix(':')?)
            };
            (format!("[{inside}]"), port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.clone(), None),
        },
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let authority = match port {
        None => host,
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(port) if port == default_port => host,
        Some(port) => format!("{host}:{port}"),
    };
    Some(format!("{scheme}://{authority}"))
}

/// Whether an upgrade request may proceed; `Err` carries the refused origin.
pub(crate) fn check(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(not text)");
    let refused = || Err(origin.to_owned());
    let Some(normalized) = normalize(origin) else {
        return refused();
    };
    if allowed
        .iter()
        .filter_map(|a| normalize(a))
        .any(|a| a == normalized)
    {
        return Ok(());
    }
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return refused();
    };
    let same_host = ["http", "https"].iter().any(|scheme| {
        normalize(&format!("{scheme}://{host}")).as_deref() == Some(normalized.as_str())
    });
    if same_host { Ok(()) } else { refused() }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static(host));
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_static(origin));
        }
        headers
    }

    #[test]
    fn normalizes_case_and_default_ports() {
        assert_eq!(
            normalize("HTTP://Example.COM:80").as_deref(),
            Some("http://example.com")
        );
        assert_eq!(
            normalize("https://a.example:443/").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            normalize("http://127.0.0.1:3000").as_deref(),
            Some("http://127.0.0.1:3000")
        );
        assert_eq!(
            normalize("http://[::1]:3000").as_deref(),
            Some("http://[::1]:3000")
        );
        for junk in [
            "",
            "null",
            "example.com",
            "ftp://x",
            "http://",
            "http://a/b",
            "http://a:x",
            "http://u@a",
        ] {
            assert_eq!(normalize(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn same_host_is_allowed_and_everything_else_refused() {
        assert!(
            check(
                &headers(Some("http://127.0.0.1:3000"), "127.0.0.1:3000"),
                &[]
            )
            .is_ok()
        );
        assert!(check(&headers(Some("https://chat.example"), "chat.example"), &[]).is_ok());
        assert!(check(&headers(None, "chat.example"), &[]).is_ok());
        assert!(check(&headers(Some("http://evil.example"), "chat.example"), &[]).is_err());
        assert!(
            check(
                &headers(Some("http://127.0.0.1:3001"), "127.0.0.1:3000"),
                &[]
            )
            .is_err()
        );
        assert!(check(&headers(Some("null"), "chat.example"), &[]).is_err());
        let allowed = ["http://localhost:5173".to_owned()];
        assert!(
            check(
                &headers(Some("http://LOCALHOST:5173"), "127.0.0.1:3000"),
                &allowed
            )
            .is_ok()
        );
    }
}
