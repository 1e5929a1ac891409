//! Authorizations API (`/ext/api/v2/scheduler/authorizations`).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Months, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use crate::app::{CreateLag, Shared};
use crate::error::{ApiError, ApiResult};
use crate::faults::Family;
use crate::state::{AuthorizationRecord, AuthorizationRules, Store, is_visible};
use crate::util::{Fields, Query, bad_value, json_object, paginate, query_int};

const FAMILY: Family = Family::Authorizations;

const METHODOLOGIES: &[&str] = &["payor", "payor_bill_code", "payor_service", "service"];
const RULE_TYPES: &[&str] = &["HOURS", "VISITS"];
const DAYS: [&str; 7] = [
    "rule_monday",
    "rule_tuesday",
    "rule_wednesday",
    "rule_thursday",
    "rule_friday",
    "rule_saturday",
    "rule_sunday",
];
const MUTABLE: &[&str] = &[
    "end_at",
    "authorization_number",
    "member_number",
    "program_id",
    "case_manager_name",
    "case_manager_phone",
    "case_manager_fax",
    "case_manager_email",
    "notes",
];

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::auth(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> ApiError {
    ApiError::auth(StatusCode::NOT_FOUND, "Authorization not found.")
}

/// As documented: with a final period for `client_id`, without for `authorization_id`.
fn feature_flag_off(what: &str, id: impl std::fmt::Display) -> ApiError {
    let end = if what == "client_id" { "." } else { "" };
    ApiError::auth(
        StatusCode::FORBIDDEN,
        format!("Authorizations feature flag is not enabled for {what}: {id}{end}"),
    )
}

fn parse_date(f: &Fields<'_>, name: &str) -> ApiResult<Option<NaiveDate>> {
    match f.str(name)? {
        None => Ok(None),
        Some(s) => parse_date_str(&s)
            .map(Some)
            .ok_or_else(|| bad(format!("`{name}` must be a valid date (YYYY-MM-DD)."))),
    }
}

/// `YYYY-MM-DD`, or a date-time whose date part is taken.
fn parse_date_str(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.date_naive())
    })
}

pub(crate) fn authorization_json(a: &AuthorizationRecord, with_ids: bool) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    };
    put("id", json!(a.id));
    put("client_id", json!(a.client_id));
    put("authorization_number", json!(a.authorization_number));
    put("start_at", json!(a.start_at.to_string()));
    put("end_at", json!(a.end_at.map(|d| d.to_string())));
    put("member_number", json!(a.member_number));
    put("program_id", json!(a.program_id));
    put("case_manager_name", json!(a.case_manager_name));
    put("case_manager_email", json!(a.case_manager_email));
    put("case_manager_fax", json!(a.case_manager_fax));
    put("case_manager_phone", json!(a.case_manager_phone));
    put("rule_type", json!(a.rule_type));
    put("rule_daily", json!(a.rules.daily));
    put("rule_weekly", json!(a.rules.weekly));
    put("rule_monthly", json!(a.rules.monthly));
    put("rule_period", json!(a.rules.period));
    for (name, v) in DAYS.iter().zip(a.rules.days) {
        put(name, json!(v));
    }
    put("rule_custom", json!(a.rules.custom));
    put(
        "custom_number_of_days",
        json!(a.rules.custom_number_of_days),
    );
    put("notes", json!(a.notes));
    put("methodology", json!(a.methodology));
    put("authorization_status", json!(a.authorization_status));
    put("payor_id", json!(a.payor_id));
    put("payor_id_type", json!(a.payor_id_type));
    put("first_day_of_week", json!(a.first_day_of_week));
    put("is_over_utilized", json!(false));
    put("include_non_visit_items", json!(a.include_non_visit_items));
    if with_ids {
        put("service_ids", json!(a.service_ids));
        put("billcode_ids", json!(a.billcode_ids));
    }
    Value::Object(m)
}

fn parse_rules(f: &Fields<'_>) -> ApiResult<AuthorizationRules> {
    let mut rules = AuthorizationRules {
        daily: f.num("rule_daily")?,
        weekly: f.num("rule_weekly")?,
        monthly: f.num("rule_monthly")?,
        period: f.num("rule_period")?,
        custom: f.num("rule_custom")?,
        custom_number_of_days: f.int("custom_number_of_days")?,
        ..AuthorizationRules::default()
    };
    for (i, name) in DAYS.iter().enumerate() {
        rules.days[i] = f.num(name)?;
    }
    let named = [
        ("rule_daily", rules.daily),
        ("rule_weekly", rules.weekly),
        ("rule_monthly", rules.monthly),
        ("rule_period", rules.period),
        ("rule_custom", rules.custom),
    ];
    for (name, v) in named
        .into_iter()
        .chain(DAYS.iter().copied().zip(rules.days))
    {
        if v.is_some_and(|x| x < 0.0) {
            return Err(bad(format!("`{name}` must be greater than or equal to 0.")));
        }
    }
    if rules.daily.is_some() && rules.days.iter().any(Option::is_some) {
        return Err(bad(
            "`rule_daily` cannot be used with any `rule_<day>` field.",
        ));
    }
    if let (Some(d), Some(m)) = (rules.daily, rules.monthly) {
        if d > m {
            return Err(bad(
                "`rule_daily` must be lower than or equal `rule_monthly`.",
            ));
        }
    }
    Ok(rules)
}

