//! Paging back: `GET /rooms/{room}/history?before=ID` answers a "load older" element with
//! the 50 messages before `ID`, led by the next "load older" element or "start of
//! conversation". Ids are the cursor, so pages neither shift nor overlap when new
//! messages arrive.
//!
//! `GET /rooms/{room}/history?after=ID` answers a "load newer" element (a room opened at an
//! older message, `/rooms/{room}?around=ID`) with the 50 messages after `ID`, followed by
//! the next "load newer" element while there are more.
//!
//! `GET /rooms/{room}/messages/{id}/source` is one message's text as it was written (its
//! Markdown), for the edit form: what a page shows is rendered and cannot be read back.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::{AppState, HttpError};
use crate::domain::RoomName;
use crate::render;

/// Messages per page.
pub(crate) const PAGE: u32 = 50;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms/{room}/history", get(page))
        .route("/rooms/{room}/messages/{id}/source", get(source))
}

/// `?before=ID` ("load older") or `?after=ID` ("load newer").
async fn page(
    state: State<AppState>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let room = super::page::parse_room(&room)?;
    let query = query.as_deref();
    if names(query).any(|name| name == "after") {
        let after = named_cursor(query, "after").map_err(HttpError::BadRequest)?;
        return newer(state, room, after).await;
    }
    let before = parse_cursor(query).map_err(HttpError::BadRequest)?;
    older(state, room, before).await
}

async fn older(
    State(state): State<AppState>,
    room: RoomName,
    before: u64,
) -> Result<Response, HttpError> {
    // One more than a page tells whether there is another page after this one.
    let mut messages = state
        .store
        .before(&room, before, PAGE + 1)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "loading older messages failed");
            HttpError::StoreUnavailable
        })?;
    let has_more = messages.len() > PAGE as usize;
    if has_more {
        messages.remove(0);
    }
    let html = render::older_page(&room, &messages, has_more);
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

async fn newer(
    State(state): State<AppState>,
    room: RoomName,
    after: u64,
) -> Result<Response, HttpError> {
    // One more than a page tells whether there is another page after this one.
    let mut messages = state
        .store
        .after(&room, after, PAGE + 1)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "loading newer messages failed");
            HttpError::StoreUnavailable
        })?;
    let has_more = messages.len() > PAGE as usize;
    messages.truncate(PAGE as usize);
    let html = render::newer_page(&room, &messages, has_more);
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// A message's text as written: plain text, not cached (an edit changes it). A message
/// that is not in the room, or deleted, is not found.
async fn source(
    State(state): State<AppState>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let room = super::page::parse_room(&room)?;
    let id = Some(&id)
        .filter(|raw| raw.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|raw| raw.parse::<u64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            HttpError::BadRequest("expected a message id (a positive whole number)".into())
        })?;
    let message = state.store.message(&room, id).await.map_err(|err| {
        tracing::error!(error = %err, "reading a message failed");
        HttpError::StoreUnavailable
    })?;
    match message {
        Some(message) if !message.deleted => Ok((
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            message.text.as_str().to_owned(),
        )
            .into_response()),
        _ => Err(HttpError::NotFound),
    }
}

/// The paging cursor from a history request's query string: `before=ID` with ID a
/// positive decimal integer, given once; other parameters are ignored. Anything else is an
/// error that says what is expected.
pub fn parse_cursor(query: Option<&str>) -> Result<u64, String> {
    named_cursor(query, "before")
}

/// The names in a query string, in order (a name without `=` still names a parameter).
pub(super) fn names(query: Option<&str>) -> impl Iterator<Item = &str> {
    pairs(query).map(|(name, _)| name)
}

fn pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// A message id named `name` in a query string, given once: see [`parse_cursor`].
pub(super) fn named_cursor(query: Option<&str>, name: &str) -> Result<u64, String> {
    let expected =
        format!("expected ?{name}=ID, where ID is a message id (a positive whole number)");
    let mut found = None;
    // A name without `=` still names the parameter (with an empty value), as in any
    // form-encoded query: `before&before=2` gives `before` twice.
    for (key, value) in pairs(query) {
        match key {
            _ if key != name => {}
            _ if found.is_none() => found = Some(value),
            _ => return Err(format!("'{name}' is given twice; {expected}")),
        }
    }
    let Some(raw) = found else {
        return Err(format!("'{name}' is missing; {expected}"));
    };
    match raw.parse::<u64>() {
        Ok(id) if id > 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(format!("'{name}' is not a message id; {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_or_say_what_is_expected() {
        assert_eq!(parse_cursor(Some("before=51")), Ok(51));
        assert_eq!(parse_cursor(Some("x=1&before=7")), Ok(7));
        for bad in [
            None,
            Some(""),
            Some("before="),
            Some("before=0"),
            Some("before=-1"),
            Some("before=+5"),
            Some("before=1e3"),
            Some("before=abc"),
            Some("before=99999999999999999999999"),
            Some("before=1&before=2"),
            Some("before=%31"),
            // Found by the paging_cursor fuzz target: a bare `before` was skipped, so
            // these read as a single `before=…`.
            Some("before"),
            Some("before=1&before"),
            Some("before&before=2"),
        ] {
            let err = parse_cursor(bad).unwrap_err();
            assert!(err.contains("expected ?before=ID"), "{bad:?}: {err}");
        }
    }
}
