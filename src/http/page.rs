//! The chat page.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::{AppState, HttpError, identity};
use crate::domain::GuestName;
use crate::render::{self, Page};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/", get(chat_page))
}

async fn chat_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let known = identity::guest_from(&headers);
    let me = known.clone().unwrap_or_else(GuestName::generate);
    let history = state.hub.history_html();
    let html = render::page(&Page {
        room: state.hub.room(),
        me: me.as_str(),
        max_chars: state.config.max_message_chars,
        history: &history,
    })
    .map_err(|err| HttpError::Internal(err.to_string()))?;
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("static header"),
    );
    if known.is_none() {
        headers.insert(header::SET_COOKIE, identity::set_cookie(&me));
    }
    Ok(response)
}
