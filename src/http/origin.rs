//! Same-origin WebSocket upgrades and form posts.
//!
//! Browsers send cookies with cross-site WebSocket handshakes, so without this check any
//! page on the web could open a socket as the user (cross-site WebSocket hijacking). An
//! upgrade is allowed when its `Origin` names the host it was sent to, or one of the
//! `--allowed-origin`s. A request without `Origin` does not come from a browser page and
//! cannot carry a victim's cookies this way; it is allowed (load tools, scripts).

use axum::http::header::{HOST, ORIGIN, REFERER};
use axum::http::{HeaderMap, HeaderValue};

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

/// Whether a state-changing request (every `POST`) may proceed: the same rule, applied to
/// its `Origin`, or, when a browser sent none, to the origin of its `Referer`. A
/// cross-site form post is refused however it is made. A request with neither header
/// comes from no browser page (browsers send `Origin` with every cross-site `POST`) and
/// carries nobody's cookies by accident; it is allowed, as for upgrades.
pub(crate) fn check_post(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    if headers.contains_key(ORIGIN) {
        return check(headers, allowed);
    }
    let Some(referer) = headers.get(REFERER) else {
        return Ok(());
    };
    let Some(origin) = referer.to_str().ok().and_then(origin_of) else {
        return Err(String::from_utf8_lossy(referer.as_bytes()).into_owned());
    };
    let mut with_origin = HeaderMap::with_capacity(2);
    if let Some(host) = headers.get(HOST) {
        with_origin.insert(HOST, host.clone());
    }
    let origin = HeaderValue::from_str(origin).map_err(|_| origin.to_owned())?;
    with_origin.insert(ORIGIN, origin);
    check(&with_origin, allowed)
}

/// The layer every request passes: a `POST` (or any method but `GET`, `HEAD` and
/// `OPTIONS`) from another site is refused with 403 before its handler runs, so no
/// handler can forget the check.
pub(crate) async fn same_origin_posts(
    axum::extract::State(allowed): axum::extract::State<std::sync::Arc<crate::config::Config>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && let Err(origin) = check_post(request.headers(), &allowed.allowed_origins) {
        tracing::debug!(%origin, path = request.uri().path(), "refused a cross-site request");
        return super::HttpError::ForeignOrigin { origin }.into_response();
    }
    next.run(request).await
}

/// The `scheme://authority` a URL starts with.
fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let rest = &url[scheme_end + 3..];
    let authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (authority > 0).then(|| &url[..scheme_end + 3 + authority])
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

    #[test]
    fn posts_are_checked_by_origin_or_else_referer() {
        let with = |pairs: &[(axum::http::HeaderName, &'static str)]| {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, HeaderValue::from_static("chat.example"));
            for (name, value) in pairs {
                headers.insert(name.clone(), HeaderValue::from_static(value));
            }
            check_post(&headers, &[])
        };
        assert!(with(&[(ORIGIN, "https://chat.example")]).is_ok());
        assert!(with(&[(ORIGIN, "https://evil.example")]).is_err());
        // Origin decides when present, whatever Referer says.
        assert!(
            with(&[
                (ORIGIN, "https://evil.example"),
                (REFERER, "https://chat.example/")
            ])
            .is_err()
        );
        assert!(with(&[(REFERER, "https://chat.example/rooms/x?around=3")]).is_ok());
        assert!(with(&[(REFERER, "http://chat.example")]).is_ok());
        assert!(with(&[(REFERER, "https://evil.example/chat.example/")]).is_err());
        assert!(with(&[(REFERER, "https://chat.example.evil.example/")]).is_err());
        assert!(with(&[(REFERER, "not a url")]).is_err());
        assert!(with(&[(REFERER, "https:///nohost")]).is_err());
        assert!(with(&[]).is_ok(), "no browser page: allowed");
    }
}
