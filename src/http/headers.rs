//! Security headers on every response.
//!
//! The page needs nothing but its own origin: scripts, styles and the WebSocket are all
//! served by hubbub (htmx is embedded, never fetched from a CDN), no template carries
//! inline script or style, and htmx's `hx-vals` is plain JSON, so the policy can forbid
//! inline code and `eval` outright. Should anything user-supplied ever slip past the
//! escaping, the browser still refuses to run it. The browser tests run under this policy.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

/// Only our own origin, for everything; no plugins, no `<base>`, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers, in the order they are added.
const HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
    // For browsers that predate `frame-ancestors`.
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
];

/// Adds the security headers to a response (an axum `map_response` layer).
pub async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
