//! ACCloud alayamarket outbox (`/api/v1/alayamarket/outbox`): referrals
//! from a service, revisions, cancel, list and get, the trusted network, and
//! client attachments.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Multipart, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::{CreateLag, Shared};
use crate::error::{ApiError, ApiResult};
use crate::faults::Family;
use crate::routes::authorizations::authorization_json;
use crate::state::{AttachmentRecord, ReferralRecord, Store, StoredFile, is_visible};
use crate::util::{Fields, Query, json_object, paginate, query_int};

const FAMILY: Family = Family::Outbox;

/// Documented upload limit: 50 MB (52,428,800 bytes, the Marketplace
/// `size_in_bytes` maximum).
pub(crate) const MAX_ATTACHMENT_BYTES: usize = 52_428_800;

const REASON_CODES: &[&str] = &[
    "datetime_change",
    "client_request",
    "client_hospitalization",
    "client_passed_away",
    "client_refused_service",
    "processing_error",
    "other",
];

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::outbox(StatusCode::BAD_REQUEST, message)
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::outbox(StatusCode::CONFLICT, message)
}

fn referral_not_found(id: impl std::fmt::Display) -> ApiError {
    ApiError::outbox(StatusCode::NOT_FOUND, format!("Referral {id} not found"))
}

fn service_not_found(id: impl std::fmt::Display) -> ApiError {
    ApiError::outbox(StatusCode::NOT_FOUND, format!("Service {id} not found"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn date_time(f: &Fields<'_>, name: &str) -> ApiResult<DateTime<Utc>> {
    let s = f.req_str(name)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| bad(format!("'{s}' is not a 'date-time'")))
}

fn uuid_field(f: &Fields<'_>, name: &str) -> ApiResult<Option<Uuid>> {
    match f.str(name)? {
        None => Ok(None),
        Some(s) => Uuid::parse_str(&s)
            .map(Some)
            .map_err(|_| bad(format!("'{s}' is not a 'uuid'"))),
    }
}

fn case_manager(f: &Fields<'_>) -> ApiResult<Option<Value>> {
    let Some(cm) = f.object("case_manager")? else {
        return Ok(None);
    };
    let cf = Fields::nested(cm, FAMILY, "case_manager.");
    let mut out = Map::new();
    for name in ["name", "phone_number", "fax_number", "email"] {
        if let Some(v) = cf.str(name)? {
            out.insert(name.to_owned(), Value::String(v));
        }
    }
    Ok(Some(Value::Object(out)))
}

/// Checks `authorization_ids` against the service, its client and the
/// referral dates (compared in the client's time zone).
fn check_authorizations(
    store: &Store,
    service_id: i64,
    ids: &[i64],
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
) -> ApiResult<()> {
    let service = store
        .services
        .get(&service_id)
        .ok_or_else(|| service_not_found(service_id))?;
    let client = store
        .clients
        .get(&service.client_id)
        .ok_or_else(|| bad(format!("Client of service {service_id} not found")))?;
    let tz = store.client_timezone(client);
    let start = start_at.with_timezone(&tz).date_naive();
    let end = end_at.with_timezone(&tz).date_naive();
    for id in ids {
        let a = store
            .authorizations
            .get(id)
            .filter(|a| !a.deleted)
            .ok_or_else(|| bad(format!("Authorization {id} not found")))?;
        if a.client_id != service.client_id || !a.service_ids.contains(&service_id) {
            return Err(bad(format!(
                "Authorization {id} is not linked to service {service_id}"
            )));
        }
        if a.start_at != start || a.end_at != Some(end) {
            return Err(bad(format!(
                "Authorization {id} dates ({} to {}) must match the referral dates ({start} to {end}) in the client's time zone {}",
                a.start_at,
                a.end_at
                    .map_or_else(|| "none".to_owned(), |d| d.to_string()),
                tz.name(),
            )));
        }
    }
    Ok(())
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// What ACCloud aggregates from HQ data when a referral (revision) is made.
fn aggregate(store: &mut Store, service_id: i64, authorization_ids: &[i64]) -> ApiResult<Value> {
    let service = store
        .services
        .get(&service_id)
        .cloned()
        .ok_or_else(|| service_not_found(service_id))?;
    let client = store
        .clients
        .get(&service.client_id)
        .cloned()
        .ok_or_else(|| bad(format!("Client of service {service_id} not found")))?;
    let client_uuid = store.marketplace_id('c', client.id);
    let service_uuid = store.marketplace_id('s', service.id);
    let d = &client.demographics;
    let location = d.get("location");
    let coord = |k: &str| {
        location
            .and_then(|l| l.get(k))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    let address = json!({
        "name": "Home",
        "address": text(d.get("address")),
        "address_suite": text(d.get("address_suite")),
        "city": text(d.get("city")),
        "state": text(d.get("state")),
        "zip": text(d.get("zip")),
        "country": text(d.get("country")),
        "latitude": coord("lat"),
        "longitude": coord("lon"),
    });
    let mut demographics = Map::new();
    demographics.insert("first_name".into(), json!(text(d.get("first_name"))));
    demographics.insert("last_name".into(), json!(text(d.get("last_name"))));
    for (from, to) in [
        ("email", "email"),
        ("phone_main", "phone_number"),
        ("gender", "gender"),
    ] {
        if let Some(v) = d
            .get(from)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            demographics.insert(to.into(), json!(v));
        }
    }
    if let Some(b) = d
        .get("birthday")
        .and_then(Value::as_str)
        .filter(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
    {
        demographics.insert("date_of_birth".into(), json!(b));
    }
    if let Some(l) = &client.language {
        demographics.insert("language".into(), json!(l));
    }
    let custom_fields: Vec<Value> = service
        .profile
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({"name": k, "type": "string", "value": value})
        })
        .collect();
    let mut service_json = json!({
        "id": service_uuid,
        "outbox_id": service.id.to_string(),
        "name": service.name,
        "use_client_address": service.use_client_address.unwrap_or(true),
        "address": address,
        "custom_fields": custom_fields,
        "skills": [],
    });
    if let Some(obj) = service_json.as_object_mut() {
        if let Some(i) = &service.service_instructions {
            obj.insert("instructions".into(), json!(i));
        }
        if let Some(n) = &service.notes {
            obj.insert("notes".into(), json!(n));
        }
    }
    let authorizations: Vec<Value> = authorization_ids
        .iter()
        .filter_map(|id| store.authorizations.get(id))
        .map(|a| {
            let mut v = authorization_json(a, false);
            if let Some(obj) = v.as_object_mut() {
                // Marketplace's AuthorizationCore names the dates start_date/end_date.
                if let Some(s) = obj.remove("start_at") {
                    obj.insert("start_date".into(), s);
                }
                if let Some(e) = obj.remove("end_at") {
                    obj.insert("end_date".into(), e);
                }
                for k in [
                    "client_id",
                    "case_manager_name",
                    "case_manager_phone",
                    "case_manager_fax",
                    "case_manager_email",
                    "methodology",
                    "payor_id",
                    "payor_id_type",
                    "is_over_utilized",
                    "include_non_visit_items",
                ] {
                    obj.remove(k);
                }
            }
            v
        })
        .collect();
    let mut alayacare = Map::new();
    if let Some(first) = authorizations.first() {
        alayacare.insert("authorization".into(), first.clone());
    }
    alayacare.insert("authorizations".into(), Value::Array(authorizations));
    Ok(json!({
        "client": {
            "id": client_uuid,
            "outbox_id": client.id.to_string(),
            "address": address,
            "demographics": demographics,
            "contacts": [],
            "allergies": [],
            "risks": [],
            "diagnoses": [],
            "surgeries": [],
            "custom_fields": [],
        },
        "service": service_json,
        "alayacare": alayacare,
    }))
}

fn core_json(r: &ReferralRecord) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("sequence_id".into(), json!(r.sequence_id));
    m.insert("care_type".into(), json!(r.care_type));
    m.insert("referral_type".into(), json!(r.referral_type));
    m.insert("status".into(), json!(r.status));
    m.insert("start_at".into(), json!(rfc3339(r.start_at)));
    m.insert("end_at".into(), json!(rfc3339(r.end_at)));
    m.insert("created_at".into(), json!(rfc3339(r.created_at)));
    if let Some(u) = r.updated_at {
        m.insert("updated_at".into(), json!(rfc3339(u)));
    }
    if let Some(c) = &r.comment {
        m.insert("comment".into(), json!(c));
    }
    m.insert("demand_labels".into(), json!([]));
    if let Some(code) = &r.reason_code {
        m.insert("reason_code".into(), json!(code));
    }
    if let Some(c) = &r.cancellation_comment {
        m.insert("cancellation_comment".into(), json!(c));
    }
    Value::Object(m)
}

fn revision_json(r: &ReferralRecord) -> Value {
    let mut m = Map::new();
    m.insert("revision_group_id".into(), json!(r.revision_group_id));
    m.insert("revision_number".into(), json!(r.revision_number));
    if let Some(reasons) = &r.revision_reasons {
        m.insert("revision_reasons".into(), json!(reasons));
    }
    if let Some(c) = &r.revision_comment {
        m.insert("revision_comment".into(), json!(c));
    }
    m.insert("is_latest_revision".into(), json!(r.is_latest_revision));
    Value::Object(m)
}

fn supply_json(store: &Store, id: Uuid) -> Value {
    let name = store
        .seed
        .trusted_network
        .iter()
        .find(|s| s.id == id)
        .map_or_else(String::new, |s| s.name.clone());
    json!({"id": id, "name": name})
}

fn detail_json(store: &Store, r: &ReferralRecord) -> Value {
    let mut m = Map::new();
    m.insert("referral".into(), core_json(r));
    m.insert("supply".into(), supply_json(store, r.supply_persona_id));
    m.insert("price".into(), json!({"rate": 0.0, "unit": "per_visit"}));
    for key in ["client", "service", "alayacare"] {
        if let Some(v) = r.snapshot.get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    if let Some(cm) = &r.case_manager {
        m.insert("case_manager".into(), cm.clone());
    }
    m.insert("visits".into(), json!([]));
    m.insert("revision".into(), revision_json(r));
    Value::Object(m)
}

fn collection_json(store: &Store, r: &ReferralRecord) -> Value {
    let client = r.snapshot.get("client");
    let service = r.snapshot.get("service");
    let field =
        |v: Option<&Value>, k: &str| v.and_then(|x| x.get(k)).cloned().unwrap_or(Value::Null);
    let demographics = client.and_then(|c| c.get("demographics"));
    json!({
        "referral": core_json(r),
        "supply": supply_json(store, r.supply_persona_id),
        "alayacare": {"has_authorization": !r.authorization_ids.is_empty()},
        "client": {
            "id": field(client, "id"),
            "outbox_id": field(client, "outbox_id"),
            "demographics": {
                "first_name": field(demographics, "first_name"),
                "last_name": field(demographics, "last_name"),
            },
        },
        "service": {
            "id": field(service, "id"),
            "outbox_id": field(service, "outbox_id"),
            "name": field(service, "name"),
        },
        "revision": revision_json(r),
    })
}

fn parse_service_path(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| service_not_found(raw))
}

pub(crate) async fn create_referral(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    lag: Option<Extension<CreateLag>>,
    body: Bytes,
) -> ApiResult<Response> {
    let service_id = parse_service_path(&raw)?;
    let obj = json_object(&body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    for name in [
        "care_type",
        "referral_type",
        "start_at",
        "end_at",
        "supply_persona_id",
    ] {
        if !f.has(name) {
            return Err(f.missing(name));
        }
    }
    let care_type = f
        .enum_str("care_type", &["psw", "nursing"])?
        .ok_or_else(|| f.missing("care_type"))?;
    let referral_type = f
        .enum_str("referral_type", &["visit", "service"])?
        .ok_or_else(|| f.missing("referral_type"))?;
    let start_at = date_time(&f, "start_at")?;
    let end_at = date_time(&f, "end_at")?;
    let supply =
        uuid_field(&f, "supply_persona_id")?.ok_or_else(|| f.missing("supply_persona_id"))?;
    let authorization_ids = f.int_array("authorization_ids")?.unwrap_or_default();
    let comment = f.str("comment")?;
    let case_manager = case_manager(&f)?;
    if end_at < start_at {
        return Err(bad("'end_at' must be the same or after 'start_at'"));
    }

    let mut store = shared.store();
    let client_id = store
        .services
        .get(&service_id)
        .map(|s| s.client_id)
        .ok_or_else(|| service_not_found(service_id))?;
    if !store.seed.trusted_network.iter().any(|s| s.id == supply) {
        return Err(bad(format!(
            "Supply organization {supply} is not in the trusted network"
        )));
    }
    check_authorizations(&store, service_id, &authorization_ids, start_at, end_at)?;
    let snapshot = aggregate(&mut store, service_id, &authorization_ids)?;
    let sequence_id = match store.sequences.get(&(client_id, service_id, supply)) {
        Some(s) => *s,
        None => {
            let s = store.new_uuid();
            store.sequences.insert((client_id, service_id, supply), s);
            s
        }
    };
    let id = store.new_uuid();
    let revision_group_id = store.new_uuid();
    let record = ReferralRecord {
        id,
        sequence_id,
        revision_group_id,
        revision_number: 1,
        is_latest_revision: true,
        revision_reasons: None,
        revision_comment: None,
        service_id,
        client_id,
        supply_persona_id: supply,
        care_type,
        referral_type,
        status: "assigned".to_owned(),
        start_at,
        end_at,
        comment,
        case_manager,
        authorization_ids,
        reason_code: None,
        cancellation_comment: None,
        snapshot,
        created_at: Utc::now(),
        updated_at: None,
        visible_at: shared.visible_at(lag.map(|e| e.0)),
    };
    let body = detail_json(&store, &record);
    store.insert_referral(record);
    drop(store);
    tracing::debug!(referral_id = %id, %revision_group_id, service_id, "referral created");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn parse_referral_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| referral_not_found(raw))
}

/// The referral must be the latest revision and live.
fn check_latest_live(r: &ReferralRecord, action: &str) -> ApiResult<()> {
    if !r.is_latest_revision {
        return Err(conflict(format!(
            "Referral {} is not the latest revision and cannot be {action}",
            r.id
        )));
    }
    if r.status != "assigned" && r.status != "processed" {
        return Err(conflict(format!(
            "Referral {} is {} and cannot be {action}",
            r.id, r.status
        )));
    }
    Ok(())
}

pub(crate) async fn update_referral(
    State(shared): State<Arc<Shared>>,
    Path((raw_service, raw_referral)): Path<(String, String)>,
    lag: Option<Extension<CreateLag>>,
    body: Bytes,
) -> ApiResult<Response> {
    let service_id = parse_service_path(&raw_service)?;
    let referral_id = parse_referral_id(&raw_referral)?;
    let obj = json_object(&body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    for name in ["start_at", "end_at", "revision"] {
        if !f.has(name) {
            return Err(f.missing(name));
        }
    }
    let start_at = date_time(&f, "start_at")?;
    let end_at = date_time(&f, "end_at")?;
    let revision = f.object("revision")?.ok_or_else(|| f.missing("revision"))?;
    let rf = Fields::nested(revision, FAMILY, "revision.");
    let reasons = rf.array("reasons")?.ok_or_else(|| rf.missing("reasons"))?;
    if reasons.is_empty() {
        return Err(bad(
            "[] is too short: 'revision.reasons' needs at least one reason",
        ));
    }
    let reasons = reasons
        .iter()
        .map(|r| {
            r.as_str()
                .map(str::to_owned)
                .ok_or_else(|| rf.type_error("reasons", "array of strings"))
        })
        .collect::<ApiResult<Vec<String>>>()?;
    let revision_comment = rf.str("comment")?;
    let authorization_ids = f.int_array("authorization_ids")?.unwrap_or_default();
    let comment = f.str("comment")?;
    let case_manager = case_manager(&f)?;
    let supply = uuid_field(&f, "supply_persona_id")?;
    if end_at < start_at {
        return Err(bad("'end_at' must be the same or after 'start_at'"));
    }

    let mut store = shared.store();
    if !store.services.contains_key(&service_id) {
        return Err(service_not_found(service_id));
    }
    let previous = store
        .referrals
        .get(&referral_id)
        .cloned()
        .ok_or_else(|| referral_not_found(referral_id))?;
    if previous.service_id != service_id {
        return Err(bad(format!(
            "Referral {referral_id} does not belong to service {service_id}"
        )));
    }
    check_latest_live(&previous, "updated")?;
    if previous.referral_type != "service" {
        return Err(bad("Only referrals of type 'service' can be updated"));
    }
    if supply.is_some_and(|s| s != previous.supply_persona_id) {
        return Err(bad("'supply_persona_id' cannot be changed by an update"));
    }
    check_authorizations(&store, service_id, &authorization_ids, start_at, end_at)?;
    let snapshot = aggregate(&mut store, service_id, &authorization_ids)?;
    let now = Utc::now();
    let id = store.new_uuid();
    if let Some(old) = store.referrals.get_mut(&referral_id) {
        old.is_latest_revision = false;
        old.updated_at = Some(now);
    }
    let record = ReferralRecord {
        id,
        revision_number: previous.revision_number + 1,
        is_latest_revision: true,
        revision_reasons: Some(reasons),
        revision_comment,
        status: "assigned".to_owned(),
        start_at,
        end_at,
        comment,
        case_manager,
        authorization_ids,
        reason_code: None,
        cancellation_comment: None,
        snapshot,
        created_at: now,
        updated_at: None,
        visible_at: shared.visible_at(lag.map(|e| e.0)),
        ..previous
    };
    let body = detail_json(&store, &record);
    let group = record.revision_group_id;
    let number = record.revision_number;
    store.insert_referral(record);
    drop(store);
    tracing::debug!(referral_id = %id, revision_group_id = %group, revision_number = number, "referral revised");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(crate) async fn cancel_referral(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let referral_id = parse_referral_id(&raw)?;
    let obj = json_object(&body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    let reason = f
        .enum_str("reason_code", REASON_CODES)?
        .ok_or_else(|| f.missing("reason_code"))?;
    let comment = f.str("comment")?;
    if comment.as_ref().is_some_and(|c| c.chars().count() > 1000) {
        return Err(bad("'comment' is too long (maximum 1000 characters)"));
    }
    let mut store = shared.store();
    let r = store
        .referrals
        .get_mut(&referral_id)
        .ok_or_else(|| referral_not_found(referral_id))?;
    check_latest_live(r, "cancelled")?;
    r.status = "cancelled".to_owned();
    r.reason_code = Some(reason);
    r.cancellation_comment = comment;
    r.updated_at = Some(Utc::now());
    drop(store);
    tracing::debug!(referral_id = %referral_id, "referral cancelled");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn get_referral(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let referral_id = parse_referral_id(&raw)?;
    let store = shared.store();
    let r = store
        .referrals
        .get(&referral_id)
        .filter(|r| is_visible(r.visible_at, Instant::now()))
        .ok_or_else(|| referral_not_found(referral_id))?;
    Ok(Json(detail_json(&store, r)).into_response())
}

fn enum_query<'q>(q: &'q Query, key: &str, allowed: &[&str]) -> ApiResult<Option<&'q str>> {
    match q.get(key) {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v)),
        Some(v) => Err(bad(format!("'{v}' is not one of {allowed:?}"))),
    }
}

fn uuid_query(q: &Query, key: &str) -> ApiResult<Option<Uuid>> {
    q.get(key)
        .map(|v| Uuid::parse_str(v).map_err(|_| bad(format!("'{v}' is not a 'uuid'"))))
        .transpose()
}

fn page_core(items: Vec<Value>, page: i64, per_page: i64) -> Response {
    let total_items = items.len();
    let (items, total_pages) = paginate(items, page as usize, per_page as usize);
    Json(json!({
        "page": page,
        "items_per_page": per_page,
        "total_items": total_items,
        "total_pages": total_pages,
        "items": items,
    }))
    .into_response()
}

pub(crate) async fn list_referrals(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let revisions =
        enum_query(&q, "revisions", &["all", "latest", "archived"])?.unwrap_or("latest");
    let status = enum_query(&q, "status", &["assigned", "processed", "cancelled"])?;
    let care_type = enum_query(&q, "care_type", &["psw", "nursing"])?;
    let referral_type = enum_query(&q, "referral_type", &["visit", "service"])?;
    let sort_by = enum_query(&q, "sort_by", &["last_modified", "revision_number"])?
        .unwrap_or("last_modified");
    let descending = enum_query(&q, "sort_order", &["asc", "desc"])?.unwrap_or("desc") == "desc";
    let group = uuid_query(&q, "revision_group_id")?;
    let supply = uuid_query(&q, "supply_persona_id")?;
    let sequence = uuid_query(&q, "sequence_id")?;
    let shift = uuid_query(&q, "shift_id")?;
    let offer = uuid_query(&q, "offer_id")?;
    let client_outbox_id = q.get("client_outbox_id");
    let demand_label = q.get("demand_label");
    let has_auth = match q.get("has_alayacare_authorization") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => return Err(bad(format!("'{v}' is not of type 'boolean'"))),
    };
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let per_page = query_int(&q, "items_per_page", 100, 1, FAMILY)?;

    let now = Instant::now();
    let store = shared.store();
    let candidates: Vec<&ReferralRecord> = match group {
        Some(g) => store
            .revision_groups
            .get(&g)
            .into_iter()
            .flatten()
            .filter_map(|id| store.referrals.get(id))
            .collect(),
        None => store
            .referral_order
            .iter()
            .filter_map(|id| store.referrals.get(id))
            .collect(),
    };
    let mut selected: Vec<&ReferralRecord> = candidates
        .into_iter()
        .filter(|r| is_visible(r.visible_at, now))
        .filter(|r| match revisions {
            "latest" => r.is_latest_revision,
            "archived" => !r.is_latest_revision,
            _ => true,
        })
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| care_type.is_none_or(|c| r.care_type == c))
        .filter(|r| referral_type.is_none_or(|t| r.referral_type == t))
        .filter(|r| supply.is_none_or(|s| r.supply_persona_id == s))
        .filter(|r| sequence.is_none_or(|s| r.sequence_id == s))
        .filter(|r| client_outbox_id.is_none_or(|c| r.client_id.to_string() == c))
        .filter(|r| has_auth.is_none_or(|h| h != r.authorization_ids.is_empty()))
        // Referrals from a service carry no shift, offer or demand label.
        .filter(|_| shift.is_none() && offer.is_none() && demand_label.is_none())
        .collect();
    match sort_by {
        "revision_number" => selected.sort_by_key(|r| r.revision_number),
        _ => selected.sort_by_key(|r| r.last_modified()),
    }
    if descending {
        selected.reverse();
    }
    let items: Vec<Value> = selected
        .into_iter()
        .map(|r| collection_json(&store, r))
        .collect();
    drop(store);
    Ok(page_core(items, page, per_page))
}