fn overlaps(a: &AuthorizationRecord, start: NaiveDate, end: Option<NaiveDate>) -> bool {
    let a_end = a.end_at.unwrap_or(NaiveDate::MAX);
    let b_end = end.unwrap_or(NaiveDate::MAX);
    a.start_at <= b_end && start <= a_end
}

pub(crate) async fn create_authorization(
    State(shared): State<Arc<Shared>>,
    lag: Option<Extension<CreateLag>>,
    body: Bytes,
) -> ApiResult<Response> {
    let obj = json_object(&body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    for name in [
        "start_at",
        "rule_type",
        "client_id",
        "methodology",
        "first_day_of_week",
    ] {
        if !f.has(name) {
            return Err(f.missing(name));
        }
    }
    let client_id = f.req_int("client_id")?;
    if !shared.config.rules.authorizations_feature_flag {
        return Err(feature_flag_off("client_id", client_id));
    }
    let start_at = parse_date(&f, "start_at")?.ok_or_else(|| f.missing("start_at"))?;
    let end_at = parse_date(&f, "end_at")?;
    let methodology = f
        .enum_str("methodology", METHODOLOGIES)?
        .ok_or_else(|| f.missing("methodology"))?;
    let rule_type = f
        .enum_str("rule_type", RULE_TYPES)?
        .ok_or_else(|| f.missing("rule_type"))?;
    let first_day_of_week = f.req_int("first_day_of_week")?;
    if !(0..=6).contains(&first_day_of_week) {
        return Err(bad("`first_day_of_week` must be between 0 and 6."));
    }
    let payor_id = f.int("payor_id")?;
    let payor_id_type = f.enum_str("payor_id_type", &["FUNDER", "CONTACT"])?;
    let service_ids = f.int_array("service_ids")?.unwrap_or_default();
    let billcode_ids = f.int_array("billcode_ids")?.unwrap_or_default();
    let rules = parse_rules(&f)?;
    let text = |name: &str| f.str(name);
    let record_fields = (
        text("authorization_number")?,
        text("member_number")?,
        text("program_id")?,
        text("case_manager_name")?,
        text("case_manager_phone")?,
        text("case_manager_fax")?,
        text("case_manager_email")?,
        text("notes")?,
    );
    let include_non_visit_items = f.bool("include_non_visit_items")?;

    let mut store = shared.store();
    if !store.clients.contains_key(&client_id) {
        return Err(bad("Client ID not found."));
    }
    let one_year_ago = shared
        .today()
        .checked_sub_months(Months::new(12))
        .unwrap_or(NaiveDate::MIN);
    if start_at < one_year_ago {
        return Err(bad("`start_at` cannot be more than 1 year in the past."));
    }
    if end_at.is_some_and(|e| e < start_at) {
        return Err(bad("`end_at` should be the same or after `start_at`"));
    }
    let payor_methodology = methodology.starts_with("payor");
    if payor_methodology && (payor_id.is_none() || payor_id_type.is_none()) {
        return Err(bad(
            "`payor_id` and `payor_id_type` is required when `methodology` is `payor`, payor_bill_code, payor_service.",
        ));
    }
    if matches!(methodology.as_str(), "service" | "payor_service") && service_ids.is_empty() {
        return Err(f.missing("service_ids"));
    }
    if methodology == "payor_bill_code" && billcode_ids.is_empty() {
        return Err(f.missing("billcode_ids"));
    }
    for s in &service_ids {
        match store.services.get(s) {
            Some(svc) if svc.client_id == client_id => {}
            Some(_) => {
                return Err(bad(format!(
                    "Service(s) IDs do not belong to the client ID {client_id}."
                )));
            }
            None => return Err(bad("Service(s) IDs not found.")),
        }
    }
    if billcode_ids
        .iter()
        .any(|b| !store.seed.bill_code_ids.contains(b))
    {
        return Err(bad("Bill Code(s) ID not found."));
    }
    if let (Some(payor), Some("FUNDER")) = (payor_id, payor_id_type.as_deref()) {
        let funder = store
            .funders
            .get(&payor)
            .ok_or_else(|| bad(format!("Payor ID {payor} not found.")))?;
        if let Some(allowed) = &funder.allowed_rule_types {
            if !allowed.contains(&rule_type) {
                return Err(bad(format!(
                    "Rule Type {rule_type} is not possible for Payor {payor}."
                )));
            }
        }
        if methodology == "payor_service" {
            let funded = service_ids.iter().all(|s| {
                store
                    .services
                    .get(s)
                    .is_some_and(|svc| svc.funders.iter().any(|b| b.funder_id == payor))
            });
            if !funded {
                return Err(bad(format!(
                    "Service(s) IDs are not funded by the Payor ID {payor}"
                )));
            }
        }
    }
    if shared.config.rules.reject_overlapping_authorizations {
        let mut mine = service_ids.clone();
        mine.sort_unstable();
        let clash = store
            .authorizations_by_client
            .get(&client_id)
            .into_iter()
            .flatten()
            .filter_map(|id| store.authorizations.get(id))
            .filter(|a| !a.deleted && a.payor_id == payor_id && overlaps(a, start_at, end_at))
            .any(|a| {
                let mut theirs = a.service_ids.clone();
                theirs.sort_unstable();
                theirs != mine && theirs.iter().any(|s| mine.contains(s))
            });
        if clash {
            return Err(ApiError::auth(
                StatusCode::CONFLICT,
                "Authorization overlaps with another authorization that has the same payor and uses one or more of the selected services in a different service combination.",
            ));
        }
    }

    let id = store.next_authorization;
    store.next_authorization += 1;
    let (number, member, program, cm_name, cm_phone, cm_fax, cm_email, notes) = record_fields;
    let record = AuthorizationRecord {
        id,
        client_id,
        service_ids,
        billcode_ids,
        start_at,
        end_at,
        methodology,
        rule_type,
        rules,
        first_day_of_week,
        authorization_number: number,
        member_number: member,
        program_id: program,
        case_manager_name: cm_name,
        case_manager_phone: cm_phone,
        case_manager_fax: cm_fax,
        case_manager_email: cm_email,
        notes,
        payor_id,
        payor_id_type,
        include_non_visit_items,
        authorization_status: "NEW".to_owned(),
        deleted: false,
        created_at: Utc::now(),
        visible_at: shared.visible_at(lag.map(|e| e.0)),
    };
    let body = authorization_json(&record, false);
    store.insert_authorization(record);
    drop(store);
    tracing::debug!(authorization_id = id, client_id, "authorization created");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn parse_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| not_found())
}

