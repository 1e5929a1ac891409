//! The unhappy paths against a real HTTP peer: each outcome must land in the variant the
//! send protocol branches on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use refbridge_accloud::{AcCloud, AcCloudError, AmbiguousReason, AuthorizationId, ClientId};
use serde_json::json;

use crate::helpers::{Peer, Reply, client_for, raw_peer, refused_url};
use crate::samples::{new_client, new_referral, new_service};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn server_error_after_sending_is_ambiguous() {
    for status in [500, 502, 504] {
        let peer = Peer::always(Reply::json(
            status,
            json!({"code": "500", "message": "An unexpected error has occurred. Please, try again."}),
        ))
        .await;
        let err = peer
            .client(5 * SECOND)
            .create_client(&new_client())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AcCloudError::Ambiguous {
                    reason: AmbiguousReason::ServerError,
                    status: Some(s),
                    ..
                } if s == status
            ),
            "{status}: {err}"
        );
        assert!(err.is_ambiguous() && err.is_retryable());
        assert_eq!(err.retry_after(), None);
        // The peer did receive the create: that is why the outcome is unknown.
        assert_eq!(peer.requests().len(), 1);
    }
}

#[tokio::test]
async fn service_unavailable_without_retry_after_is_ambiguous() {
    let peer = Peer::always(Reply::empty(503)).await;
    let err = peer
        .client(5 * SECOND)
        .create_service(&new_service())
        .await
        .unwrap_err();
    assert!(err.is_ambiguous() && err.is_retryable(), "{err}");
    assert_eq!(err.status(), Some(503));
}

#[tokio::test]
async fn too_many_requests_with_retry_after_is_rate_limited() {
    let peer =
        Peer::always(Reply::json(429, json!({"message": "slow down"})).header("retry-after", "7"))
            .await;
    let err = peer
        .client(5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcCloudError::RateLimited { status: 429, .. }),
        "{err}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_retryable() && !err.is_ambiguous());
}

