//! Files API (`/ext/api/v2/files`): listing and download of a client's
//! attachments tree, where outbox client attachments are saved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::app::Shared;
use crate::error::{ApiError, ApiResult};
use crate::state::is_visible;

fn folder_not_found(name: &str) -> ApiError {
    ApiError::ext(
        StatusCode::NOT_FOUND,
        format!("Folder \"{name}\" not found"),
    )
}

pub(crate) async fn list_root(
    State(shared): State<Arc<Shared>>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    list(&shared, &raw, "")
}

pub(crate) async fn get_path(
    State(shared): State<Arc<Shared>>,
    Path((raw, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    match path.strip_suffix('/') {
        Some(dir) => list(&shared, &raw, dir.trim_start_matches('/')),
        None => download(&shared, &raw, path.trim_start_matches('/')),
    }
}

fn list(shared: &Shared, raw_client: &str, dir: &str) -> ApiResult<Response> {
    let display = if dir.is_empty() { raw_client } else { dir };
    let client_id = raw_client
        .parse::<i64>()
        .map_err(|_| folder_not_found(display))?;
    let store = shared.store();
    if !store.clients.contains_key(&client_id) {
        return Err(folder_not_found(display));
    }
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let now = Instant::now();
    let mut dirs: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut files: Vec<Value> = Vec::new();
    let mut found = dir.is_empty();
    if let Some(tree) = store.files.get(&client_id) {
        for (path, file) in tree.range(prefix.clone()..) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            if !is_visible(file.visible_at, now) {
                continue;
            }
            found = true;
            match rest.split_once('/') {
                Some((sub, _)) => {
                    let e = dirs.entry(sub.to_owned()).or_insert(file.last_modified);
                    *e = (*e).max(file.last_modified);
                }
                None => files.push(json!({
                    "name": format!("client/{client_id}/{path}"),
                    "last_modified": file.last_modified.to_rfc3339_opts(SecondsFormat::Secs, false),
                    "size": file.bytes.len(),
                })),
            }
        }
    }
    if !found {
        return Err(folder_not_found(display));
    }
    let mut entries: Vec<Value> = dirs
        .into_iter()
        .map(|(sub, at)| {
            json!({
                "name": format!("client/{client_id}/{prefix}{sub}/"),
                "last_modified": at.to_rfc3339_opts(SecondsFormat::Secs, false),
                "size": 0,
            })
        })
        .collect();
    entries.extend(files);
    Ok(Json(Value::Array(entries)).into_response())
}

fn download(shared: &Shared, raw_client: &str, path: &str) -> ApiResult<Response> {
    let basename = path.rsplit('/').next().unwrap_or(path);
    // Documented: a missing file answers HTTP 400 with `code: 404` and
    // this message.
    let missing = || {
        ApiError::ext(
            StatusCode::BAD_REQUEST,
            format!("File \"{basename}\" to delete not found"),
        )
        .with_code(404)
    };
    let client_id = raw_client.parse::<i64>().map_err(|_| missing())?;
    let store = shared.store();
    let file = store
        .files
        .get(&client_id)
        .and_then(|tree| tree.get(path))
        .filter(|f| is_visible(f.visible_at, Instant::now()))
        .ok_or_else(missing)?;
    let bytes = file.bytes.clone();
    drop(store);
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let disposition = format!(
        "attachment; filename=\"{}\"",
        basename.replace(['"', '\\'], "_")
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
