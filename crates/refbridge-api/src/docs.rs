//! `GET /docs`: a browsable reference of `/openapi.json` (Scalar's API reference, its script
//! embedded in the binary by `scalar_api_reference` and served from `/docs/scalar.js`: no CDN,
//! no web fonts fetched, no hosted services offered, so it works where refbridge has no
//! internet).

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

const SCRIPT: &str = "/docs/scalar.js";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(page))
        .route(SCRIPT, get(script))
}

async fn page() -> Html<String> {
    let config = serde_json::json!({
        "url": "/openapi.json",
        "withDefaultFonts": false,
        "hideClientButton": true,
        // No toolbar of Scalar's hosted services and no AI chat: both call out of the network.
        "showDeveloperTools": "never",
        "agent": { "disabled": true },
        "metaData": { "title": "refbridge API" },
    });
    Html(scalar_api_reference::scalar_html(&config, Some(SCRIPT)))
}

async fn script() -> Response {
    static JS: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    match JS.get_or_init(|| scalar_api_reference::get_asset("scalar.js")) {
        Some(js) => (
            [
                (
                    header::CONTENT_TYPE,
                    "application/javascript; charset=utf-8",
                ),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            js.as_slice(),
        )
            .into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}
