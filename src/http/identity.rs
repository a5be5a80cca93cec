//! Who is talking: a user id and a display name, from a session or a guest cookie.
//!
//! A first visit gets a random user id and a guest name in a signed cookie; renaming
//! (`POST /name`) rewrites it. Cookies are signed with the server's key (`--cookie-secret`,
//! or a random key kept in the store), so nobody can post under someone else's id or name
//! by editing one.
//!
//! Someone who claimed their name (`super::account`) carries a session token instead, and
//! is whoever the store says that session belongs to. A guest cookie never speaks for an
//! account: one whose user id has claimed a name since, or whose name someone has claimed
//! (or a look-alike of it), is replaced by a fresh guest ([`visitor`]).

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
use super::{AppState, HttpError};
use crate::accounts::AccountError;
use crate::config::{Config, Guests};
use crate::domain::{Account, DisplayName, SessionToken, UserId, hex};
use crate::render;

const COOKIE_NAME: &str = "hubbub_id";
/// The signed-in browser's cookie: its session token.
const SESSION_COOKIE: &str = "hubbub_session";

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

/// Whoever a request comes from, as far as the server trusts it.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub identity: Identity,
    /// The account and session token of a signed-in browser; `None` for a guest.
    pub account: Option<(Account, SessionToken)>,
    /// Whether the guest cookie must be (re)written: a first visit, or one the server
    /// replaced.
    pub new_cookie: bool,
    /// Whether the browser carries a session cookie that no longer signs anyone in
    /// (signed out elsewhere, expired): it is removed.
    pub stale_session: bool,
}

impl Visitor {
    pub fn signed_in(&self) -> bool {
        self.account.is_some()
    }

    /// The cookies this visitor's response must set or remove.
    pub fn cookies(&self, jar: SignedCookieJar, secure: bool) -> SignedCookieJar {
        let jar = if self.new_cookie {
            jar.add(self.identity.cookie(secure))
        } else {
            jar
        };
        if self.stale_session {
            jar.remove(session_cookie_removal())
        } else {
            jar
        }
    }
}

/// Who sent a request: the account of a live session, else the guest of a guest cookie
/// the accounts do not contradict, else a new guest. Costs no store read for a request
/// with no cookie (a load tool, a first visit), one for a session, two for a guest cookie.
pub async fn visitor(state: &AppState, jar: &SignedCookieJar) -> Result<Visitor, HttpError> {
    let unavailable = |err: crate::store::StoreError| {
        tracing::error!(error = %err, "reading who a visitor is failed");
        HttpError::StoreUnavailable
    };
    let mut stale_session = false;
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        if let Some(token) = SessionToken::parse(cookie.value())
            && let Some(account) = state
                .accounts
                .signed_in(&token)
                .await
                .map_err(unavailable)?
        {
            return Ok(Visitor {
                identity: Identity {
                    user: account.id.clone(),
                    name: account.name.clone(),
                },
                account: Some((account, token)),
                new_cookie: false,
                stale_session: false,
            });
        }
        stale_session = true;
    }
    let guest = |identity, new_cookie| Visitor {
        identity,
        account: None,
        new_cookie,
        stale_session,
    };
    let Some(mut identity) = Identity::from_jar(jar) else {
        return Ok(guest(Identity::new_guest(), true));
    };
    // The user id has claimed a name: only a session speaks for it now.
    if state
        .accounts
        .account(&identity.user)
        .await
        .map_err(unavailable)?
        .is_some()
    {
        return Ok(guest(Identity::new_guest(), true));
    }
    // Someone claimed this guest's name: the guest gets another.
    if state
        .accounts
        .holder(&identity.name)
        .await
        .map_err(unavailable)?
        .is_some()
    {
        identity.name = DisplayName::guest();
        return Ok(guest(identity, true));
    }
    Ok(guest(identity, false))
}

/// What guests may reach under `--guests off`: signing in and up, the assets those pages
/// need, and the operator's endpoints.
fn open_to_guests(path: &str) -> bool {
    matches!(
        path,
        "/login" | "/signup" | "/healthz" | "/readyz" | "/metrics"
    ) || path.starts_with("/assets/")
}

