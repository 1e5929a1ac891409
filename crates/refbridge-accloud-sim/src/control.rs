//! The control and inspection API under `/_sim/` (its own credential).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use uuid::Uuid;

use crate::app::{ControlError, Shared, SimHandle, control_middleware};
use crate::faults::{FaultConfig, ScriptedFault};
use crate::util::Query;

fn handle(shared: &Arc<Shared>) -> SimHandle {
    SimHandle {
        shared: Arc::clone(shared),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": status.as_u16(), "message": message.into()})),
    )
        .into_response()
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    Json(handle(&shared).state()).into_response()
}

async fn duplicates(State(shared): State<Arc<Shared>>) -> Response {
    Json(handle(&shared).duplicates()).into_response()
}

async fn journal(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let h = handle(&shared);
    let entries = h.journal();
    if Query::parse(raw.as_deref()).get("clear") == Some("true") {
        h.clear_journal();
    }
    Json(entries).into_response()
}

async fn clear_journal(State(shared): State<Arc<Shared>>) -> Response {
    handle(&shared).clear_journal();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(handle(&shared).faults()).into_response()
}

async fn put_faults(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let faults: FaultConfig = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid fault configuration: {e}"),
            );
        }
    };
    match handle(&shared).set_faults(faults) {
        Ok(()) => Json(handle(&shared).faults()).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    handle(&shared).clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn push_scripted(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    // One scripted fault or a list of them.
    let faults: Vec<ScriptedFault> = match serde_json::from_slice::<Vec<ScriptedFault>>(&body) {
        Ok(list) => list,
        Err(_) => match serde_json::from_slice::<ScriptedFault>(&body) {
            Ok(one) => vec![one],
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid scripted fault: {e}"),
                );
            }
        },
    };
    let h = handle(&shared);
    for f in faults {
        h.push_scripted_fault(f);
    }
    Json(h.faults()).into_response()
}

async fn process(State(shared): State<Arc<Shared>>, Path(raw): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&raw) else {
        return error(StatusCode::NOT_FOUND, format!("referral {raw} not found"));
    };
    match handle(&shared).mark_processed(id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ ControlError::ReferralNotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    handle(&shared).reset();
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) fn control_router(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/duplicates", get(duplicates))
        .route("/_sim/journal", get(journal).delete(clear_journal))
        .route(
            "/_sim/faults",
            get(get_faults).put(put_faults).delete(clear_faults),
        )
        .route("/_sim/faults/scripted", post(push_scripted))
        .route("/_sim/referrals/{referral_id}/process", post(process))
        .route("/_sim/reset", post(reset))
        .route_layer(from_fn_with_state(Arc::clone(shared), control_middleware))
}
