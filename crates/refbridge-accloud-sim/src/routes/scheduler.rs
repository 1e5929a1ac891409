//! Services API (`/ext/api/v2/scheduler`: services, service codes) and the
//! funders list of the accounting API (`/ext/api/v2/accounting`).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde_json::{Map, Value, json};

use crate::app::{CreateLag, Shared};
use crate::error::{ApiError, ApiResult};
use crate::faults::Family;
use crate::routes::patients::paged;
use crate::state::{FunderBreakdown, ServiceRecord, Store, is_visible};
use crate::util::{Fields, Query, json_object, query_int};

const FAMILY: Family = Family::Ext;

const FUNDING_METHODOLOGIES: &[&str] = &[
    "cluster_billing",
    "cob",
    "co_contribution",
    "co-pay",
    "ltci",
    "medicaid",
    "payor_invoicing",
    "single_funder",
    "single_payor",
    "split_funders",
    "split_percentage",
];

const SERVICE_STATUSES: &[&str] = &["active", "on_hold", "waiting_list", "discharged"];

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::ext(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> ApiError {
    ApiError::ext(StatusCode::NOT_FOUND, "Service not found")
}

fn exclusive(a: &str, b: &str) -> ApiError {
    bad(format!("{a} and {b} are mutually exclusive"))
}

fn employee_conflict() -> ApiError {
    ApiError::ext(
        StatusCode::CONFLICT,
        "primary_employee_id and primary_employee_external_id are mutually exclusive",
    )
}

fn service_exists(ext: &str) -> ApiError {
    ApiError::ext(
        StatusCode::CONFLICT,
        format!("Service already exists with external ID: {ext}"),
    )
}

// ---------------------------------------------------------------- funders

fn funder_item(store: &Store, f: &crate::config::SeedFunder) -> Value {
    json!({
        "id": f.id,
        "external_id": f.external_id,
        "name": f.name,
        "code": f.code,
        "type": f.funder_type,
        "status": f.status,
        "organization": f.organization,
        "organization_code": f.organization_code,
        "branch": {"id": f.branch_id, "name": store.branch_name(f.branch_id)},
    })
}

pub(crate) async fn list_funders(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    if q.has("funder_id") && q.has("alayacare_funder_id") {
        return Err(exclusive("funder_id", "alayacare_funder_id"));
    }
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let count = query_int(&q, "count", 100, 0, FAMILY)?;
    let branch = q
        .get("branch_id")
        .map(|b| b.parse::<i64>().map_err(|_| bad("Invalid request")))
        .transpose()?;
    let lower = |k: &str| q.get(k).map(str::to_lowercase);
    let (name, code, search) = (lower("funder_name"), lower("funder_code"), lower("search"));
    let store = shared.store();
    let items: Vec<Value> = store
        .funders
        .values()
        .filter(|f| {
            q.get("funder_id")
                .is_none_or(|x| f.external_id.as_deref() == Some(x))
        })
        .filter(|f| {
            q.get("alayacare_funder_id")
                .is_none_or(|x| f.id.to_string() == x)
        })
        .filter(|f| {
            name.as_ref()
                .is_none_or(|n| f.name.to_lowercase().contains(n))
        })
        .filter(|f| {
            code.as_ref()
                .is_none_or(|c| f.code.to_lowercase().contains(c))
        })
        .filter(|f| {
            search.as_ref().is_none_or(|s| {
                f.name.to_lowercase().contains(s) || f.code.to_lowercase().contains(s)
            })
        })
        .filter(|f| {
            q.get("invoicing_model")
                .is_none_or(|m| f.invoicing_model == m)
        })
        .filter(|f| q.get("status").is_none_or(|s| f.status == s))
        .filter(|f| q.get("funder_type").is_none_or(|t| f.funder_type == t))
        .filter(|f| branch.is_none_or(|b| f.branch_id == b))
        .map(|f| funder_item(&store, f))
        .collect();
    drop(store);
    Ok(paged(items, page, count))
}

pub(crate) async fn get_funder(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let missing = || ApiError::ext(StatusCode::NOT_FOUND, "Funder not found");
    let id = raw.parse::<i64>().map_err(|_| missing())?;
    let store = shared.store();
    let f = store.funders.get(&id).ok_or_else(missing)?;
    Ok(Json(json!({
        "id": f.id,
        "guid": f.id,
        "name": f.name,
        "label": f.name,
        "code": f.code,
        "description": f.organization,
        "invoicing_model": f.invoicing_model,
        "is_disabled": f.status == "disabled",
        "is_read_only": false,
        "branch_id": f.branch_id,
        "taxes": [],
    }))
    .into_response())
}

// ----------------------------------------------------------- service codes

pub(crate) async fn list_service_codes(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    if q.has("client_id") && q.has("alayacare_client_id") {
        return Err(exclusive("client_id", "alayacare_client_id"));
    }
    if q.has("funder_id") && q.has("alayacare_funder_id") {
        return Err(exclusive("funder_id", "alayacare_funder_id"));
    }
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let count = query_int(&q, "count", 100, 0, FAMILY)?;
    let branch = q
        .get("branch_id")
        .map(|b| b.parse::<i64>().map_err(|_| bad("Invalid request")))
        .transpose()?;
    let store = shared.store();
    let items: Vec<Value> = store
        .service_codes
        .values()
        .filter(|s| branch.is_none_or(|b| s.branch_id == b))
        .map(|s| {
            json!({
                "id": s.id,
                "name": s.name,
                "branch": {"id": s.branch_id, "name": store.branch_name(s.branch_id)},
            })
        })
        .collect();
    drop(store);
    Ok(paged(items, page, count))
}

// ---------------------------------------------------------------- services

fn parse_breakdowns(store: &Store, items: &[Value]) -> ApiResult<Vec<FunderBreakdown>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(obj) = item else {
            return Err(bad(
                "Field guid_funder_breakdowns must be a list of objects.",
            ));
        };
        let f = Fields::nested(obj, FAMILY, "guid_funder_breakdowns.");
        let funder_id = f.req_int("funder_id")?;
        if !store.funders.contains_key(&funder_id) {
            return Err(bad(format!("Funder {funder_id} not found.")));
        }
        // The schema types `is_primary` as an integer; the guide sends `true`.
        let is_primary = match obj.get("is_primary") {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(b)) => i64::from(*b),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v @ (0 | 1)) => v,
                _ => return Err(f.type_error("is_primary", "integer (0 or 1)")),
            },
            Some(_) => return Err(f.type_error("is_primary", "integer")),
        };
        let percentage = f.int("percentage")?.unwrap_or(100);
        if !(0..=100).contains(&percentage) {
            return Err(bad("Field percentage must be between 0 and 100."));
        }
        f.int("id")?;
        f.int("contact_id")?;
        out.push(FunderBreakdown {
            funder_id,
            is_primary,
            percentage,
        });
    }
    Ok(out)
}

