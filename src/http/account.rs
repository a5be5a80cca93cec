//! Claiming a name and signing in and out: `/signup`, `/login`, `/logout`,
//! `/logout/everywhere`, `/account` and `/account/password`.
//!
//! Plain HTML forms, answered with a whole page: a form that went wrong comes back with
//! what was typed (never the password) and an alert saying why; one that worked redirects
//! (303) where the user was going. Every `POST` has passed the same-origin check before it
//! gets here (`super::origin::same_origin_posts`), and every attempt that checks a password
//! is counted against the client's address and the
//! name tried ([`crate::limits::AddressLimits::allow_sign_in`]) before any hashing.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use axum_extra::extract::SignedCookieJar;
use serde::Deserialize;

use super::client::{ClientAddr, Peer};
use super::identity::{secure_cookies, session_cookie, session_cookie_removal, visitor};
use super::{AppState, HttpError};
use crate::accounts::AccountError;
use crate::domain::{DisplayName, NameKey, Password, SignOut};
use crate::render::{self, AccountKind, AccountPage};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/signup", get(sign_up_form).post(sign_up))
        .route("/login", get(sign_in_form).post(sign_in))
        .route("/logout", post(sign_out))
        .route("/logout/everywhere", post(sign_out_everywhere))
        .route("/account", get(account_page))
        .route("/account/password", post(change_password))
}

#[derive(Deserialize, Default)]
struct Next {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize, Default)]
struct Credentials {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize, Default)]
struct PasswordChange {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

type FormResult<T> = Result<Form<T>, axum::extract::rejection::FormRejection>;

/// Where to go after signing in: a path on this site, or `/`. Anything that could leave
/// the site (`//host`, `/\host`, a scheme) or is not a plain path goes to `/`.
fn local_path(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic());
    if local { next } else { "/" }
}

async fn sign_up_form(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Query(next): Query<Next>,
) -> Result<Response, HttpError> {
    let visitor = visitor(&state, &jar).await?;
    if visitor.signed_in() {
        return Ok(Redirect::to("/account").into_response());
    }
    let name = visitor.identity.name.as_str();
    page(
        StatusCode::OK,
        AccountKind::SignUp,
        name,
        local_path(&next.next),
        None,
    )
}

async fn sign_in_form(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Query(next): Query<Next>,
) -> Result<Response, HttpError> {
    if visitor(&state, &jar).await?.signed_in() {
        return Ok(Redirect::to("/account").into_response());
    }
    page(
        StatusCode::OK,
        AccountKind::SignIn,
        "",
        local_path(&next.next),
        None,
    )
}

/// `POST /signup`: claims a name for this browser's user and signs it in.
async fn sign_up(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    form: FormResult<Credentials>,
) -> Result<Response, HttpError> {
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let back = local_path(&form.next).to_owned();
    let again =
        |status, error: &str| page(status, AccountKind::SignUp, &form.name, &back, Some(error));
    let name = match DisplayName::parse(&form.name) {
        Ok(name) => name,
        Err(err) => return again(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string()),
    };
    if let Some(refused) = limited(&state, peer, &headers, &NameKey::of(&name)) {
        return Ok(refused);
    }
    let password = match Password::parse(&form.password) {
        Ok(password) => password,
        Err(err) => return again(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string()),
    };
    let visitor = visitor(&state, &jar).await?;
    if visitor.signed_in() {
        return Ok(Redirect::to("/account").into_response());
    }
    let user = &visitor.identity.user;
    match state.accounts.sign_up(user, &name, &password).await {
        Ok((account, token)) => {
            state.hub.rename(&account.id, &account.name);
            let secure = secure_cookies(&state.config, &headers);
            let jar = visitor
                .cookies(jar, secure)
                .add(session_cookie(&token, secure));
            Ok((jar, Redirect::to(&back)).into_response())
        }
        Err(err @ (AccountError::NameTaken(_) | AccountError::AlreadyClaimed)) => {
            again(StatusCode::CONFLICT, &err.to_string())
        }
        Err(err) => failed(&err),
    }
}

/// `POST /login`.
async fn sign_in(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    form: FormResult<Credentials>,
) -> Result<Response, HttpError> {
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let back = local_path(&form.next).to_owned();
    let again =
        |status, error: &str| page(status, AccountKind::SignIn, &form.name, &back, Some(error));
    // A name that cannot be one is counted as itself (cut short), and fails as a wrong
    // name does, after the same work.
    let key = match DisplayName::parse(&form.name) {
        Ok(name) => NameKey::of(&name).as_str().to_owned(),
        Err(_) => form.name.chars().take(DisplayName::MAX_CHARS).collect(),
    };
    if let Some(refused) = limited_key(&state, peer, &headers, &key) {
        return Ok(refused);
    }
    let Ok(password) = Password::parse(&form.password) else {
        // Too short or too long to be anyone's: the same answer as a wrong one.
        return again(
            StatusCode::UNAUTHORIZED,
            &AccountError::BadCredentials.to_string(),
        );
    };
    match state.accounts.sign_in(&form.name, &password).await {
        Ok((account, token)) => {
            tracing::info!(name = %account.name, "signed in");
            let secure = secure_cookies(&state.config, &headers);
            let jar = jar.add(session_cookie(&token, secure));
            Ok((jar, Redirect::to(&back)).into_response())
        }
        Err(AccountError::BadCredentials) => again(
            StatusCode::UNAUTHORIZED,
            &AccountError::BadCredentials.to_string(),
        ),
        Err(err) => failed(&err),
    }
}