pub(crate) async fn trusted_network(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    enum_query(&q, "sort_by", &["name"])?;
    let descending = enum_query(&q, "sort_order", &["asc", "desc"])?.unwrap_or("asc") == "desc";
    let ids = q
        .all("supply_persona_id")
        .into_iter()
        .map(|v| Uuid::parse_str(v).map_err(|_| bad(format!("'{v}' is not a 'uuid'"))))
        .collect::<ApiResult<Vec<Uuid>>>()?;
    let name = q.get("name").map(str::to_lowercase);
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let per_page = query_int(&q, "items_per_page", 100, 1, FAMILY)?;
    let store = shared.store();
    let mut suppliers: Vec<_> = store
        .seed
        .trusted_network
        .iter()
        .filter(|s| ids.is_empty() || ids.contains(&s.id))
        .filter(|s| {
            name.as_ref()
                .is_none_or(|n| s.name.to_lowercase().contains(n))
        })
        .collect();
    suppliers.sort_by_key(|s| s.name.to_lowercase());
    if descending {
        suppliers.reverse();
    }
    let items = suppliers
        .into_iter()
        .map(|s| json!({"id": s.id, "name": s.name}))
        .collect();
    drop(store);
    Ok(page_core(items, page, per_page))
}

/// Basename of an uploaded file name, without path separators.
fn clean_filename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    (!base.is_empty() && base != "." && base != "..").then(|| base.to_owned())
}

