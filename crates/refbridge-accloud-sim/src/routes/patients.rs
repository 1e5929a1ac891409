//! Client API (`/ext/api/v2/patients`): groups and clients.

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
use crate::state::{ClientRecord, Store, is_visible};
use crate::util::{Fields, Query, json_object, paginate, query_int};

const FAMILY: Family = Family::Ext;

const LANGUAGES: &[&str] = &[
    "sq", "ar", "hy", "ast", "bn", "my", "yue", "zh", "hr", "cs", "fa_AF", "nl", "en", "fo", "fr",
    "de", "el", "he", "hi", "hu", "it", "ja", "rw", "ko", "mdr", "ne", "ps", "fa", "pl", "pt",
    "pa", "ro", "ru", "sr", "sk", "so", "es", "sw", "tl", "ta", "ti", "uk", "ur", "vi", "other",
];

/// Full language names the API converts to codes.
fn language_code(value: &str) -> Option<&'static str> {
    if let Some(code) = LANGUAGES.iter().find(|c| **c == value) {
        return Some(code);
    }
    let code = match value.to_ascii_lowercase().as_str() {
        "english" => "en",
        "french" => "fr",
        "spanish" => "es",
        "german" => "de",
        "italian" => "it",
        "portuguese" => "pt",
        "russian" => "ru",
        "chinese" => "zh",
        "arabic" => "ar",
        "polish" => "pl",
        "vietnamese" => "vi",
        "tagalog" => "tl",
        "korean" => "ko",
        "japanese" => "ja",
        "hindi" => "hi",
        "ukrainian" => "uk",
        _ => return None,
    };
    Some(code)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::ext(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> ApiError {
    ApiError::ext(StatusCode::NOT_FOUND, "Client not found.")
}

fn exists(ext: &str) -> ApiError {
    ApiError::ext(
        StatusCode::CONFLICT,
        format!("Client already exists with external ID: {ext}"),
    )
}

pub(crate) async fn list_groups(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let count = query_int(&q, "count", 100, 0, FAMILY)?;
    let branch = q
        .get("branch_id")
        .map(|b| b.parse::<i64>().map_err(|_| bad("Invalid request")))
        .transpose()?;
    let store = shared.store();
    let items: Vec<Value> = store
        .groups
        .iter()
        .filter(|g| branch.is_none_or(|b| g.branch_id == b))
        .map(|g| {
            json!({
                "id": g.id,
                "name": g.name,
                "description": g.description,
                "is_disabled": g.is_disabled,
                "branch": {"id": g.branch_id, "name": store.branch_name(g.branch_id)},
            })
        })
        .collect();
    Ok(paged(items, page, count))
}

pub(crate) fn paged(items: Vec<Value>, page: i64, count: i64) -> Response {
    let (items, total_pages) = paginate(items, page as usize, count as usize);
    Json(json!({
        "count": items.len(),
        "page": page,
        "total_pages": total_pages,
        "items": items,
    }))
    .into_response()
}

/// Checks a demographics object; returns it normalized.
fn check_demographics(
    demo: &Map<String, Value>,
    require_names: bool,
) -> ApiResult<Map<String, Value>> {
    for name in ["first_name", "last_name"] {
        match demo.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            None | Some(Value::Null) if !require_names => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(bad(format!("Field {name} is required in demographics.")));
            }
            Some(_) => return Err(bad(format!("Field {name} must be a string."))),
        }
    }
    if let Some(g) = demo.get("gender").filter(|v| !v.is_null()) {
        match g.as_str() {
            Some("M" | "F" | "O") => {}
            _ => return Err(bad("Invalid value for field gender.")),
        }
    }
    if let Some(b) = demo.get("birthday").filter(|v| !v.is_null()) {
        let ok = b
            .as_str()
            .is_some_and(|s| s.is_empty() || NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok());
        if !ok {
            return Err(bad("Field birthday must be a date (YYYY-MM-DD)."));
        }
    }
    for (k, v) in demo {
        if !(v.is_string() || v.is_null() || v.is_number() || v.is_boolean() || k == "location") {
            return Err(bad(format!("Field {k} must be a scalar value.")));
        }
    }
    Ok(demo.clone())
}

fn check_groups(store: &Store, groups: &[Value]) -> ApiResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(groups.len());
    for g in groups {
        let id = g
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("Field groups must be a list of objects with an integer id."))?;
        if !store.groups.iter().any(|x| x.id == id) {
            return Err(bad(format!("Group {id} not found.")));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn check_timezone(tz: &str) -> ApiResult<()> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| bad(format!("Invalid timezone: {tz}")))
}

