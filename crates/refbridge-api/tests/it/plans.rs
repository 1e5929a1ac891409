//! `PUT /v1/patient-plans` and the other plan endpoints: the behaviours of
//! `../shared/reference/notes/PATIENT-PLANS.md` §5 (B1…B15) and what we add.

use refbridge_api::ApiConfig;
use refbridge_domain::plan::ConflictBehavior;
use serde_json::{Value, json};

use crate::helpers::{TestApp, example, spawn_app, spawn_app_with, status_json};

pub async fn send(app: &TestApp, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.reviewer_token);
    if let Some(b) = body {
        req = req.json(b);
    }
    status_json(req.send().await.unwrap()).await
}

pub async fn new_patient(app: &TestApp, source: &str) -> String {
    let (s, b) = send(
        app,
        "PUT",
        "/v1/patients",
        Some(
            &json!({"source_id": source, "first_name": "Ana", "last_name": source,
                     "date_of_birth": "2015-03-02"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["patient_id"].as_str().unwrap().to_owned()
}

pub async fn new_payor(app: &TestApp, name: &str) -> String {
    let (s, b) = send(app, "PUT", "/v1/payors", Some(&json!({"name": name}))).await;
    assert!(s == 201 || s == 200, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

pub fn plan(patient: &str, source: &str, member: &str, payor: &str, order: i64) -> Value {
    json!({"patient_id": patient, "source_id": source, "member_number": member,
           "payor_entity_id": payor, "plan_order_number": order})
}

pub fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

pub async fn put_plan(app: &TestApp, body: &Value) -> (u16, Value) {
    send(app, "PUT", "/v1/patient-plans", Some(body)).await
}

pub async fn plans_of(app: &TestApp, patient: &str, archived: bool) -> Vec<Value> {
    let q = if archived {
        "?include_archived=true"
    } else {
        ""
    };
    let (s, b) = send(
        app,
        "GET",
        &format!("/v1/patients/{patient}/patient-plans{q}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["items"].as_array().unwrap().clone()
}

async fn get_plan(app: &TestApp, id: &str) -> Value {
    let (s, b) = send(app, "GET", &format!("/v1/patient-plans/{id}"), None).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// A patient, two payors X and Y.
async fn setup() -> (TestApp, String, String, String) {
    let app = spawn_app().await;
    let p = new_patient(&app, "e1").await;
    let x = new_payor(&app, "Payor X").await;
    let y = new_payor(&app, "Payor Y").await;
    (app, p, x, y)
}

async fn created(app: &TestApp, body: &Value) -> String {
    let (s, b) = put_plan(app, body).await;
    assert_eq!(s, 201, "{b}");
    b["patient_plan_id"].as_str().unwrap().to_owned()
}

// B1
#[tokio::test]
async fn invalid_put_answers_400_naming_the_field_and_writes_nothing() {
    let (app, p, x, _) = setup().await;
    let base = plan(&p, "s1", "M1", &x, 1);
    let cases = [
        (
            with(base.clone(), "member_number", json!("1")),
            "member_number",
        ),
        (
            with(base.clone(), "member_number", json!("x".repeat(81))),
            "member_number",
        ),
        (with(base.clone(), "source_id", Value::Null), "source_id"),
        (
            with(base.clone(), "conflict_behavior", json!("OVERWRITE")),
            "conflict_behavior",
        ),
        (
            with(base.clone(), "deduplication_strategy", json!("NAME")),
            "deduplication_strategy",
        ),
        (
            with(base.clone(), "plan_order_number", json!(0)),
            "plan_order_number",
        ),
        (
            with(base.clone(), "insurance_type", json!("PRIVATE")),
            "insurance_type",
        ),
        (
            with(base.clone(), "start_date", json!("yesterday")),
            "start_date",
        ),
        (
            with(
                with(base.clone(), "start_date", json!("2026-02-01")),
                "end_date",
                json!("2026-01-01"),
            ),
            "end_date",
        ),
        (
            with(
                with(base.clone(), "conflict_behavior", json!("REPLACE")),
                "conflict_strategy",
                json!("RAISE_ERROR"),
            ),
            "conflict_strategy",
        ),
        (with(base.clone(), "colour", json!("blue")), "colour"),
    ];
    for (body, field) in cases {
        let (s, b) = put_plan(&app, &body).await;
        assert_eq!(s, 400, "{field}: {b}");
        assert_eq!(b["error"], "invalid_request");
        assert_eq!(b["details"][0]["path"], field, "{b}");
    }
    // No body, no Content-Type: not a JSON document.
    let (s, b) = send(&app, "PUT", "/v1/patient-plans", None).await;
    assert_eq!(s, 415, "{b}");
    assert_eq!(b["message"], "Content-Type must be application/json", "{b}");
    assert!(plans_of(&app, &p, true).await.is_empty());
}

// B1: unknown references
#[tokio::test]
async fn unknown_patient_payor_or_card_file_is_404() {
    let (app, p, x, _) = setup().await;
    let nobody = "0190a1b2-0000-7000-8000-000000000999";
    let (s, b) = put_plan(&app, &plan(nobody, "s1", "M1", &x, 1)).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")), "{b}");
    let (s, _) = put_plan(&app, &plan(&p, "s1", "M1", nobody, 1)).await;
    assert_eq!(s, 404);
    let body = with(
        plan(&p, "s1", "M1", &x, 1),
        "insurance_card_file_id",
        json!(nobody),
    );
    let (s, _) = put_plan(&app, &body).await;
    assert_eq!(s, 404);
    assert!(plans_of(&app, &p, true).await.is_empty());
}

// B2
#[tokio::test]
async fn a_source_id_hit_changes_nothing_and_names_the_ignored_fields() {
    let (app, p, x, y) = setup().await;
    let a = created(&app, &plan(&p, "s1", "M1", &x, 1)).await;
    let before = get_plan(&app, &a).await;
    let (s, b) = put_plan(&app, &plan(&p, "s1", "M2", &y, 2)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["patient_plan_id"], a.as_str());
    assert_eq!(b["outcome"], "source_id_match");
    assert_eq!(
        b["ignored_fields"],
        json!(["member_number", "payor_entity_id", "plan_order_number"])
    );
    assert_eq!(get_plan(&app, &a).await, before);
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

// B3, and the payor-only change lost under the default strategy
#[tokio::test]
async fn default_dedup_on_member_number_only_rewrites_the_source_id() {
    let (app, p, x, y) = setup().await;
    let a = created(&app, &plan(&p, "old", "M1", &x, 2)).await;
    let (s, b) = put_plan(&app, &plan(&p, "new", "M1", &y, 1)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["patient_plan_id"], a.as_str());
    assert_eq!(b["outcome"], "deduplicated");
    assert_eq!(
        b["ignored_fields"],
        json!(["payor_entity_id", "plan_order_number"])
    );
    let got = get_plan(&app, &a).await;
    assert_eq!(got["source_id"], "new");
    assert_eq!(got["payor_entity_id"], x.as_str());
    assert_eq!(got["plan_order_number"], 2);
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

#[tokio::test]
async fn a_payor_only_change_under_the_default_strategy_keeps_the_old_payor() {
    let (app, p, x, y) = setup().await;
    let a = created(&app, &plan(&p, "plan-1-M1-X", "M1", &x, 1)).await;
    let (s, b) = put_plan(&app, &plan(&p, "plan-1-M1-Y", "M1", &y, 1)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["outcome"], "deduplicated");
    assert_eq!(b["ignored_fields"], json!(["payor_entity_id"]));
    assert_eq!(get_plan(&app, &a).await["payor_entity_id"], x.as_str());
    // Asking for MEMBER_NUMBER_AND_PAYOR honours the change: the plan is replaced.
    let body = with(
        plan(&p, "plan-1-M1-Y", "M1", &y, 1),
        "deduplication_strategy",
        json!("MEMBER_NUMBER_AND_PAYOR"),
    );
    let (s, b) = put_plan(&app, &body).await;
    // The first PUT gave A this source_id: it is now a source_id match.
    assert_eq!((s, b["outcome"].as_str()), (200, Some("source_id_match")));
    let body = with(body, "source_id", json!("plan-1-M1-Y-2"));
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!((s, b["outcome"].as_str()), (201, Some("replaced")), "{b}");
    assert_eq!(b["archived_patient_plan_ids"], json!([a]));
}

// B4
#[tokio::test]
async fn member_number_and_payor_dedup_needs_both_to_match() {
    let (app, p, x, y) = setup().await;
    let a = created(&app, &plan(&p, "old", "M1", &x, 2)).await;
    let body = with(
        plan(&p, "new", "M1", &y, 1),
        "deduplication_strategy",
        json!("MEMBER_NUMBER_AND_PAYOR"),
    );
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!((s, b["outcome"].as_str()), (201, Some("created")), "{b}");
    let plans = plans_of(&app, &p, false).await;
    assert_eq!(plans.len(), 2);
    assert!(plans.iter().all(|pl| pl["member_number"] == "M1"));

    let body = with(
        plan(&p, "newer", "M1", &x, 3),
        "deduplication_strategy",
        json!("MEMBER_NUMBER_AND_PAYOR"),
    );
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["patient_plan_id"], a.as_str());
}

// B5
#[tokio::test]
async fn member_payor_and_order_dedup_needs_all_three_and_several_candidates_pick_the_requested_order()
 {
    let (app, p, x, y) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let body = with(
        plan(&p, "b", "M1", &y, 2),
        "deduplication_strategy",
        json!("MEMBER_NUMBER_AND_PAYOR"),
    );
    let b2 = created(&app, &body).await;
    // Same member and payor as A, other order: no duplicate; order 3 is free.
    let body = with(
        plan(&p, "c", "M1", &x, 3),
        "deduplication_strategy",
        json!("MEMBER_NUMBER_PAYOR_AND_ORDER"),
    );
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!((s, b["outcome"].as_str()), (201, Some("created")), "{b}");
    let c = b["patient_plan_id"].as_str().unwrap().to_owned();
    let body = with(
        plan(&p, "a2", "M1", &x, 1),
        "deduplication_strategy",
        json!("MEMBER_NUMBER_PAYOR_AND_ORDER"),
    );
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!((s, b["patient_plan_id"].as_str()), (200, Some(a.as_str())));
    // Under MEMBER_NUMBER, three plans share M1: the one at the requested order wins.
    let (s, b) = put_plan(&app, &plan(&p, "z", "M1", &x, 2)).await;
    assert_eq!((s, b["patient_plan_id"].as_str()), (200, Some(b2.as_str())));
    let (s, b) = put_plan(&app, &plan(&p, "z3", "M1", &x, 3)).await;
    assert_eq!((s, b["patient_plan_id"].as_str()), (200, Some(c.as_str())));
}

// B6
#[tokio::test]
async fn a_free_plan_order_creates_without_archiving_whatever_the_behavior() {
    let (app, p, x, _) = setup().await;
    created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    for (i, c) in ["REPLACE", "RAISE_ERROR", "RAISE_ERROR_ON_AUTH_WITHDRAWAL"]
        .iter()
        .enumerate()
    {
        let order = i as i64 + 2;
        let body = with(
            plan(&p, &format!("s{order}"), &format!("M{order}"), &x, order),
            "conflict_behavior",
            json!(c),
        );
        let (s, b) = put_plan(&app, &body).await;
        assert_eq!((s, b["outcome"].as_str()), (201, Some("created")), "{b}");
        assert_eq!(b["archived_patient_plan_ids"], json!([]));
    }
    assert_eq!(plans_of(&app, &p, true).await.len(), 4);
}

// B7
#[tokio::test]
async fn replace_is_the_default_and_archives_the_occupant() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let (s, b) = put_plan(&app, &plan(&p, "b", "M2", &x, 1)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["outcome"], "replaced");
    assert_eq!(b["archived_patient_plan_ids"], json!([a]));
    assert_eq!(b["withdrawn_authorization_ids"], json!([]));
    let new = b["patient_plan_id"].as_str().unwrap();
    let old = get_plan(&app, &a).await;
    assert_eq!(old["status"], "archived");
    assert_eq!(old["archived_reason"], "replaced");
    assert_eq!(old["replaced_by"], new);
    assert!(old["archived_at"].is_string());
    let active = plans_of(&app, &p, false).await;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["id"], new);
    let trail = app.store.audit_trail("patient_plan", &a).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "patient_plan.archived"));
}

#[tokio::test]
async fn the_server_default_conflict_behavior_is_configurable() {
    let app = spawn_app_with(ApiConfig {
        default_conflict_behavior: ConflictBehavior::RaiseError,
        ..ApiConfig::default()
    })
    .await;
    let p = new_patient(&app, "e1").await;
    let x = new_payor(&app, "X").await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let (s, b) = put_plan(&app, &plan(&p, "b", "M2", &x, 1)).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["conflicting_patient_plan_id"], a.as_str());
    let body = with(
        plan(&p, "b", "M2", &x, 1),
        "conflict_behavior",
        json!("REPLACE"),
    );
    assert_eq!(put_plan(&app, &body).await.0, 201);
}

// B8
#[tokio::test]
async fn raise_error_answers_409_and_changes_nothing() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let before = plans_of(&app, &p, true).await;
    for key in ["conflict_behavior", "conflict_strategy"] {
        let body = with(plan(&p, "b", "M2", &x, 1), key, json!("RAISE_ERROR"));
        let (s, b) = put_plan(&app, &body).await;
        assert_eq!(s, 409, "{b}");
        assert_eq!(b["error"], "conflict");
        assert_eq!(b["conflicting_patient_plan_id"], a.as_str());
        assert!(!b["message"].as_str().unwrap().contains("M2"));
    }
    assert_eq!(plans_of(&app, &p, true).await, before);
}

// B9 (b); (a) needs authorizations linked to plans: the e2e tests and the domain's
// `taken_plan_order_follows_the_conflict_behavior` cover it.
#[tokio::test]
async fn raise_error_on_auth_withdrawal_replaces_when_nothing_is_in_progress() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let body = with(
        plan(&p, "b", "M2", &x, 1),
        "conflict_behavior",
        json!("RAISE_ERROR_ON_AUTH_WITHDRAWAL"),
    );
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!((s, b["outcome"].as_str()), (201, Some("replaced")), "{b}");
    assert_eq!(b["archived_patient_plan_ids"], json!([a]));
}

// B10
#[tokio::test]
async fn dedup_wins_over_conflict() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    for (source, order) in [("z", 1), ("z2", 2)] {
        let body = with(
            plan(&p, source, "M1", &x, order),
            "conflict_behavior",
            json!("RAISE_ERROR"),
        );
        let (s, b) = put_plan(&app, &body).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["patient_plan_id"], a.as_str());
        assert_eq!(b["outcome"], "deduplicated");
        assert_eq!(get_plan(&app, &a).await["source_id"], source);
    }
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

// B11
#[tokio::test]
async fn repeating_a_put_returns_the_same_plan_through_the_source_id() {
    let (app, p, x, _) = setup().await;
    let body = plan(&p, "s1", "M1", &x, 1);
    let a = created(&app, &body).await;
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!(s, 200);
    assert_eq!(b["patient_plan_id"], a.as_str());
    assert_eq!(b["outcome"], "source_id_match");
    assert_eq!(b["ignored_fields"], json!([]));
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

#[tokio::test]
async fn fifty_concurrent_identical_puts_leave_one_plan() {
    let (app, p, x, _) = setup().await;
    let body = plan(&p, "s1", "M1", &x, 1);
    let results = futures::future::join_all((0..50).map(|_| put_plan(&app, &body))).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let matched = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, matched), (1, 49), "{results:?}");
    let ids: std::collections::HashSet<_> = results
        .iter()
        .map(|(_, b)| b["patient_plan_id"].clone())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

// B12: POST is not part of this API; what it relies on, the database refusing a second
// active plan at one plan order, is tested on the store.
#[tokio::test]
async fn the_database_refuses_a_second_active_plan_at_one_plan_order() {
    let (app, p, x, _) = setup().await;
    created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let put = refbridge_domain::plan::PlanPut::parse(&plan(&p, "b", "M2", &x, 1)).expect("valid");
    let err = app
        .store
        .insert_patient_plan(put.patient_id, Some(&put.source_id), &put.fields, "test")
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

// B13
#[tokio::test]
async fn patch_changes_only_the_source_id() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let b2 = created(&app, &plan(&p, "b", "M2", &x, 2)).await;
    let path = format!("/v1/patient-plans/{a}");
    let (s, _) = send(&app, "PATCH", &path, Some(&json!({"source_id": "a2"}))).await;
    assert_eq!(s, 204);
    assert_eq!(get_plan(&app, &a).await["source_id"], "a2");
    let (s, b) = send(
        &app,
        "PATCH",
        &path,
        Some(&json!({"source_id": "a3", "member_number": "M9"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["details"][0]["path"], "member_number");
    let (s, b) = send(&app, "PATCH", &path, Some(&json!({"source_id": "b"}))).await;
    assert_eq!(s, 409, "{b}");
    let (s, _) = send(&app, "PATCH", &path, Some(&json!({"source_id": null}))).await;
    assert_eq!(s, 204);
    assert_eq!(get_plan(&app, &a).await["source_id"], Value::Null);
    let nobody = "0190a1b2-0000-7000-8000-000000000999";
    let (s, _) = send(
        &app,
        "PATCH",
        &format!("/v1/patient-plans/{nobody}"),
        Some(&json!({"source_id": "x"})),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(get_plan(&app, &b2).await["source_id"], "b");
}

#[tokio::test]
async fn delete_archives_idempotently_and_the_list_hides_archived_plans_unless_asked() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let path = format!("/v1/patient-plans/{a}");
    assert_eq!(send(&app, "DELETE", &path, None).await.0, 204);
    let got = get_plan(&app, &a).await;
    assert_eq!(got["status"], "archived");
    assert_eq!(got["archived_reason"], "deleted");
    let at = got["archived_at"].clone();
    assert!(at.is_string());
    assert_eq!(send(&app, "DELETE", &path, None).await.0, 204);
    assert_eq!(get_plan(&app, &a).await["archived_at"], at);
    assert!(plans_of(&app, &p, false).await.is_empty());
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
    let nobody = "0190a1b2-0000-7000-8000-000000000999";
    let (s, _) = send(&app, "DELETE", &format!("/v1/patient-plans/{nobody}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = send(&app, "GET", "/v1/patient-plans/not-a-uuid", None).await;
    assert_eq!(s, 400);
    let (s, _) = send(
        &app,
        "GET",
        &format!("/v1/patients/{nobody}/patient-plans"),
        None,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn archived_plans_take_no_part_in_matching() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    send(&app, "DELETE", &format!("/v1/patient-plans/{a}"), None).await;
    // Same source_id: no match, a new plan.
    let body = with(
        plan(&p, "a", "M1", &x, 1),
        "conflict_behavior",
        json!("RAISE_ERROR"),
    );
    let (s, b) = put_plan(&app, &body).await;
    assert_eq!((s, b["outcome"].as_str()), (201, Some("created")), "{b}");
    assert_ne!(b["patient_plan_id"], a.as_str());
    assert_eq!(b["archived_patient_plan_ids"], json!([]));
    assert_eq!(get_plan(&app, &a).await["source_id"], "a");
}

#[tokio::test]
async fn dry_run_answers_the_same_and_changes_nothing() {
    let (app, p, x, _) = setup().await;
    let a = created(&app, &plan(&p, "a", "M1", &x, 1)).await;
    let before = plans_of(&app, &p, true).await;
    let trail = app.store.audit_trail("patient_plan", &a).await.unwrap();
    let url = "/v1/patient-plans?dry_run=true";
    let (s, b) = send(&app, "PUT", url, Some(&plan(&p, "b", "M2", &x, 1))).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["outcome"], "replaced");
    assert_eq!(b["dry_run"], true);
    assert_eq!(b["archived_patient_plan_ids"], json!([a]));
    assert_eq!(b["patient_plan_id"], Value::Null);
    let (s, b) = send(&app, "PUT", url, Some(&plan(&p, "z", "M1", &x, 2))).await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("deduplicated")));
    let body = with(
        plan(&p, "c", "M3", &x, 1),
        "conflict_behavior",
        json!("RAISE_ERROR"),
    );
    let (s, _) = send(&app, "PUT", url, Some(&body)).await;
    assert_eq!(s, 409);
    assert_eq!(plans_of(&app, &p, true).await, before);
    assert_eq!(
        app.store.audit_trail("patient_plan", &a).await.unwrap(),
        trail
    );
    let (s, b) = send(&app, "PUT", "/v1/patient-plans?dry_run=maybe", Some(&body)).await;
    assert_eq!(
        (s, b["details"][0]["path"].as_str()),
        (400, Some("dry_run"))
    );
}

#[tokio::test]
async fn plans_need_the_reviewer_role() {
    let (app, p, x, _) = setup().await;
    let res = app
        .client
        .put(format!("{}/v1/patient-plans", app.base))
        .bearer_auth(&app.intake_token)
        .json(&plan(&p, "a", "M1", &x, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .put(format!("{}/v1/patient-plans", app.base))
        .bearer_auth(&app.admin_token)
        .json(&plan(&p, "a", "M1", &x, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

// Payors
#[tokio::test]
async fn payors_map_to_funders_by_normalised_name() {
    let app = spawn_app().await;
    let (s, b) = send(
        &app,
        "PUT",
        "/v1/payors",
        Some(&json!({"name": "Blue Cross"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["unmapped"], true);
    let id = b["id"].clone();
    let (s, b) = send(
        &app,
        "PUT",
        "/v1/payors",
        Some(&json!({"name": "BLUE  cross", "accloud_funder_id": 42,
                     "accloud_funder_name": "Blue Cross of Colorado"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id"], id);
    assert_eq!(b["unmapped"], false);
    assert_eq!(b["accloud_funder_id"], 42);
    let (s, b) = send(
        &app,
        "GET",
        &format!("/v1/payors/{}", id.as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((s, b["name"].as_str()), (200, Some("BLUE  cross")));
    let (_, b) = send(&app, "GET", "/v1/payors?unmapped=true", None).await;
    assert_eq!(b["items"], json!([]));
    let (s, b) = send(&app, "PUT", "/v1/payors", Some(&json!({"name": ""}))).await;
    assert_eq!((s, b["details"][0]["path"].as_str()), (400, Some("name")));
    let nobody = "0190a1b2-0000-7000-8000-000000000999";
    assert_eq!(
        send(&app, "GET", &format!("/v1/payors/{nobody}"), None)
            .await
            .0,
        404
    );
}

// Intake feeds plans
#[tokio::test]
async fn intake_records_the_insurances_as_plans_with_unmapped_payors() {
    let app = spawn_app().await;
    let (s, b) = status_json(app.post_referral(&example()).await).await;
    assert_eq!(s, 200, "{b}");
    let d = app
        .get_json(&format!(
            "/v1/referral-requests/{}",
            b["request_id"].as_str().unwrap()
        ))
        .await;
    let patient = d["patient"]["id"].as_str().unwrap().to_owned();
    let plans = plans_of(&app, &patient, true).await;
    assert_eq!(plans.len(), 2, "{plans:?}");
    assert_eq!(plans[0]["plan_order_number"], 1);
    assert_eq!(plans[0]["member_number"], "1111111");
    assert_eq!(plans[0]["payor_name"], "ABC Insurers");
    assert_eq!(plans[0]["group_number"], "AB Insurers grop");
    assert_eq!(
        plans[0]["source_id"],
        "alayacare:91c79089-a3ca-4cca-acf4-52fc1f1302c6:1094:1111111"
    );
    assert_eq!(plans[1]["plan_order_number"], 2);
    assert_eq!(plans[1]["payor_name"], "XYZ Insurers");
    let (_, payors) = send(&app, "GET", "/v1/payors?unmapped=true", None).await;
    let names: Vec<_> = payors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ABC Insurers", "XYZ Insurers"]);

    // Another referral for the same client with the same insurances adds no plan; a known
    // payor name in another spelling is matched.
    new_payor(&app, "abc  INSURERS").await;
    let mut doc = example();
    doc["request_id"] = json!("0e1d5e34-63d7-4bb2-8e22-9376943ab570");
    let (s, b) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(s, 200, "{b}");
    let ids = |v: &[Value]| -> Vec<(Value, Value)> {
        v.iter()
            .map(|p| (p["id"].clone(), p["payor_entity_id"].clone()))
            .collect()
    };
    assert_eq!(ids(&plans_of(&app, &patient, true).await), ids(&plans));
    let (_, payors) = send(&app, "GET", "/v1/payors", None).await;
    assert_eq!(payors["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn intake_replaces_a_plan_the_caller_replaced_and_warns_on_nothing_else() {
    let app = spawn_app().await;
    status_json(app.post_referral(&example()).await).await;
    let mut doc = example();
    doc["request_id"] = json!("0e1d5e34-63d7-4bb2-8e22-9376943ab571");
    for f in doc["form_data"]["fields"].as_array_mut().unwrap() {
        if f["field_label"] == "Primary subscriber ID" {
            f["field_value"] = json!("3333333");
        }
    }
    let (s, b) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        !b["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "plan_conflict")
    );
    let d = app
        .get_json("/v1/referral-requests/0e1d5e34-63d7-4bb2-8e22-9376943ab571")
        .await;
    let patient = d["patient"]["id"].as_str().unwrap();
    let active = plans_of(&app, patient, false).await;
    assert_eq!(active.len(), 2);
    assert_eq!(active[0]["member_number"], "3333333");
    assert_eq!(plans_of(&app, patient, true).await.len(), 3);
}
