//! The simulated ACCloud routes. Each area module owns its handlers; this
//! module only assembles them, wrapping every route in the per-endpoint
//! middleware (auth, faults, journal).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, post, put};

use crate::app::{Shared, api_middleware};
use crate::error::ApiError;
use crate::faults::{Endpoint, Family};

pub(crate) mod authorizations;
pub(crate) mod files;
pub(crate) mod outbox;
pub(crate) mod patients;
pub(crate) mod scheduler;

fn ep(
    shared: &Arc<Shared>,
    endpoint: Endpoint,
    route: MethodRouter<Arc<Shared>>,
) -> MethodRouter<Arc<Shared>> {
    route.layer(from_fn_with_state(
        (Arc::clone(shared), endpoint),
        api_middleware,
    ))
}

pub(crate) fn api_router(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    use Endpoint::*;
    let s = shared;
    let patients = "/ext/api/v2/patients";
    let scheduler = "/ext/api/v2/scheduler";
    let outbox = "/api/v1/alayamarket/outbox";
    Router::new()
        .route(
            &format!("{patients}/groups"),
            ep(s, GroupList, get(patients::list_groups)),
        )
        .route(
            &format!("{patients}/clients"),
            ep(s, ClientList, get(patients::list_clients)).merge(ep(
                s,
                ClientCreate,
                post(patients::create_client),
            )),
        )
        .route(
            &format!("{patients}/clients/{{client_id}}"),
            ep(s, ClientGet, get(patients::get_client)).merge(ep(
                s,
                ClientUpdate,
                put(patients::update_client),
            )),
        )
        .route(
            &format!("{patients}/clients/by_id/{{external_client_id}}"),
            ep(
                s,
                ClientGetByExternalId,
                get(patients::get_client_by_external),
            )
            .merge(ep(
                s,
                ClientUpdate,
                put(patients::update_client_by_external),
            )),
        )
        .route(
            "/ext/api/v2/accounting/funders",
            ep(s, FunderList, get(scheduler::list_funders)),
        )
        .route(
            "/ext/api/v2/accounting/funders/{funder_id}",
            ep(s, FunderGet, get(scheduler::get_funder)),
        )
        .route(
            &format!("{scheduler}/service_codes"),
            ep(s, ServiceCodeList, get(scheduler::list_service_codes)),
        )
        .route(
            &format!("{scheduler}/services"),
            ep(s, ServiceList, get(scheduler::list_services)).merge(ep(
                s,
                ServiceCreate,
                post(scheduler::create_service),
            )),
        )
        .route(
            &format!("{scheduler}/services/{{alayacare_service_id}}"),
            ep(s, ServiceGet, get(scheduler::get_service)).merge(ep(
                s,
                ServiceUpdate,
                put(scheduler::update_service),
            )),
        )
        .route(
            &format!("{scheduler}/services/by_id/{{service_id}}"),
            ep(
                s,
                ServiceGetByExternalId,
                get(scheduler::get_service_by_external),
            )
            .merge(ep(
                s,
                ServiceUpdate,
                put(scheduler::update_service_by_external),
            )),
        )
        .route(
            &format!("{scheduler}/authorizations"),
            ep(
                s,
                AuthorizationList,
                get(authorizations::list_authorizations),
            )
            .merge(ep(
                s,
                AuthorizationCreate,
                post(authorizations::create_authorization),
            )),
        )
        .route(
            &format!("{scheduler}/authorizations/{{authorization_id}}"),
            ep(
                s,
                AuthorizationUpdate,
                put(authorizations::update_authorization),
            )
            .merge(ep(
                s,
                AuthorizationDelete,
                delete(authorizations::delete_authorization),
            )),
        )
        .route(
            &format!("{outbox}/referrals"),
            ep(s, ReferralList, get(outbox::list_referrals)),
        )
        .route(
            &format!("{outbox}/referrals/{{referral_id}}"),
            ep(s, ReferralGet, get(outbox::get_referral)),
        )
        .route(
            &format!("{outbox}/referrals/from_service/{{service_id}}"),
            ep(s, ReferralCreate, post(outbox::create_referral)),
        )
        .route(
            &format!("{outbox}/referrals/from_service/{{service_id}}/update/{{referral_id}}"),
            ep(s, ReferralUpdate, post(outbox::update_referral)),
        )
        .route(
            &format!("{outbox}/referrals/{{referral_id}}/cancel"),
            ep(s, ReferralCancel, post(outbox::cancel_referral)),
        )
        .route(
            &format!("{outbox}/referrals/{{referral_id}}/client_attachment"),
            ep(
                s,
                AttachmentUpload,
                post(outbox::upload_attachment).layer(DefaultBodyLimit::max(
                    outbox::MAX_ATTACHMENT_BYTES + 4 * 1024 * 1024,
                )),
            ),
        )
        .route(
            &format!("{outbox}/organizations/trusted_network"),
            ep(s, TrustedNetworkList, get(outbox::trusted_network)),
        )
        .route(
            "/ext/api/v2/files/client/{id}/",
            ep(s, FileList, get(files::list_root)),
        )
        .route(
            "/ext/api/v2/files/client/{id}/{*path}",
            ep(s, FileDownload, get(files::get_path)),
        )
}

/// Unknown paths: 404 in the shape of the family the prefix belongs to.
pub(crate) async fn fallback(request: Request) -> impl IntoResponse {
    let path = request.uri().path();
    let family = if path.starts_with("/api/v1/alayamarket") {
        Family::Outbox
    } else if path.starts_with("/ext/api/v2/scheduler/authorizations") {
        Family::Authorizations
    } else {
        Family::Ext
    };
    ApiError::new(family, StatusCode::NOT_FOUND, "Not found")
}
