//! Same-origin WebSocket upgrades.
//!
//! Browsers send cookies with cross-site WebSocket handshakes, so without this check any
//! page on the web could open a socket as the user (cross-site WebSocket hijacking). An
//! upgrade is allowed when its `Origin` names the host it was sent to, or one of the
//! `--allowed-origin`s. A request without `Origin` does not come from a browser page and
//! cannot carry a victim's cookies this way; it is allowed (load tools, scripts).

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

use crate::config::normalize_origin;

/// Whether an upgrade request may proceed; `Err` carries the refused origin.
pub(crate) fn check(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(not text)");
    let refused = || Err(origin.to_owned());
    let Some(normalized) = normalize_origin(origin) else {
        return refused();
    };
    if allowed
        .iter()
        .filter_map(|a| normalize_origin(a))
        .any(|a| a == normalized)
    {
        return Ok(());
    }
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return refused();
    };
    let same_host = ["http", "https"].iter().any(|scheme| {
        normalize_origin(&format!("{scheme}://{host}")).as_deref() == Some(normalized.as_str())
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