fn check_date(f: &Fields<'_>, name: &str) -> ApiResult<Option<String>> {
    let v = f.str(name)?;
    if let Some(d) = &v {
        if NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
            && chrono::DateTime::parse_from_rfc3339(d).is_err()
        {
            return Err(bad(format!("Field {name} must be a date.")));
        }
    }
    Ok(v)
}

pub(crate) async fn create_service(
    State(shared): State<Arc<Shared>>,
    lag: Option<Extension<CreateLag>>,
    body: Bytes,
) -> ApiResult<Response> {
    let obj = json_object(&body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    let service_id = f.str("service_id")?;
    let name = f.req_str("name")?;
    if name.trim().is_empty() {
        return Err(f.missing("name"));
    }
    let client = f.object("client")?.ok_or_else(|| f.missing("client"))?;
    let cf = Fields::nested(client, FAMILY, "client.");
    let alayacare_client_id = cf.int("alayacare_client_id")?;
    let external_client_id = cf.str("client_id")?;
    let service_code_id = f.int("service_code_id")?;
    let service_code_name = f.str("service_code_name")?;
    let funding_methodology = f
        .enum_str("funding_methodology", FUNDING_METHODOLOGIES)?
        .ok_or_else(|| f.missing("funding_methodology"))?;
    let breakdowns = f.array("guid_funder_breakdowns")?;
    let start_date = check_date(&f, "start_date")?;
    let projected_end_date = check_date(&f, "projected_end_date")?;
    let service_instructions = f.str("service_instructions")?;
    let notes = f.str("notes")?;
    let use_client_address = f.bool("use_client_address")?;
    let profile = f.object("profile")?.cloned().unwrap_or_default();
    f.num("billable_rate")?;
    f.str("import_id")?;
    if let Some(employee) = f.object("employee")? {
        let ef = Fields::nested(employee, FAMILY, "employee.");
        let (a, b) = (ef.int("alayacare_employee_id")?, ef.str("employee_id")?);
        if a.is_some() && b.is_some() {
            return Err(employee_conflict());
        }
        if a.is_some() || b.is_some() {
            return Err(bad("Employee not found."));
        }
    }

    let client_ref = match (alayacare_client_id, &external_client_id) {
        (Some(_), Some(_)) => return Err(exclusive("alayacare_client_id", "client_id")),
        (None, None) => {
            return Err(bad(
                "One of client.alayacare_client_id or client.client_id is required.",
            ));
        }
        (a, b) => (a, b.clone()),
    };
    let mut store = shared.store();
    let client_id = match client_ref {
        (Some(id), _) => {
            if !store.clients.contains_key(&id) {
                return Err(bad("Client not found."));
            }
            id
        }
        (None, Some(ext)) => match store.clients_by_ext.get(&ext).map(Vec::as_slice) {
            Some([id]) => *id,
            Some([_, _, ..]) => {
                return Err(ApiError::ext(
                    StatusCode::CONFLICT,
                    "Multiple clients found",
                ));
            }
            _ => return Err(bad("Client not found.")),
        },
        (None, None) => return Err(bad("Client not found.")),
    };
    let service_code_id = match (service_code_id, &service_code_name) {
        (Some(_), Some(_)) => return Err(exclusive("service_code_id", "service_code_name")),
        (None, None) => {
            return Err(bad(
                "One of service_code_id or service_code_name is required.",
            ));
        }
        (Some(id), None) => {
            if !store.service_codes.contains_key(&id) {
                return Err(bad(format!("Service code {id} not found.")));
            }
            id
        }
        (None, Some(name)) => store
            .service_codes
            .values()
            .find(|s| &s.name == name)
            .map(|s| s.id)
            .ok_or_else(|| bad("Service code not found."))?,
    };
    let funders = match breakdowns {
        Some(items) if !items.is_empty() => parse_breakdowns(&store, items)?,
        _ => return Err(f.missing("guid_funder_breakdowns")),
    };
    if let Some(ext) = &service_id {
        if shared.config.rules.reject_duplicate_service_id
            && store
                .services_by_ext
                .get(ext)
                .is_some_and(|v| !v.is_empty())
        {
            return Err(service_exists(ext));
        }
    }
    let id = store.next_service;
    store.next_service += 1;
    store.insert_service(ServiceRecord {
        id,
        service_id: service_id.clone(),
        name,
        client_id,
        service_code_id,
        funding_methodology,
        funders,
        start_date,
        projected_end_date,
        service_instructions,
        notes,
        use_client_address,
        profile,
        provider_details: Map::new(),
        status: "active".to_owned(),
        created_at: Utc::now(),
        visible_at: shared.visible_at(lag.map(|e| e.0)),
    });
    drop(store);
    tracing::debug!(service_id = id, client_id, "service created");
    // Documented: 200, not 201.
    Ok(Json(json!({"id": id, "external_id": service_id})).into_response())
}

fn service_details(store: &Store, s: &ServiceRecord) -> Value {
    let mut v = Map::new();
    v.insert("alayacare_service_id".into(), json!(s.id.to_string()));
    if let Some(ext) = &s.service_id {
        v.insert("service_id".into(), json!(ext));
    }
    v.insert("service_name".into(), json!(s.name));
    v.insert("service_status".into(), json!(s.status));
    v.insert("alayacare_service_code_id".into(), json!(s.service_code_id));
    if let Some(code) = store.service_codes.get(&s.service_code_id) {
        v.insert("service_code_name".into(), json!(code.name));
    }
    if let Some(d) = &s.start_date {
        v.insert("start_date".into(), json!(d));
        v.insert("service_start_date".into(), json!(d));
    }
    if let Some(i) = &s.service_instructions {
        v.insert("service_instructions".into(), json!(i));
    }
    if let Some(u) = s.use_client_address {
        v.insert("use_client_address".into(), json!(u));
    }
    if let Some(c) = store.clients.get(&s.client_id) {
        let name = |k: &str| {
            c.demographics
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut patient = json!({
            "id": c.id,
            "profile_id": c.profile_id,
            "full_name": format!("{} {}", name("first_name"), name("last_name")).trim().to_owned(),
            "timezone": store.client_timezone(c).name(),
        });
        if let (Some(ext), Some(obj)) = (&c.external_id, patient.as_object_mut()) {
            obj.insert("external_id".into(), json!(ext));
        }
        v.insert("patient".into(), patient);
    }
    let funders: Vec<Value> = s
        .funders
        .iter()
        .filter_map(|b| {
            let f = store.funders.get(&b.funder_id)?;
            let mut item = json!({
                "id": f.id,
                "name": f.name,
                "code": f.code,
                "organization": f.organization,
                "organization_code": f.organization_code,
                "percentage": b.percentage,
            });
            if let (Some(ext), Some(obj)) = (&f.external_id, item.as_object_mut()) {
                obj.insert("external_id".into(), json!(ext));
            }
            Some(item)
        })
        .collect();
    v.insert("funders".into(), Value::Array(funders));
    v.insert("profile".into(), Value::Object(s.profile.clone()));
    v.insert(
        "provider_details".into(),
        Value::Object(s.provider_details.clone()),
    );
    Value::Object(v)
}

fn parse_service_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| not_found())
}