#[tokio::test]
async fn unavailable_with_retry_after_is_rate_limited() {
    let peer = Peer::always(Reply::empty(503).header("retry-after", "3")).await;
    let err = peer
        .client(5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcCloudError::RateLimited { status: 503, .. }),
        "{err}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn too_many_requests_without_retry_after_is_rate_limited_without_delay() {
    let peer = Peer::always(Reply::empty(429)).await;
    let err = peer
        .client(5 * SECOND)
        .list_client_groups(None, Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AcCloudError::RateLimited {
                retry_after: None,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn slow_answer_times_out_as_ambiguous() {
    let peer = Peer::always(
        Reply::json(201, json!({"id": 1, "external_id": "patient-42"})).after(3 * SECOND),
    )
    .await;
    let started = Instant::now();
    let err = peer
        .client(Duration::from_millis(300))
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AcCloudError::Ambiguous {
                reason: AmbiguousReason::Timeout,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_ambiguous() && err.is_retryable());
    assert!(started.elapsed() < 2 * SECOND, "{:?}", started.elapsed());
    assert_eq!(peer.requests().len(), 1);
}

#[tokio::test]
async fn with_timeout_sets_the_deadline_of_each_call_through_the_trait() {
    let peer = Peer::always(
        Reply::json(201, json!({"id": 1060, "external_id": "patient-42"}))
            .after(Duration::from_millis(400)),
    )
    .await;
    // A generous default, lowered for one step: the call must time out (under
    // the 10 s default it would succeed after 400 ms).
    let client: Arc<dyn AcCloud> = Arc::new(peer.client(10 * SECOND));
    let err = client
        .with_timeout(Duration::from_millis(100))
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AcCloudError::Ambiguous {
                reason: AmbiguousReason::Timeout,
                ..
            }
        ),
        "{err}"
    );

    // A tight default, raised for one step: the call must succeed.
    let tight: Arc<dyn AcCloud> = Arc::new(peer.client(Duration::from_millis(100)));
    let created = tight
        .with_timeout(5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap();
    assert_eq!(created.id, ClientId(1060));
}

#[tokio::test]
async fn connection_closed_without_an_answer_is_ambiguous() {
    let base = raw_peer(b"").await;
    let err = client_for(&base, 5 * SECOND)
        .create_referral(refbridge_accloud::ServiceId(21), &new_referral())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AcCloudError::Ambiguous {
                reason: AmbiguousReason::ConnectionLost,
                status: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_ambiguous() && err.is_retryable());
}

#[tokio::test]
async fn body_cut_short_after_a_created_status_is_ambiguous() {
    let base = raw_peer(
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"id\": 10",
    )
    .await;
    let err = client_for(&base, 5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AcCloudError::Ambiguous {
                reason: AmbiguousReason::BodyRead,
                status: Some(201),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn refused_connection_is_unavailable_and_safe_to_retry() {
    let base = refused_url().await;
    let err = client_for(&base, 5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable() && !err.is_ambiguous());
}

#[tokio::test]
async fn duplicate_external_id_is_a_conflict_with_the_message_kept() {
    let peer = Peer::always(Reply::json(
        409,
        json!({"code": 409, "message": "Client already exists with external ID: patient-42"}),
    ))
    .await;
    let err = peer
        .client(5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::Conflict { .. }), "{err}");
    assert_eq!(err.code(), Some("409"));
    assert_eq!(
        err.message(),
        Some("Client already exists with external ID: patient-42")
    );
    assert!(!err.is_retryable() && !err.is_ambiguous());
    // Display and Debug do not echo the message (it may carry input values).
    assert!(!err.to_string().contains("patient-42"));
    assert!(!format!("{err:?}").contains("patient-42"));
}

#[tokio::test]
async fn lookups_by_external_id_answer_none_on_404() {
    let peer = Peer::always(Reply::json(
        404,
        json!({"code": 404, "message": "Client not found."}),
    ))
    .await;
    let client = peer.client(5 * SECOND);
    assert_eq!(
        client
            .get_client_by_external_id("patient-42")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        client
            .get_service_by_external_id("8f14e45f-ceea-4c67-a1b2-3c4d5e6f7a8b")
            .await
            .unwrap(),
        None
    );
    assert_eq!(client.get_client(ClientId(1)).await.unwrap(), None);
    assert_eq!(
        client
            .get_referral(crate::samples::referral_id())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        client
            .list_client_files(ClientId(1), "Marketplace Documents")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn several_clients_on_one_external_id_is_a_conflict() {
    let peer = Peer::always(Reply::json(
        409,
        json!({"code": 409, "message": "Multiple clients found"}),
    ))
    .await;
    let err = peer
        .client(5 * SECOND)
        .get_client_by_external_id("patient-42")
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::Conflict { .. }), "{err}");
    assert_eq!(err.message(), Some("Multiple clients found"));
}

#[tokio::test]
async fn definite_rejections_keep_accloud_message_out_of_display() {
    let peer = Peer::always(Reply::json(
        400,
        json!({"code": "400", "message": "`start_at` cannot be more than 1 year in the past."}),
    ))
    .await;
    let err = peer
        .client(5 * SECOND)
        .create_authorization(&crate::samples::new_authorization())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcCloudError::Rejected { status: 400, .. }),
        "{err}"
    );
    assert_eq!(
        err.message(),
        Some("`start_at` cannot be more than 1 year in the past.")
    );
    assert_eq!(
        err.to_string(),
        "ACCloud rejected the request: HTTP 400 (code 400)"
    );
    assert!(!err.is_retryable() && !err.is_ambiguous());
}

#[tokio::test]
async fn unexpected_success_body_is_a_decode_error_that_requires_a_lookup() {
    let peer = Peer::always(Reply::json(201, json!({"external_id": "patient-42"}))).await;
    let err = peer
        .client(5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AcCloudError::Decode { status: 201, path, .. } if path == "."),
        "{err}"
    );
    assert!(err.is_ambiguous() && !err.is_retryable());

    let peer = Peer::always(Reply::json(
        200,
        json!({"id": "not-a-number", "external_id": "x"}),
    ))
    .await;
    let err = peer
        .client(5 * SECOND)
        .create_service(&new_service())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AcCloudError::Decode { path, .. } if path == "id"),
        "{err}"
    );
}

#[tokio::test]
async fn delete_maps_204_to_ok_and_404_to_not_found() {
    let peer = Peer::always(Reply::empty(204)).await;
    peer.client(5 * SECOND)
        .delete_authorization(AuthorizationId(8))
        .await
        .unwrap();
    let peer = Peer::always(Reply::json(
        404,
        json!({"code": "400", "message": "Authorization not found."}),
    ))
    .await;
    let err = peer
        .client(5 * SECOND)
        .delete_authorization(AuthorizationId(8))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcCloudError::NotFound { status: 404, .. }),
        "{err}"
    );
    assert_eq!(err.message(), Some("Authorization not found."));
}

#[tokio::test]
async fn file_download_treats_the_documented_400_not_found_as_none() {
    let peer = Peer::always(Reply::json(
        400,
        json!({"code": 404, "message": "File \"x.pdf\" to delete not found"}),
    ))
    .await;
    let got = peer
        .client(5 * SECOND)
        .download_client_file(ClientId(1060), "Marketplace Documents/x.pdf")
        .await
        .unwrap();
    assert_eq!(got, None);
    // A 400 with another code stays a rejection.
    let peer = Peer::always(Reply::json(400, json!({"code": 400, "message": "bad"}))).await;
    let err = peer
        .client(5 * SECOND)
        .download_client_file(ClientId(1060), "Marketplace Documents/x.pdf")
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::Rejected { .. }), "{err}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let peer = Peer::always(Reply::empty(302).header("location", "/login")).await;
    let err = peer
        .client(5 * SECOND)
        .create_client(&new_client())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcCloudError::Rejected { status: 302, .. }),
        "{err}"
    );
    assert_eq!(peer.requests().len(), 1);
}