pub(crate) async fn update_authorization(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_id(&raw)?;
    if !shared.config.rules.authorizations_feature_flag {
        return Err(feature_flag_off("authorization_id", id));
    }
    let obj = json_object(&body, FAMILY)?;
    if let Some(key) = obj.keys().find(|k| !MUTABLE.contains(&k.as_str())) {
        return Err(bad(format!("`{key}` cannot be updated.")));
    }
    let f = Fields::new(&obj, FAMILY);
    let end_at = parse_date(&f, "end_at")?;
    let mut values = Vec::new();
    for name in &MUTABLE[1..] {
        values.push((*name, f.str(name)?));
    }
    let mut store = shared.store();
    let a = store
        .authorizations
        .get_mut(&id)
        .filter(|a| !a.deleted)
        .ok_or_else(not_found)?;
    if let Some(end) = end_at {
        if end < a.start_at {
            return Err(bad("`end_at` should be the same or after `start_at`."));
        }
        a.end_at = Some(end);
    }
    for (name, value) in values {
        if !obj.contains_key(name) {
            continue;
        }
        let slot = match name {
            "authorization_number" => &mut a.authorization_number,
            "member_number" => &mut a.member_number,
            "program_id" => &mut a.program_id,
            "case_manager_name" => &mut a.case_manager_name,
            "case_manager_phone" => &mut a.case_manager_phone,
            "case_manager_fax" => &mut a.case_manager_fax,
            "case_manager_email" => &mut a.case_manager_email,
            _ => &mut a.notes,
        };
        *slot = value;
    }
    let body = authorization_json(a, false);
    drop(store);
    tracing::debug!(authorization_id = id, "authorization updated");
    Ok(Json(body).into_response())
}

pub(crate) async fn delete_authorization(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&raw)?;
    if !shared.config.rules.authorizations_feature_flag {
        return Err(feature_flag_off("authorization_id", id));
    }
    let mut store = shared.store();
    if store.authorizations.get(&id).is_none_or(|a| a.deleted) {
        return Err(not_found());
    }
    if shared
        .config
        .rules
        .forbid_deleting_referenced_authorizations
        && is_referenced(&store, id)
    {
        return Err(ApiError::auth(
            StatusCode::FORBIDDEN,
            "Authorization can not be deleted.",
        ));
    }
    if let Some(a) = store.authorizations.get_mut(&id) {
        a.deleted = true;
    }
    drop(store);
    tracing::debug!(authorization_id = id, "authorization deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn is_referenced(store: &Store, id: i64) -> bool {
    store.referrals.values().any(|r| {
        r.is_latest_revision && r.status != "cancelled" && r.authorization_ids.contains(&id)
    })
}

