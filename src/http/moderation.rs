//! The moderators' page (`/moderation`): ban a name, list the bans, lift one. Only a
//! signed-in moderator gets past [`moderator`]; everyone else is told so (403). A ban is
//! stored, applied on this node at once (the user's sessions close with 1008, and their
//! writes are refused), and reaches the other nodes with their next re-read of the store
//! (`hub::BAN_REFRESH`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::SignedCookieJar;
use serde::Deserialize;
use time::OffsetDateTime;

use super::identity::visitor;
use super::{AppState, HttpError};
use crate::domain::{Account, Ban, DisplayName, UserId};
use crate::render;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/moderation", get(page))
        .route("/moderation/ban", post(ban))
        .route("/moderation/unban", post(unban))
}

#[derive(Deserialize, Default)]
struct BanForm {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct UnbanForm {
    #[serde(default)]
    user: String,
}

type FormResult<T> = Result<Form<T>, axum::extract::rejection::FormRejection>;

/// The signed-in moderator making the request, or the 403 to answer with.
async fn moderator(state: &AppState, jar: &SignedCookieJar) -> Result<Account, Response> {
    let visitor = visitor(state, jar)
        .await
        .map_err(IntoResponse::into_response)?;
    match visitor.account {
        Some((account, _)) if account.moderator => Ok(account),
        _ => Err(HttpError::Forbidden("Only moderators can do this.".into()).into_response()),
    }
}

async fn page(State(state): State<AppState>, jar: SignedCookieJar) -> Response {
    if let Err(refused) = moderator(&state, &jar).await {
        return refused;
    }
    shown(&state, StatusCode::OK, None, None).await
}

/// `POST /moderation/ban` (`name`): bans the account holding a claimed name, or the
/// guests here now under that name.
async fn ban(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    form: FormResult<BanForm>,
) -> Response {
    let by = match moderator(&state, &jar).await {
        Ok(by) => by,
        Err(refused) => return refused,
    };
    let raw = form.map(|Form(form)| form.name).unwrap_or_default();
    let name = match DisplayName::parse(&raw) {
        Ok(name) => name,
        Err(err) => {
            return shown(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&err.to_string()),
                None,
            )
            .await;
        }
    };
    // The account holding the name (listed under its own spelling), else the guests here.
    let account = match holder_account(&state, &name).await {
        Ok(account) => account,
        Err(err) => {
            tracing::error!(error = %err, "finding who holds a name failed");
            return HttpError::StoreUnavailable.into_response();
        }
    };
    let (users, name) = match account {
        Some(account) => (vec![account.id], account.name),
        None => (state.hub.users_named(&name), name),
    };
    if users.is_empty() {
        let said = format!("Nobody has claimed {name}, and no guest by that name is here.");
        return shown(&state, StatusCode::NOT_FOUND, Some(&said), None).await;
    }
    for user in &users {
        let ban = Ban {
            user: user.clone(),
            name: name.as_str().to_owned(),
            by: by.name.as_str().to_owned(),
            at: OffsetDateTime::now_utc(),
        };
        if let Err(err) = state.store.ban(&ban).await {
            tracing::error!(error = %err, "storing a ban failed");
            return HttpError::StoreUnavailable.into_response();
        }
        state.hub.ban(user);
    }
    tracing::info!(%name, by = %by.name, users = users.len(), "banned");
    Redirect::to("/moderation").into_response()
}

/// The account holding `name` (or a look-alike), if any.
async fn holder_account(
    state: &AppState,
    name: &DisplayName,
) -> Result<Option<Account>, crate::store::StoreError> {
    match state.accounts.holder(name).await? {
        Some(user) => state.accounts.account(&user).await,
        None => Ok(None),
    }
}

/// `POST /moderation/unban` (`user`: the id the list shows).
async fn unban(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    form: FormResult<UnbanForm>,
) -> Response {
    if let Err(refused) = moderator(&state, &jar).await {
        return refused;
    }
    let raw = form.map(|Form(form)| form.user).unwrap_or_default();
    let Some(user) = UserId::parse(&raw) else {
        let said = "That is not a ban from the list (expected a user id of 32 hex digits).";
        return shown(&state, StatusCode::UNPROCESSABLE_ENTITY, Some(said), None).await;
    };
    match state.store.unban(&user).await {
        Ok(_) => {
            state.hub.unban(&user);
            Redirect::to("/moderation").into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "lifting a ban failed");
            HttpError::StoreUnavailable.into_response()
        }
    }
}

async fn shown(
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
    done: Option<&str>,
) -> Response {
    let bans = match state.store.bans().await {
        Ok(bans) => bans,
        Err(err) => {
            tracing::error!(error = %err, "reading the bans failed");
            return HttpError::StoreUnavailable.into_response();
        }
    };
    match render::moderation_page(super::assets::urls(), &bans, error, done) {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(err) => HttpError::Internal(err.to_string()).into_response(),
    }
}