pub(crate) async fn get_service(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let id = parse_service_id(&raw)?;
    let now = Instant::now();
    let store = shared.store();
    let s = store
        .services
        .get(&id)
        .filter(|s| is_visible(s.visible_at, now))
        .ok_or_else(not_found)?;
    Ok(Json(service_details(&store, s)).into_response())
}

fn by_external(store: &Store, ext: &str, visible_only: bool) -> ApiResult<i64> {
    let now = Instant::now();
    let ids: Vec<i64> = store
        .services_by_ext
        .get(ext)
        .map(|ids| {
            ids.iter()
                .copied()
                .filter(|id| {
                    !visible_only
                        || store
                            .services
                            .get(id)
                            .is_some_and(|s| is_visible(s.visible_at, now))
                })
                .collect()
        })
        .unwrap_or_default();
    match ids.as_slice() {
        [] => Err(not_found()),
        [id] => Ok(*id),
        _ => Err(ApiError::ext(
            StatusCode::CONFLICT,
            "Multiple services found",
        )),
    }
}

pub(crate) async fn get_service_by_external(
    State(shared): State<Arc<Shared>>,
    Path(ext): Path<String>,
) -> ApiResult<Response> {
    let store = shared.store();
    let id = by_external(&store, &ext, true)?;
    let s = store.services.get(&id).ok_or_else(not_found)?;
    Ok(Json(service_details(&store, s)).into_response())
}

