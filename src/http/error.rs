//! Every way an HTTP request can fail, mapped to a status and a page in one `match`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::render;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("There is nothing at this address.")]
    NotFound,
    #[error(
        "This request came from {origin}, which is not this server's origin, so it was \
         refused and changed nothing. Start hubbub with --allowed-origin {origin} to allow it."
    )]
    ForeignOrigin { origin: String },
    #[error("This address speaks WebSocket; open / in a browser to chat.")]
    NotWebSocket,
    #[error("The server is restarting; try again in a moment.")]
    ShuttingDown,
    #[error("Too many connections: {0}. Try again in a moment.")]
    TooManyConnections(super::client::Refused),
    #[error("{0}")]
    BadRequest(String),
    /// Over a per-address allowance; the seconds until the next request is allowed.
    #[error("Too many searches from your address; try again in {0} s.")]
    TooManySearches(u64),
    /// Signed in, but not allowed (a moderator's page for someone who is not one).
    #[error("{0}")]
    Forbidden(String),
    /// `--guests off` and nobody signed in.
    #[error("Sign in to read this chat: this server is for members only.")]
    SignInRequired,
    /// The store failed; details are logged where it failed.
    #[error("Messages cannot be loaded right now; try again in a moment.")]
    StoreUnavailable,
    /// Details go to the log, never to the user.
    #[error("Something went wrong on our side.")]
    Internal(String),
}

impl HttpError {
    fn status(&self) -> StatusCode {
        match self {
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::ForeignOrigin { .. } | HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::NotWebSocket => StatusCode::UPGRADE_REQUIRED,
            HttpError::ShuttingDown
            | HttpError::StoreUnavailable
            | HttpError::TooManyConnections(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::SignInRequired => StatusCode::UNAUTHORIZED,
            HttpError::TooManySearches(_) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let HttpError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let title = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let body = render::error_page(super::assets::urls(), &title, &self.to_string())
            .unwrap_or_else(|_| format!("{title}\n{self}\n"));
        let mut response = (status, Html(body)).into_response();
        match self {
            HttpError::ShuttingDown
            | HttpError::StoreUnavailable
            | HttpError::TooManyConnections(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            HttpError::TooManySearches(seconds) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            HttpError::NotWebSocket => {
                response
                    .headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            _ => {}
        }
        response
    }
}
