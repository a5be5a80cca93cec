//! The embedded front-end files, served under content-hashed URLs.
//!
//! `build.rs` copies htmx, its WebSocket extension and our own CSS and JS into the binary
//! and names each `/assets/<name>.<hash>.<ext>`. A new build with new bytes gets a new
//! URL, so browsers may cache every asset forever.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, HttpError};
use crate::render::AssetUrls;

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    pub(crate) url: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

mod generated {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The URLs the pages link to.
static URLS: AssetUrls = AssetUrls {
    htmx_js: generated::HTMX_JS.url,
    hx_ws_js: generated::HX_WS_JS.url,
    app_css: generated::APP_CSS.url,
    app_js: generated::APP_JS.url,
    reads_js: generated::READS_JS.url,
};

/// The hashed URLs of the embedded scripts and styles, for rendering pages.
pub fn urls() -> &'static AssetUrls {
    &URLS
}

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, HttpError> {
    let asset = generated::ALL
        .iter()
        .find(|asset| asset.url.strip_prefix("/assets/") == Some(file.as_str()))
        .ok_or(HttpError::NotFound)?;
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
    ];
    Ok((headers, asset.body).into_response())
}