/// `POST /logout`: ends this browser's session.
async fn sign_out(
    State(state): State<AppState>,
    jar: SignedCookieJar,
) -> Result<Response, HttpError> {
    let visitor = visitor(&state, &jar).await?;
    if let Some((account, token)) = &visitor.account {
        state.accounts.sign_out(token).await.map_err(|err| {
            tracing::error!(error = %err, "signing out failed");
            HttpError::StoreUnavailable
        })?;
        // This browser's other tabs, on every node, stop posting as the account.
        state.hub.sign_out(SignOut::One {
            user: account.id.clone(),
            tag: token.tag(),
        });
    }
    Ok((jar.remove(session_cookie_removal()), Redirect::to("/")).into_response())
}

/// `POST /logout/everywhere`: ends every session of this browser's account.
async fn sign_out_everywhere(
    State(state): State<AppState>,
    jar: SignedCookieJar,
) -> Result<Response, HttpError> {
    let visitor = visitor(&state, &jar).await?;
    if let Some((account, _)) = &visitor.account {
        let ended = state
            .accounts
            .sign_out_everywhere(&account.id)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "signing out everywhere failed");
                HttpError::StoreUnavailable
            })?;
        let closed = state.hub.sign_out(SignOut::All {
            user: account.id.clone(),
            keep: None,
        });
        tracing::info!(name = %account.name, ended, closed, "signed out everywhere");
    }
    Ok((jar.remove(session_cookie_removal()), Redirect::to("/")).into_response())
}

async fn account_page(
    State(state): State<AppState>,
    jar: SignedCookieJar,
) -> Result<Response, HttpError> {
    let visitor = visitor(&state, &jar).await?;
    let Some((account, _)) = &visitor.account else {
        return Ok(Redirect::to("/login?next=/account").into_response());
    };
    signed_in_page(StatusCode::OK, account, None, None)
}

/// `POST /account/password`: a new password for the signed-in account; every other session
/// of the account ends.
async fn change_password(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    form: FormResult<PasswordChange>,
) -> Result<Response, HttpError> {
    let visitor = visitor(&state, &jar).await?;
    let Some((account, token)) = &visitor.account else {
        return Ok(Redirect::to("/login?next=/account").into_response());
    };
    if let Some(refused) = limited(&state, peer, &headers, &NameKey::of(&account.name)) {
        return Ok(refused);
    }
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let again = |status, error: &str| signed_in_page(status, account, Some(error), None);
    let Ok(current) = Password::parse(&form.current) else {
        return again(
            StatusCode::UNAUTHORIZED,
            &AccountError::WrongPassword.to_string(),
        );
    };
    let new = match Password::parse(&form.new) {
        Ok(new) => new,
        Err(err) => return again(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string()),
    };
    match state
        .accounts
        .change_password(account, token, &current, &new)
        .await
    {
        Ok(ended) => {
            // The sockets of the sessions it ended close, on every node.
            state.hub.sign_out(SignOut::All {
                user: account.id.clone(),
                keep: Some(token.tag()),
            });
            let done = match ended {
                0 => "Password changed.".to_owned(),
                1 => "Password changed; 1 other session was signed out.".to_owned(),
                n => format!("Password changed; {n} other sessions were signed out."),
            };
            signed_in_page(StatusCode::OK, account, None, Some(&done))
        }
        Err(AccountError::WrongPassword) => again(
            StatusCode::UNAUTHORIZED,
            &AccountError::WrongPassword.to_string(),
        ),
        Err(err) => failed(&err),
    }
}

/// Counts one password attempt for `key` from the request's client; the 429 answer when
/// either allowance is spent.
fn limited(
    state: &AppState,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
    key: &NameKey,
) -> Option<Response> {
    limited_key(state, peer, headers, key.as_str())
}

fn limited_key(
    state: &AppState,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
    key: &str,
) -> Option<Response> {
    let client = ClientAddr::of_request(
        peer.map(|Extension(Peer(peer))| peer),
        headers,
        state.config.trust_proxy,
    );
    let ip = (!client.exempt).then_some(client.ip);
    let wait = state.address_limits.allow_sign_in(ip, key).err()?;
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let message = format!("Too many sign-in attempts; try again in {seconds} s.");
    let mut response = HttpError::BadRequest(message).into_response();
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    Some(response)
}

/// An account error that is not the user's: logged, answered 503.
fn failed(err: &AccountError) -> Result<Response, HttpError> {
    tracing::error!(error = %err, "an account action failed");
    Err(HttpError::StoreUnavailable)
}

fn page(
    status: StatusCode,
    kind: AccountKind,
    name: &str,
    back: &str,
    error: Option<&str>,
) -> Result<Response, HttpError> {
    let html = render::account_page(&AccountPage {
        assets: super::assets::urls(),
        kind,
        name,
        moderator: false,
        back,
        error,
        done: None,
    })
    .map_err(|err| HttpError::Internal(err.to_string()))?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

fn signed_in_page(
    status: StatusCode,
    account: &crate::domain::Account,
    error: Option<&str>,
    done: Option<&str>,
) -> Result<Response, HttpError> {
    let html = render::account_page(&AccountPage {
        assets: super::assets::urls(),
        kind: AccountKind::Account,
        name: account.name.as_str(),
        moderator: account.moderator,
        back: "/",
        error,
        done,
    })
    .map_err(|err| HttpError::Internal(err.to_string()))?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for good in ["/", "/rooms/x", "/rooms/x?around=3", "/account"] {
            assert_eq!(local_path(good), good);
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "rooms/x",
            "/a b",
            "/\u{7f}",
            "/é",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }
}
