#![doc = include_str!("../README.md")]

mod auth;
pub mod console;
pub mod contract;
mod docs;
mod error;
mod idempotency;
mod json;
pub mod metrics;
mod params;
mod routes;
mod state;

use axum::Router;
use axum::http::HeaderName;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use auth::BearerScheme;
pub use auth::{Caller, hash_token, new_token};
pub use error::{ApiError, BodyReadTimeout, ErrorBody};
pub use idempotency::{TTL as IDEMPOTENCY_TTL, purge_expired_keys};
pub use state::{ApiConfig, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "refbridge",
        description = "Receives AlayaConnector's Referral Requests, keeps the review record, and sends approvals to ACCloud exactly once."
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody)),
    tags(
        (name = "intake", description = "Referral Requests from AlayaConnector"),
        (name = "review", description = "The review record"),
        (name = "plans", description = "Patients, their insurance plans, and payors"),
        (name = "events", description = "The event feed and signed webhooks: what happened, for CPR+"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// The routes and their OpenAPI description (completed with what the shared layers answer:
/// `contract`), before state is attached.
fn routes(max_file_bytes: u64) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::intake::router())
        .merge(routes::referrals::router())
        .merge(routes::patients::router())
        .merge(routes::plans::router())
        .merge(routes::payors::router())
        .merge(routes::approval::router(max_file_bytes))
        .merge(routes::audit::router())
        .merge(routes::events::router())
        .merge(routes::webhooks::router())
        .split_for_parts();
    contract::complete(&mut doc);
    (router, doc)
}

/// The OpenAPI document of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(ApiConfig::default().max_file_bytes).1
}

/// Each documented route template with its methods.
fn operations(
    doc: &utoipa::openapi::OpenApi,
) -> std::collections::HashMap<String, Vec<axum::http::Method>> {
    use axum::http::Method;
    doc.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                (item.get.is_some(), Method::GET),
                (item.put.is_some(), Method::PUT),
                (item.post.is_some(), Method::POST),
                (item.delete.is_some(), Method::DELETE),
                (item.patch.is_some(), Method::PATCH),
            ];
            let methods = methods.into_iter().filter(|(has, _)| *has).map(|(_, m)| m);
            (path.clone(), methods.collect())
        })
        .collect()
}

/// A request to a documented route with a method the route does not have.
fn undocumented_method(
    documented: &std::collections::HashMap<String, Vec<axum::http::Method>>,
    req: &axum::extract::Request,
) -> bool {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .and_then(|p| documented.get(p.as_str()))
        .is_some_and(|methods| !methods.contains(req.method()))
}

/// The application: every route, with tracing and request ids.
pub fn app(state: AppState) -> Router {
    metrics::install();
    let (router, doc) = routes(state.config.max_file_bytes);
    let documented = std::sync::Arc::new(operations(&doc));
    let doc = std::sync::Arc::new(doc);
    let request_id = HeaderName::from_static("x-request-id");
    let body_limit = axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(console::router(state.config.max_file_bytes))
        .merge(docs::router())
        // After routing, so that each request is counted under its route template.
        .route_layer(axum::middleware::from_fn(metrics::record_http))
        .with_state(state.clone())
        .layer(body_limit)
        .layer(axum::middleware::from_fn_with_state(
            state,
            move |st: axum::extract::State<AppState>,
                  req: axum::extract::Request,
                  next: axum::middleware::Next| {
                let documented = documented.clone();
                async move {
                    // A method the route does not have is its 405: no key is reserved for it.
                    if undocumented_method(&documented, &req) {
                        return next.run(req).await;
                    }
                    idempotency::replay(st, req, next).await
                }
            },
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            // Spans carry the method, the route template and the request id: never the body,
            // never query values.
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                tracing::info_span!("http", method = %req.method(), route = %route, request = %id, actor = tracing::field::Empty)
            })
            // One access line per request at INFO, in the span above: status and latency.
            .on_response(
                tower_http::trace::DefaultOnResponse::new()
                    .level(tracing::Level::INFO)
                    .latency_unit(tower_http::LatencyUnit::Millis),
            ),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