/// Under `--guests off`, everything else needs a signed-in visitor: a page asked for by a
/// guest redirects to the sign-in page (and back after), anything else is 401. Under the
/// other settings this costs nothing (no store read).
pub(super) async fn members_only(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if state.config.guests != Guests::Off || open_to_guests(path) {
        return next.run(request).await;
    }
    let jar = SignedCookieJar::from_headers(request.headers(), state.cookie_key.clone());
    match visitor(&state, &jar).await {
        Ok(visitor) if visitor.signed_in() => next.run(request).await,
        Ok(_) => {
            let page = request.method() == axum::http::Method::GET
                && (path == "/" || path.starts_with("/rooms/"))
                && !path.ends_with("/ws")
                && !path.ends_with("/history")
                && !path.ends_with("/source");
            if page {
                let here = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |target| target.as_str());
                let next = crate::render::query_param(here);
                axum::response::Redirect::to(&format!("/login?next={next}")).into_response()
            } else {
                HttpError::SignInRequired.into_response()
            }
        }
        Err(err) => err.into_response(),
    }
}

/// The cookie that carries a session token, for as long as the session lasts.
pub fn session_cookie(token: &SessionToken, secure: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token.to_string()))
        .path("/")
        .max_age(crate::store::SESSION_LIFE)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// What removes the session cookie (the path must match the one it was set with).
pub fn session_cookie_removal() -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, "")).path("/").build()
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
    if let Some(refused) = changes_limited(&state, peer, &headers, |seconds| {
        format!("Not renamed: too many renames from your address; try again in {seconds} s.")
    }) {
        return Ok(refused);
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
    let visitor = visitor(&state, &jar).await?;
    if state.hub.is_banned(&visitor.identity.user) {
        return Ok(notice(
            StatusCode::FORBIDDEN,
            "Not renamed: you have been banned from posting here.",
        ));
    }
    let secure = secure_cookies(&state.config, &headers);
    if let Some((account, _)) = &visitor.account {
        return match state.accounts.rename(&account.id, &name).await {
            Ok(()) => {
                state.hub.rename(&account.id, &name);
                Ok((
                    visitor.cookies(jar, secure),
                    notice(StatusCode::OK, &format!("You are now {name}.")),
                )
                    .into_response())
            }
            Err(AccountError::NameTaken(_)) => Ok(notice(
                StatusCode::CONFLICT,
                &format!("Not renamed: {name} is someone else's name (or looks like it)."),
            )),
            Err(err) => {
                tracing::error!(error = %err, "renaming an account failed");
                Err(HttpError::StoreUnavailable)
            }
        };
    }
    if state.config.guests != Guests::Allow {
        return Ok(notice(
            StatusCode::FORBIDDEN,
            "Not renamed: sign in to choose a name.",
        ));
    }
    let holder = state.accounts.holder(&name).await.map_err(|err| {
        tracing::error!(error = %err, "reading who holds a name failed");
        HttpError::StoreUnavailable
    })?;
    if holder.is_some() {
        return Ok(notice(
            StatusCode::CONFLICT,
            &format!(
                "Not renamed: {name} is a claimed name (or looks like one). If it is yours, sign in."
            ),
        ));
    }
    let identity = Identity {
        user: visitor.identity.user.clone(),
        name,
    };
    state.hub.rename(&identity.user, &identity.name);
    let jar = visitor.cookies(jar, secure).add(identity.cookie(secure));
    Ok((
        jar,
        notice(StatusCode::OK, &format!("You are now {}.", identity.name)),
    )
        .into_response())
}

/// Counts one change (a rename, a setting) against the client address's allowance
/// (`--renames-per-minute`); the 429 notice, saying `refusal(seconds)`, when it is spent.
pub(super) fn changes_limited(
    state: &AppState,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
    refusal: impl FnOnce(u64) -> String,
) -> Option<Response> {
    let client = ClientAddr::of_request(
        peer.map(|Extension(Peer(peer))| peer),
        headers,
        state.config.trust_proxy,
    );
    if client.exempt {
        return None;
    }
    let wait = state.address_limits.allow_rename(client.ip).err()?;
    // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = notice(StatusCode::TOO_MANY_REQUESTS, &refusal(seconds));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    Some(response)
}

pub(super) fn notice(status: StatusCode, text: &str) -> Response {
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