/// `name.ext`, or `name (n).ext` when taken.
fn free_name(
    files: Option<&std::collections::BTreeMap<String, StoredFile>>,
    folder: &str,
    name: &str,
) -> String {
    let taken =
        |candidate: &str| files.is_some_and(|f| f.contains_key(&format!("{folder}/{candidate}")));
    if !taken(name) {
        return name.to_owned();
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..)
        .map(|n| format!("{stem} ({n}){ext}"))
        .find(|c| !taken(c))
        .unwrap_or_else(|| name.to_owned())
}

pub(crate) async fn upload_attachment(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    lag: Option<Extension<CreateLag>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let referral_id = parse_referral_id(&raw)?;
    if !shared.store().referrals.contains_key(&referral_id) {
        return Err(referral_not_found(referral_id));
    }
    let mut multipart = multipart
        .map_err(|_| bad("Request body must be multipart/form-data with a 'file' part"))?;
    let mut upload: Option<(String, Vec<u8>)> = None;
    let mut too_large = false;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                too_large = true;
                break;
            }
            Err(_) => return Err(bad("Malformed multipart body")),
        };
        let mut field = field;
        if field.name() != Some("file") || upload.is_some() {
            // Drain other parts.
            while let Ok(Some(_)) = field.chunk().await {}
            continue;
        }
        let Some(filename) = field.file_name().and_then(clean_filename) else {
            return Err(bad("The 'file' part must carry a filename"));
        };
        let mut data = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if too_large {
                        continue;
                    }
                    if data.len() + chunk.len() > MAX_ATTACHMENT_BYTES {
                        too_large = true;
                        data = Vec::new();
                    } else {
                        data.extend_from_slice(&chunk);
                    }
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    too_large = true;
                    break;
                }
                Err(_) => return Err(bad("Malformed multipart body")),
            }
        }
        if too_large {
            break;
        }
        upload = Some((filename, data));
    }
    if too_large {
        return Err(ApiError::outbox(
            StatusCode::PAYLOAD_TOO_LARGE,
            "File exceeds the 50 MB limit",
        ));
    }
    let Some((filename, data)) = upload else {
        return Err(bad("'file' is a required property"));
    };

    let sha256 = hex::encode(Sha256::digest(&data));
    let size = data.len() as u64;
    let mut store = shared.store();
    let r = store
        .referrals
        .get(&referral_id)
        .ok_or_else(|| referral_not_found(referral_id))?;
    let (client_id, group, sequence) = (r.client_id, r.revision_group_id, r.sequence_id);
    let folder = store.seed.attachments_folder.clone();
    let name = free_name(store.files.get(&client_id), &folder, &filename);
    let relative = format!("{folder}/{name}");
    let filepath = format!("client/{client_id}/{relative}");
    let now = Utc::now();
    store.files.entry(client_id).or_default().insert(
        relative,
        StoredFile {
            bytes: Bytes::from(data),
            last_modified: now,
            visible_at: shared.visible_at(lag.map(|e| e.0)),
        },
    );
    let id = store.attachments.len() as u64 + 1;
    store.attachments.push(AttachmentRecord {
        id,
        referral_id,
        revision_group_id: group,
        sequence_id: sequence,
        client_id,
        filename,
        filepath: filepath.clone(),
        size,
        sha256,
        uploaded_at: now,
    });
    drop(store);
    tracing::debug!(referral_id = %referral_id, client_id, attachment = id, size, "client attachment stored");
    Ok((StatusCode::CREATED, Json(json!({"filepath": filepath}))).into_response())
}
