//! For operators: `GET /readyz` (can this node serve chat right now?) and `GET /metrics`
//! (OpenMetrics text). `/healthz` (in `mod.rs`) stays liveness only: it never looks at the
//! store, so an orchestrator does not restart a healthy process because its database is down.
//!
//! Readiness is a list of checks, each answering `Ok` or one line of why not; they run
//! concurrently and the response lists every failure: the store, the commit writer and the
//! broker (always ready when local; a remote one is not ready while disconnected).
//!
//! Neither endpoint carries user data (no names, no room names, no addresses), but both
//! belong to the operator: a reverse proxy in front of hubbub should not forward them.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};

use super::AppState;
use crate::metrics;
use crate::store::StoreError;

/// How long the store has to answer the readiness query.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// One readiness check: `Err` is one line for the response body.
type Check<'a> = BoxFuture<'a, Result<(), String>>;

/// 200 `ready` when every check passes, else 503 with one line per failure.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        );
    }
    let checks: Vec<Check<'_>> = vec![
        store(&state).boxed(),
        writer(&state).boxed(),
        broker(&state).boxed(),
    ];
    let failures: Vec<String> = join_all(checks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failures.is_empty() {
        plain(StatusCode::OK, "ready\n".to_owned())
    } else {
        let mut body = failures.join("\n");
        body.push('\n');
        plain(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

/// The store answers a query that needs its schema, in time. The reason given is a fixed
/// sentence: database errors can name hosts and users, so details go to the log only.
async fn store(state: &AppState) -> Result<(), String> {
    let err = match tokio::time::timeout(STORE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(err)) => err,
        Err(_) => StoreError::TimedOut(STORE_TIMEOUT),
    };
    tracing::warn!(error = %err, backend = state.store.backend(), "not ready: the store failed its check");
    let why = match err {
        StoreError::Busy(_) => "the database is busy".to_owned(),
        StoreError::TimedOut(after) => format!("no answer within {after:?}"),
        _ => "the database failed (details in the server log)".to_owned(),
    };
    Err(format!("store unavailable: {why}"))
}

/// The commit writer is running and has room in its queue.
async fn writer(state: &AppState) -> Result<(), String> {
    state
        .committer
        .health()
        .map_err(|why| format!("commit writer unavailable: {why}"))
}

/// The broker that carries committed batches between nodes is connected.
async fn broker(state: &AppState) -> Result<(), String> {
    state
        .broker
        .health()
        .map_err(|why| format!("broker unavailable: {why}"))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.hub.metrics().encode().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