pub(crate) async fn update_service(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_service_id(&raw)?;
    update(&shared, id, &body)
}

pub(crate) async fn update_service_by_external(
    State(shared): State<Arc<Shared>>,
    Path(ext): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = by_external(&shared.store(), &ext, false)?;
    update(&shared, id, &body)
}

fn update(shared: &Shared, id: i64, body: &[u8]) -> ApiResult<Response> {
    let obj = json_object(body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    let profile = f.object("profile")?;
    let provider_details = f.object("provider_details")?;
    let service_id = f.str("service_id")?;
    let instructions = f.str("service_instructions")?;
    let (a, b) = (
        f.int("primary_employee_id")?,
        f.str("primary_employee_external_id")?,
    );
    if a.is_some() && b.is_some() {
        return Err(employee_conflict());
    }
    f.array("reports")?;
    f.object("service_accounting")?;
    let mut store = shared.store();
    if !store.services.contains_key(&id) {
        return Err(not_found());
    }
    if a.is_some() || b.is_some() {
        return Err(bad("Employee not found."));
    }
    if let Some(ext) = &service_id {
        let taken = store
            .services_by_ext
            .get(ext)
            .is_some_and(|ids| ids.iter().any(|x| *x != id));
        if taken && shared.config.rules.reject_duplicate_service_id {
            return Err(service_exists(ext));
        }
        store.set_service_external_id(id, Some(ext.clone()));
    }
    let s = store.services.get_mut(&id).ok_or_else(not_found)?;
    if let Some(p) = profile {
        for (k, v) in p {
            s.profile.insert(k.clone(), v.clone());
        }
    }
    if let Some(p) = provider_details {
        for (k, v) in p {
            s.provider_details.insert(k.clone(), v.clone());
        }
    }
    if instructions.is_some() {
        s.service_instructions = instructions;
    }
    let ext = s.service_id.clone();
    drop(store);
    tracing::debug!(service_id = id, "service updated");
    Ok(Json(json!({"id": id, "external_id": ext})).into_response())
}

pub(crate) async fn list_services(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    for (a, b) in [
        ("client_id", "alayacare_client_id"),
        ("employee_id", "alayacare_employee_id"),
        ("funder_id", "alayacare_funder_id"),
    ] {
        if q.has(a) && q.has(b) {
            return Err(exclusive(a, b));
        }
    }
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let count = query_int(&q, "count", 100, 0, FAMILY)?;
    let status = q.get("status").unwrap_or("active");
    if !SERVICE_STATUSES.contains(&status) {
        return Err(bad(format!("Invalid value for field status: {status}.")));
    }
    let int = |k: &str| {
        q.get(k)
            .map(|v| v.parse::<i64>().map_err(|_| bad("Invalid request")))
            .transpose()
    };
    let alayacare_client_id = int("alayacare_client_id")?;
    let alayacare_funder_id = int("alayacare_funder_id")?;
    let external_ids = q.all("external_ids");
    let has_employee_or_cost_centre =
        q.has("employee_id") || q.has("alayacare_employee_id") || q.has("alayacare_cost_centre_id");
    let now = Instant::now();
    let store = shared.store();
    let external_client: Option<Vec<i64>> = q
        .get("client_id")
        .map(|ext| store.clients_by_ext.get(ext).cloned().unwrap_or_default());
    let external_funder: Option<Option<i64>> = q.get("funder_id").map(|ext| {
        store
            .funders
            .values()
            .find(|f| f.external_id.as_deref() == Some(ext))
            .map(|f| f.id)
    });
    let items: Vec<Value> = store
        .services
        .values()
        .filter(|_| !has_employee_or_cost_centre)
        .filter(|s| is_visible(s.visible_at, now))
        .filter(|s| s.status == status)
        .filter(|s| alayacare_client_id.is_none_or(|c| s.client_id == c))
        .filter(|s| {
            external_client
                .as_ref()
                .is_none_or(|ids| ids.contains(&s.client_id))
        })
        .filter(|s| alayacare_funder_id.is_none_or(|f| s.funders.iter().any(|b| b.funder_id == f)))
        .filter(|s| {
            external_funder
                .is_none_or(|f| f.is_some_and(|f| s.funders.iter().any(|b| b.funder_id == f)))
        })
        .filter(|s| {
            external_ids.is_empty()
                || s.service_id
                    .as_deref()
                    .is_some_and(|e| external_ids.contains(&e))
        })
        .map(|s| {
            let mut item = json!({
                "alayacare_service_id": s.id,
                "service_id": s.service_id,
                "service_name": s.name,
                "service_status": s.status,
                "alayacare_service_code_id": s.service_code_id,
            });
            if let Some(obj) = item.as_object_mut() {
                if let Some(code) = store.service_codes.get(&s.service_code_id) {
                    obj.insert("service_code_name".into(), json!(code.name));
                }
                if let Some(d) = &s.start_date {
                    obj.insert("service_start_date".into(), json!(d));
                }
            }
            item
        })
        .collect();
    drop(store);
    Ok(paged(items, page, count))
}