pub(crate) async fn create_client(
    State(shared): State<Arc<Shared>>,
    lag: Option<Extension<CreateLag>>,
    body: Bytes,
) -> ApiResult<Response> {
    let obj = json_object(&body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    let demographics = f.object("demographics")?;
    let profile_id = f.int("profile_id")?;
    if demographics.is_some() && profile_id.is_some() {
        return Err(bad(
            "Only one of `profile_id` or a `demographics` object can be specified.",
        ));
    }
    let external_id = f.str("external_id")?;
    let branch_id = f.int("branch_id")?;
    let language = match f.str("language")? {
        None => None,
        Some(l) => Some(
            language_code(&l)
                .ok_or_else(|| bad(format!("Invalid value for field language: {l}.")))?
                .to_owned(),
        ),
    };
    let groups = f.array("groups")?;
    let timezone = f.str("timezone")?;
    if let Some(tz) = &timezone {
        check_timezone(tz)?;
    }
    f.enum_str("correspondence_method", &["email", "mail"])?;
    f.bool("is_billing_contact")?;
    let intake_group = f.bool("intake_group")?.unwrap_or(false);

    let mut store = shared.store();
    let demographics = match (demographics, profile_id) {
        (Some(d), _) => check_demographics(d, true)?,
        (None, Some(p)) => store
            .clients
            .values()
            .find(|c| c.profile_id == p)
            .map(|c| c.demographics.clone())
            .ok_or_else(|| bad(format!("Profile {p} not found.")))?,
        (None, None) => return Err(bad("Field first_name is required in demographics.")),
    };
    let branch_id = branch_id.unwrap_or_else(|| store.hq_branch_id());
    if !store.branch_exists(branch_id) {
        return Err(bad(format!("Branch {branch_id} not found.")));
    }
    let mut group_ids = check_groups(&store, groups.map_or(&[][..], Vec::as_slice))?;
    if intake_group {
        if let Some(g) = store.groups.iter().find(|g| g.name == "INTAKE") {
            if !group_ids.contains(&g.id) {
                group_ids.push(g.id);
            }
        }
    }
    if let Some(ext) = &external_id {
        if store
            .clients_by_ext
            .get(ext)
            .is_some_and(|ids| !ids.is_empty())
        {
            return Err(exists(ext));
        }
    }
    let id = store.next_client;
    store.next_client += 1;
    let record = ClientRecord {
        id,
        ac_id: format!("AC{id:09}"),
        external_id: external_id.clone(),
        profile_id: profile_id.unwrap_or(id + 6000),
        branch_id,
        status: "pending".to_owned(),
        demographics,
        language,
        groups: group_ids,
        timezone,
        created_at: Utc::now(),
        visible_at: shared.visible_at(lag.map(|e| e.0)),
    };
    store.insert_client(record);
    drop(store);
    tracing::debug!(client_id = id, "client created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "external_id": external_id})),
    )
        .into_response())
}

pub(crate) fn client_details(store: &Store, c: &ClientRecord) -> Value {
    let groups: Vec<Value> = c
        .groups
        .iter()
        .map(|g| {
            let name = store
                .groups
                .iter()
                .find(|x| x.id == *g)
                .map_or_else(String::new, |x| x.name.clone());
            json!({"id": g, "name": name})
        })
        .collect();
    let timezone = c
        .timezone
        .clone()
        .unwrap_or_else(|| store.branch_timezone(c.branch_id).name().to_owned());
    json!({
        "id": c.id,
        "ac_id": c.ac_id,
        "external_id": c.external_id,
        "profile_id": c.profile_id,
        "branch_id": c.branch_id,
        "status": c.status,
        "demographics": c.demographics,
        "contacts": [],
        "care_team": [],
        "language": c.language,
        "groups": groups,
        "cost_centre": null,
        "tags": [],
        "timezone": timezone,
    })
}

fn parse_client_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().map_err(|_| not_found())
}

/// The visible client with that external id (404 none, 409 several).
fn by_external(store: &Store, ext: &str, now: Instant, visible_only: bool) -> ApiResult<i64> {
    let ids: Vec<i64> = store
        .clients_by_ext
        .get(ext)
        .map(|ids| {
            ids.iter()
                .copied()
                .filter(|id| {
                    !visible_only
                        || store
                            .clients
                            .get(id)
                            .is_some_and(|c| is_visible(c.visible_at, now))
                })
                .collect()
        })
        .unwrap_or_default();
    match ids.as_slice() {
        [] => Err(not_found()),
        [id] => Ok(*id),
        _ => Err(ApiError::ext(
            StatusCode::CONFLICT,
            "Multiple clients found",
        )),
    }
}

pub(crate) async fn get_client(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let id = parse_client_id(&raw)?;
    let store = shared.store();
    let now = Instant::now();
    let client = store
        .clients
        .get(&id)
        .filter(|c| is_visible(c.visible_at, now))
        .ok_or_else(not_found)?;
    Ok(Json(client_details(&store, client)).into_response())
}

pub(crate) async fn get_client_by_external(
    State(shared): State<Arc<Shared>>,
    Path(ext): Path<String>,
) -> ApiResult<Response> {
    let store = shared.store();
    let id = by_external(&store, &ext, Instant::now(), true)?;
    let client = store.clients.get(&id).ok_or_else(not_found)?;
    Ok(Json(client_details(&store, client)).into_response())
}

