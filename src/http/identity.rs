//! Who is talking: a guest name kept in a cookie until real names arrive.

use axum::http::HeaderValue;
use axum::http::header::{COOKIE, HeaderMap};

use crate::domain::GuestName;

const COOKIE_NAME: &str = "hubbub_guest";

/// The guest name in the request's cookie, if there is a valid one.
pub(crate) fn guest_from(headers: &HeaderMap) -> Option<GuestName> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .and_then(|(_, value)| GuestName::parse(value.trim()))
}

/// The `Set-Cookie` value that keeps `name` for a year.
pub(crate) fn set_cookie(name: &GuestName) -> HeaderValue {
    let cookie = format!("{COOKIE_NAME}={name}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax");
    // A guest name is `guest-` and four hex digits: always a valid header value.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_among_others_and_ignores_junk() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=b; hubbub_guest=guest-1a2b; c=d"),
        );
        assert_eq!(guest_from(&headers).unwrap().as_str(), "guest-1a2b");

        headers.insert(COOKIE, HeaderValue::from_static("hubbub_guest=<script>"));
        assert_eq!(guest_from(&headers), None);
        assert_eq!(guest_from(&HeaderMap::new()), None);
    }
}
