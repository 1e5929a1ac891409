//! Resolve-by-name helpers read every page and check names and ids themselves.

use std::time::Duration;

use refbridge_accloud::lookup::{
    find_client_group, find_funder, find_service_code, find_trusted_supplier,
};
use refbridge_accloud::{FunderId, GroupId, ServiceCodeId, SupplyPersonaId};
use serde_json::json;

use crate::helpers::{Peer, Reply};
use crate::samples::supply;

fn page_of(query: Option<&str>) -> u32 {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("page="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[tokio::test]
async fn the_csi_group_is_found_on_a_later_page_and_disabled_groups_are_skipped() {
    let peer = Peer::start(|r| match page_of(r.query.as_deref()) {
        1 => Reply::json(
            200,
            json!({"count": 2, "page": 1, "total_pages": 2, "items": [
            {"id": 1, "name": "Agency A", "is_disabled": false},
            {"id": 2, "name": "CSI", "is_disabled": true}]}),
        ),
        _ => Reply::json(
            200,
            json!({"count": 1, "page": 2, "total_pages": 2, "items": [
            {"id": 1008, "name": "CSI", "is_disabled": false,
             "branch": {"id": 1000, "name": "HQ"}}]}),
        ),
    })
    .await;
    let client = peer.client(Duration::from_secs(5));
    let g = find_client_group(&client, "CSI", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.id, GroupId(1008));
    assert_eq!(peer.requests().len(), 2);
    assert_eq!(
        find_client_group(&client, "Nope", None).await.unwrap(),
        None
    );
    assert_eq!(peer.requests().len(), 4);
}

#[tokio::test]
async fn funders_and_service_codes_match_the_whole_name() {
    let peer = Peer::start(|r| {
        if r.path.ends_with("/funders") {
            Reply::json(
                200,
                json!({"count": 2, "page": 1, "total_pages": 1, "items": [
                {"id": 8, "name": "Blue Cross Plus", "status": "enabled"},
                {"id": 9, "name": "Blue Cross", "status": "enabled"}]}),
            )
        } else {
            Reply::json(
                200,
                json!({"count": 2, "page": 1, "total_pages": 1, "items": [
                {"id": 47, "name": "SN-2"}, {"id": 48, "name": "SN"}]}),
            )
        }
    })
    .await;
    let client = peer.client(Duration::from_secs(5));
    let f = find_funder(&client, "blue cross", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.id, FunderId(9));
    assert_eq!(
        peer.requests()[0].query.as_deref(),
        Some("funder_name=blue+cross&page=1&count=100")
    );
    let c = find_service_code(&client, "SN", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.id, ServiceCodeId(48));
}

#[tokio::test]
async fn a_trusted_supplier_is_checked_by_id_even_if_the_filter_is_ignored() {
    // The peer ignores the (inferred) supply_persona_id filter.
    let peer = Peer::always(Reply::json(
        200,
        json!({
        "page": 1, "items_per_page": 100, "total_items": 1, "total_pages": 1,
        "items": [{"id": "11111111-1111-4111-8111-111111111111", "name": "Other"}]}),
    ))
    .await;
    let client = peer.client(Duration::from_secs(5));
    assert_eq!(
        find_trusted_supplier(&client, supply()).await.unwrap(),
        None
    );
    let other = SupplyPersonaId("11111111-1111-4111-8111-111111111111".parse().unwrap());
    assert_eq!(
        find_trusted_supplier(&client, other)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Other"
    );
}