pub(crate) async fn list_authorizations(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let date = |key: &str, required: bool| -> ApiResult<Option<NaiveDate>> {
        match q.get(key) {
            None if required => Err(bad(format!("Missing data for required field `{key}`."))),
            None => Ok(None),
            Some(v) => parse_date_str(v)
                .map(Some)
                .ok_or_else(|| bad(format!("`{key}` must be a valid date (YYYY-MM-DD)."))),
        }
    };
    let from = date("start_at_from", true)?.unwrap_or(NaiveDate::MIN);
    let to = date("start_at_to", true)?.unwrap_or(NaiveDate::MAX);
    let end_from = date("end_at_from", false)?;
    let end_to = date("end_at_to", false)?;
    if !shared.config.rules.authorizations_feature_flag {
        return Err(ApiError::forbidden(FAMILY));
    }
    let ints = |key: &str| -> ApiResult<Vec<i64>> {
        q.all(key)
            .into_iter()
            .map(|v| v.parse::<i64>().map_err(|_| bad_value(FAMILY, key, v)))
            .collect()
    };
    let client_id = ints("client_id")?.first().copied();
    let service_ids = ints("service_id")?;
    let bill_code_ids = ints("bill_code_id")?;
    let payor_ids = ints("payor_id")?;
    let first_day = ints("first_day_of_week")?.first().copied();
    let methodology = q.get("methodology");
    if let Some(m) = methodology {
        if !METHODOLOGIES.contains(&m) {
            return Err(bad_value(FAMILY, "methodology", m));
        }
    }
    let statuses = q.all("authorization_status");
    if let Some(s) = statuses
        .iter()
        .find(|s| !["NEW", "PENDING", "PROCESSED"].contains(s))
    {
        return Err(bad_value(FAMILY, "authorization_status", s));
    }
    let payor_id_type = q.get("payor_id_type");
    if let Some(t) = payor_id_type {
        if !["FUNDER", "CONTACT"].contains(&t) {
            return Err(bad_value(FAMILY, "payor_id_type", t));
        }
    }
    let number = q.get("authorization_number").map(str::to_lowercase);
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let count = query_int(&q, "count", 100, 0, FAMILY)?;
    let now = Instant::now();
    let store = shared.store();
    let candidates: Box<dyn Iterator<Item = &AuthorizationRecord>> = match client_id {
        Some(c) => Box::new(
            store
                .authorizations_by_client
                .get(&c)
                .into_iter()
                .flatten()
                .filter_map(|id| store.authorizations.get(id)),
        ),
        None => Box::new(store.authorizations.values()),
    };
    let items: Vec<Value> = candidates
        .filter(|a| !a.deleted && is_visible(a.visible_at, now))
        .filter(|a| a.start_at >= from && a.start_at <= to)
        .filter(|a| end_from.is_none_or(|d| a.end_at.is_some_and(|e| e >= d)))
        .filter(|a| end_to.is_none_or(|d| a.end_at.is_some_and(|e| e <= d)))
        .filter(|a| service_ids.is_empty() || a.service_ids.iter().any(|s| service_ids.contains(s)))
        .filter(|a| {
            bill_code_ids.is_empty() || a.billcode_ids.iter().any(|b| bill_code_ids.contains(b))
        })
        .filter(|a| payor_ids.is_empty() || a.payor_id.is_some_and(|p| payor_ids.contains(&p)))
        .filter(|a| first_day.is_none_or(|d| a.first_day_of_week == d))
        .filter(|a| methodology.is_none_or(|m| a.methodology == m))
        .filter(|a| statuses.is_empty() || statuses.contains(&a.authorization_status.as_str()))
        .filter(|a| payor_id_type.is_none_or(|t| a.payor_id_type.as_deref() == Some(t)))
        .filter(|a| {
            number.as_ref().is_none_or(|n| {
                a.authorization_number
                    .as_ref()
                    .is_some_and(|x| x.to_lowercase().contains(n))
            })
        })
        .map(|a| authorization_json(a, true))
        .collect();
    drop(store);
    let (items, total_pages) = paginate(items, page as usize, count as usize);
    Ok(Json(json!({
        "count": items.len(),
        "page": page,
        "total_pages": total_pages,
        "items": items,
    }))
    .into_response())
}