pub(crate) async fn update_client(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_client_id(&raw)?;
    update(&shared, id, &body)
}

pub(crate) async fn update_client_by_external(
    State(shared): State<Arc<Shared>>,
    Path(ext): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = by_external(&shared.store(), &ext, Instant::now(), false)?;
    update(&shared, id, &body)
}

fn update(shared: &Shared, id: i64, body: &[u8]) -> ApiResult<Response> {
    let obj = json_object(body, FAMILY)?;
    let f = Fields::new(&obj, FAMILY);
    let demographics = f.object("demographics")?;
    let external_id = f.str("external_id")?;
    let language = match f.str("language")? {
        None => None,
        Some(l) => Some(
            language_code(&l)
                .ok_or_else(|| bad(format!("Invalid value for field language: {l}.")))?
                .to_owned(),
        ),
    };
    let groups = f.array("groups")?;
    let timezone = f.str("timezone")?;
    if let Some(tz) = &timezone {
        check_timezone(tz)?;
    }
    let mut store = shared.store();
    if !store.clients.contains_key(&id) {
        return Err(not_found());
    }
    let demographics = demographics
        .map(|d| check_demographics(d, false))
        .transpose()?;
    let group_ids = groups.map(|g| check_groups(&store, g)).transpose()?;
    if let Some(ext) = &external_id {
        let taken = store
            .clients_by_ext
            .get(ext)
            .is_some_and(|ids| ids.iter().any(|x| *x != id));
        if taken {
            return Err(exists(ext));
        }
    }
    if let Some(ext) = &external_id {
        store.set_client_external_id(id, Some(ext.clone()));
    }
    let client = store.clients.get_mut(&id).ok_or_else(not_found)?;
    if let Some(d) = demographics {
        for (k, v) in d {
            client.demographics.insert(k, v);
        }
    }
    if language.is_some() {
        client.language = language;
    }
    if let Some(g) = group_ids {
        client.groups = g;
    }
    if timezone.is_some() {
        client.timezone = timezone;
    }
    let external_id = client.external_id.clone();
    drop(store);
    tracing::debug!(client_id = id, "client updated");
    Ok(Json(json!({"id": id, "external_id": external_id})).into_response())
}

pub(crate) async fn list_clients(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let page = query_int(&q, "page", 1, 1, FAMILY)?;
    let count = query_int(&q, "count", 100, 0, FAMILY)?;
    let branch = q
        .get("branch")
        .map(|b| b.parse::<i64>().map_err(|_| bad("Invalid request")))
        .transpose()?;
    let statuses = q.all("status");
    for s in &statuses {
        if !["active", "pending", "on_hold", "waiting_list", "discharged"].contains(s) {
            return Err(bad(format!("Invalid value for field status: {s}.")));
        }
    }
    let groups = q
        .all("group")
        .into_iter()
        .map(|g| g.parse::<i64>().map_err(|_| bad("Invalid request")))
        .collect::<ApiResult<Vec<i64>>>()?;
    let filters: Vec<String> = q.all("filter").into_iter().map(str::to_lowercase).collect();
    let ac_id = q.get("ac_id");
    let now = Instant::now();
    let store = shared.store();
    let items: Vec<Value> = store
        .clients
        .values()
        .filter(|c| is_visible(c.visible_at, now))
        .filter(|c| branch.is_none_or(|b| c.branch_id == b))
        .filter(|c| statuses.is_empty() || statuses.contains(&c.status.as_str()))
        .filter(|c| groups.is_empty() || c.groups.iter().any(|g| groups.contains(g)))
        .filter(|c| ac_id.is_none_or(|a| c.ac_id == a))
        .filter(|c| filters.iter().all(|f| matches_filter(&c.demographics, f)))
        .map(|c| {
            let name = |k: &str| c.demographics.get(k).cloned().unwrap_or(Value::Null);
            json!({
                "id": c.id,
                "ac_id": c.ac_id,
                "branch": {"id": c.branch_id, "name": store.branch_name(c.branch_id)},
                "external_id": c.external_id,
                "profile_id": c.profile_id,
                "first_name": name("first_name"),
                "last_name": name("last_name"),
                "status": c.status,
                "tags": [],
                "_link": format!("/permalink/client/{}", c.id),
            })
        })
        .collect();
    drop(store);
    Ok(paged(items, page, count))
}

/// `key:value` matches that attribute by substring; a bare value matches
/// any attribute.
fn matches_filter(demo: &Map<String, Value>, filter: &str) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.to_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match filter.split_once(':') {
        Some((key, value)) => demo
            .get(key)
            .and_then(text)
            .is_some_and(|t| t.contains(value)),
        None => demo.values().filter_map(text).any(|t| t.contains(filter)),
    }
}
