//! Who is talking: a user id and a display name, kept in a signed cookie.
//!
//! There is no sign-up. A first visit gets a random user id and a guest name; renaming
//! (`POST /name`) rewrites the cookie. The cookie is signed with the server's key
//! (`--cookie-secret`, or a random key kept in the store), so nobody can post under
//! someone else's id or name by editing it.

use axum::Extension;
use axum::Form;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::{Cookie, Key, SameSite};
use serde::Deserialize;
use time::Duration;

use super::client::{ClientAddr, Peer};
use super::{AppState, HttpError, origin};
use crate::config::Config;
use crate::domain::{DisplayName, UserId, hex};
use crate::render;

const COOKIE_NAME: &str = "hubbub_id";

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Self {
        state.cookie_key.clone()
    }
}

/// A user as their cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub name: DisplayName,
}

impl Identity {
    /// A new visitor: a fresh id and a guest name.
    pub fn new_guest() -> Self {
        Self {
            user: UserId::generate(),
            name: DisplayName::guest(),
        }
    }

    /// The identity in a verified cookie, if there is one.
    pub fn from_jar(jar: &SignedCookieJar) -> Option<Self> {
        let cookie = jar.get(COOKIE_NAME)?;
        let (user, name) = cookie.value().split_once('.')?;
        let name = String::from_utf8(decode_hex(name)?).ok()?;
        Some(Self {
            user: UserId::parse(user)?,
            name: DisplayName::parse(&name).ok()?,
        })
    }

    /// The cookie that keeps this identity for a year. The name is hex-encoded so that any
    /// name fits in a cookie value. A `secure` cookie is only ever sent over HTTPS.
    pub fn cookie(&self, secure: bool) -> Cookie<'static> {
        let value = format!("{}.{}", self.user, hex(self.name.as_str().as_bytes()));
        Cookie::build((COOKIE_NAME, value))
            .path("/")
            .max_age(Duration::days(365))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(secure)
            .build()
    }
}

/// Whether cookies set in answer to this request are `Secure`: always with
/// `--secure-cookies`, and when a trusted proxy says the client came over HTTPS
/// (`X-Forwarded-Proto: https`; the last value, the one the proxy itself set). hubbub does
/// not terminate TLS itself, so without a proxy there is no HTTPS to detect.
pub fn secure_cookies(config: &Config, headers: &HeaderMap) -> bool {
    config.secure_cookies
        || (config.trust_proxy
            && headers
                .get_all("x-forwarded-proto")
                .iter()
                .next_back()
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.rsplit(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")))
}

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/name", post(rename))
}

#[derive(Deserialize)]
struct RenameForm {
    name: String,
}

/// `POST /name`: takes a new display name. Answers with fragments htmx swaps out of band:
/// a notice, and (on success) the new cookie.
async fn rename(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    form: Result<Form<RenameForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, HttpError> {
    origin::check(&headers, &state.config.allowed_origins)
        .map_err(|origin| HttpError::ForeignOrigin { origin })?;
    let client = ClientAddr::of_request(
        peer.map(|Extension(Peer(peer))| peer),
        &headers,
        state.config.trust_proxy,
    );
    if !client.exempt
        && let Err(wait) = state.address_limits.allow_rename(client.ip)
    {
        // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = notice(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Not renamed: too many renames from your address; try again in {seconds} s."),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Ok(response);
    }
    let Ok(Form(form)) = form else {
        return Ok(notice(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not renamed: expected a form with a name field.",
        ));
    };
    let name = match DisplayName::parse(&form.name) {
        Ok(name) => name,
        Err(err) => {
            return Ok(notice(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Not renamed: {err}"),
            ));
        }
    };
    let user = Identity::from_jar(&jar).map_or_else(UserId::generate, |identity| identity.user);
    let identity = Identity { user, name };
    state.hub.rename(&identity.user, &identity.name);
    let jar = jar.add(identity.cookie(secure_cookies(&state.config, &headers)));
    Ok((
        jar,
        notice(StatusCode::OK, &format!("You are now {}.", identity.name)),
    )
        .into_response())
}

fn notice(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "text/html; charset=utf-8")],
        render::notice(text).as_str().to_owned(),
    )
        .into_response()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_a_signed_cookie() {
        let key = Key::generate();
        let identity = Identity {
            user: UserId::generate(),
            name: DisplayName::parse("Zoë; the \"admin\" <b>").unwrap(),
        };
        let jar = SignedCookieJar::new(key.clone()).add(identity.cookie(false));
        let response = (jar, ()).into_response();
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
        assert!(!set_cookie.contains("Secure"), "{set_cookie}");

        let read = |pair: &str, key: Key| {
            let mut headers = HeaderMap::new();
            headers.insert("cookie", pair.parse().unwrap());
            Identity::from_jar(&SignedCookieJar::from_headers(&headers, key))
        };
        assert_eq!(read(&pair, key.clone()), Some(identity.clone()));
        // Another key, or a value edited by hand, is no identity at all.
        assert_eq!(read(&pair, Key::generate()), None);
        let forged = format!("{}.{}", &pair[..pair.rfind('.').unwrap()], hex(b"admin"));
        assert_eq!(read(&forged, key), None);
    }

    #[test]
    fn hex_round_trips_and_junk_is_refused() {
        assert_eq!(
            decode_hex(&hex("héllo".as_bytes())).unwrap(),
            "héllo".as_bytes()
        );
        for junk in ["0", "zz", "0g"] {
            assert_eq!(decode_hex(junk), None);
        }
    }
}
