//! Search: `GET /search?q=…` (every room) and `GET /rooms/{room}/search?q=…` (one room),
//! a page of the newest messages that contain every word, each linking to the message in
//! its room (`/rooms/{room}?around={id}`); `&before=ID` is the next page ("older
//! results"), with ids as the cursor as in history.
//!
//! Searches count against `--searches-per-minute` per client address (429 with
//! `Retry-After` beyond it). Without a query the page is just the form. A query with no words, or too long, gets
//! the page with the form and what to type instead (400); a malformed `before` is a 400
//! that says what is expected.

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::client::{ClientAddr, Peer};
use super::{AppState, HttpError};
use crate::domain::{RoomName, SearchTerms};
use crate::render::{self, SearchPage};

/// Results per page.
pub(crate) const RESULTS: u32 = 20;

/// Searches that run at once; more wait (at most [`WAIT`]), then get a 503. Below both
/// stores' reader pools (SQLite 4, PostgreSQL 8).
pub const AT_ONCE: usize = 3;

/// How long a search waits for one of the [`AT_ONCE`] places.
const WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/search", get(everywhere))
        .route("/rooms/{room}/search", get(in_room))
}

/// A search's query string, as pairs (so a repeated or unknown name is ours to judge).
type Params = Query<Vec<(String, String)>>;

async fn everywhere(
    state: State<AppState>,
    client: Client,
    Query(params): Params,
) -> Result<Response, HttpError> {
    search(state, client, None, params).await
}

async fn in_room(
    state: State<AppState>,
    client: Client,
    Path(room): Path<String>,
    Query(params): Params,
) -> Result<Response, HttpError> {
    let room = super::page::parse_room(&room)?;
    search(state, client, Some(room), params).await
}

/// Who asks: the peer and the headers that may name the client behind a proxy.
type Client = (Option<Extension<Peer>>, HeaderMap);

async fn search(
    State(state): State<AppState>,
    (peer, headers): Client,
    room: Option<RoomName>,
    params: Vec<(String, String)>,
) -> Result<Response, HttpError> {
    let (query, before) = parse_params(&params).map_err(HttpError::BadRequest)?;
    let back = room.clone().unwrap_or_else(RoomName::general);
    let mut page = SearchPage {
        assets: super::assets::urls(),
        room: room.as_ref(),
        back: &back,
        query,
        words: None,
        refused: None,
        found: &[],
        paged: before.is_some(),
        older: None,
    };
    if query.trim().is_empty() {
        return respond(StatusCode::OK, &page);
    }
    let client = ClientAddr::of_request(
        peer.map(|Extension(Peer(peer))| peer),
        &headers,
        state.config.trust_proxy,
    );
    if !client.exempt
        && let Err(wait) = state.address_limits.allow_search(client.ip)
    {
        // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(HttpError::TooManySearches(seconds));
    }
    let terms = match SearchTerms::parse(query) {
        Ok(terms) => terms,
        Err(why) => {
            let why = why.to_string();
            page.refused = Some(&why);
            return respond(StatusCode::BAD_REQUEST, &page);
        }
    };
    let Ok(Ok(_running)) = tokio::time::timeout(WAIT, state.searches.acquire()).await else {
        tracing::warn!("searches: every place taken for {WAIT:?}; answered 503");
        return Err(HttpError::StoreUnavailable);
    };
    // One more than a page tells whether there are older results.
    let mut found = state
        .store
        .search(
            &terms,
            room.as_ref(),
            before.unwrap_or(u64::MAX),
            RESULTS + 1,
        )
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "searching failed");
            HttpError::StoreUnavailable
        })?;
    if found.len() > RESULTS as usize {
        found.truncate(RESULTS as usize);
        page.older = found.last().map(|last| last.message.id);
    }
    let words = terms.text();
    page.words = Some(&words);
    page.found = &found;
    respond(StatusCode::OK, &page)
}

fn respond(status: StatusCode, page: &SearchPage<'_>) -> Result<Response, HttpError> {
    let html = render::search_page(page).map_err(|err| HttpError::Internal(err.to_string()))?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// `q` (at most once; absent is the empty query) and `before` (at most once, a positive
/// whole number); other names are ignored, as forms add their own.
fn parse_params(params: &[(String, String)]) -> Result<(&str, Option<u64>), String> {
    const EXPECTED: &str = "expected ?q=WORDS, and &before=ID for older results, where ID is a \
                            message id (a positive whole number)";
    let mut query = None;
    let mut before = None;
    for (name, value) in params {
        match name.as_str() {
            "q" if query.is_none() => query = Some(value.as_str()),
            "before" if before.is_none() => before = Some(value.as_str()),
            "q" | "before" => return Err(format!("'{name}' is given twice; {EXPECTED}")),
            _ => {}
        }
    }
    let before = match before {
        None => None,
        Some(raw) => match raw.parse::<u64>() {
            Ok(id) if id > 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Some(id),
            _ => return Err(format!("'before' is not a message id; {EXPECTED}")),
        },
    };
    Ok((query.unwrap_or(""), before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        raw.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn params_parse_or_say_what_is_expected() {
        assert_eq!(parse_params(&pairs(&[])), Ok(("", None)));
        assert_eq!(
            parse_params(&pairs(&[("q", "deploy"), ("x", "1"), ("before", "42")])),
            Ok(("deploy", Some(42)))
        );
        for bad in [
            &[("q", "a"), ("q", "b")][..],
            &[("before", "1"), ("before", "2")],
            &[("q", "a"), ("before", "0")],
            &[("q", "a"), ("before", "-3")],
            &[("q", "a"), ("before", "1e3")],
            &[("q", "a"), ("before", "")],
            &[("q", "a"), ("before", "99999999999999999999999")],
        ] {
            let err = parse_params(&pairs(bad)).unwrap_err();
            assert!(err.contains("expected ?q=WORDS"), "{bad:?}: {err}");
        }
    }
}
