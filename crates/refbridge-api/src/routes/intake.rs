//! `POST /referral_request`: AlayaConnector's Referral Request.
//!
//! The body is parsed without copying file contents: `file_value` strings are borrowed from
//! the request bytes and decoded straight into the file store, so a 50 MB file costs the body
//! once, not three times. Parsing, decoding and hashing run on a blocking thread.

use std::borrow::Cow;
use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use bytes::BytesMut;
use refbridge_domain::form::{self, Warning};
use refbridge_domain::intake::{self, RawParts};
use refbridge_domain::{ReferralStatus, RequestId, Role, Violations};
use refbridge_storage::files::PutError;
use refbridge_storage::{FileStore, IntakeOutcome, NewFile, NewReferral};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_referral_request))
}

/// The answer to an accepted Referral Request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IntakeResponse {
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    pub status: ReferralStatus,
    /// What the reviewer should look at: fields that did not parse, missing information.
    pub warnings: Vec<Warning>,
}

/// The Referral Request as AlayaConnector sends it (documentation of the contract; the
/// handler reads the body itself so that it can report every problem at once).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReferralRequestDoc {
    #[schema(format = Uuid)]
    request_id: String,
    agency: AgencyDoc,
    client: ClientDoc,
    files: Option<Vec<FileDoc>>,
    form_data: FormDataDoc,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AgencyDoc {
    name: String,
    host: String,
    branch_id: i64,
    #[schema(format = Uuid)]
    alayamarket_org_id: String,
    #[schema(example = "America/Chicago")]
    timezone: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClientDoc {
    id: i64,
    first_name: String,
    last_name: String,
    email: Option<String>,
    phone_main: Option<String>,
    #[schema(format = Date)]
    birthday: Option<String>,
    gender: Option<String>,
    address: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
    #[schema(example = "America/Chicago")]
    timezone: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FileDoc {
    file_name: String,
    /// Base64; padding optional, line breaks ignored; at most 50 MB once decoded.
    file_value: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FormDataDoc {
    form_id: Option<i64>,
    form_name: Option<String>,
    form_schema_id: Option<String>,
    created_at: Option<String>,
    created_by: Option<String>,
    fields: Vec<refbridge_domain::intake::FormField>,
}

/// Receive a supply agency's Referral Request.
///
/// Idempotent on `request_id`: the same document again answers 200 with the same record; a
/// different document under a known `request_id` answers 409.
#[utoipa::path(
    post, path = "/referral_request", tag = "intake",
    request_body = ReferralRequestDoc,
    security(("bearer" = [])),
    responses(
        (status = 200, body = IntakeResponse, description = "recorded (or recorded before)"),
        (status = 400, body = ErrorBody, description = "invalid document; every problem listed"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another document has this request_id"),
        (status = 413, body = ErrorBody, description = "body or a file too large"),
    )
)]
async fn post_referral_request(
    State(state): State<AppState>,
    caller: Caller,
    // `BytesMut` gathers the body into one growing buffer; `Bytes` would keep the received
    // chunks and then copy them into a second, contiguous buffer: twice the body at peak.
    body: Result<BytesMut, BytesRejection>,
) -> Result<Json<IntakeResponse>, ApiError> {
    caller.require(Role::Intake)?;
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) if is_too_large(&e) => {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than {} bytes",
                state.config.max_body_bytes
            ))
        }
        other => ApiError::InvalidJson(format!(
            "cannot read the request body: {}",
            other.body_text()
        )),
    })?;
    let files = state.files.clone();
    let max_file = state.config.max_file_bytes;
    let actor = caller.name.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&body, &files, max_file, actor))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;

    let id = prepared.request.request_id;
    match state.store.record_intake(&prepared).await? {
        IntakeOutcome::Created(receipt) => {
            tracing::info!(request_id = %id, patient_id = %receipt.patient_id, files = receipt.files,
                warnings = receipt.warnings.len(), "referral request received");
            Ok(Json(IntakeResponse {
                request_id: id,
                status: ReferralStatus::Received,
                warnings: receipt.warnings,
            }))
        }
        IntakeOutcome::Replayed(rec) => {
            tracing::info!(request_id = %id, "referral request replayed");
            Ok(Json(IntakeResponse {
                request_id: id,
                status: rec.status,
                warnings: rec.warnings,
            }))
        }
        IntakeOutcome::Conflict => {
            tracing::warn!(request_id = %id, "referral request conflicts with the one recorded");
            Err(ApiError::Conflict(format!(
                "request_id {id} was already received with a different body"
            )))
        }
    }
}

fn is_too_large(e: &BytesRejection) -> bool {
    e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
}

/// Parses, validates, stores the files and parses the form. Blocking.
fn prepare(
    body: &[u8],
    store: &FileStore,
    max_file: u64,
    actor: String,
) -> Result<NewReferral, ApiError> {
    let raw: RawBody<'_> = serde_json::from_slice(body).map_err(json_error)?;

    let parts = RawParts {
        request_id: raw.fields.get("request_id"),
        agency: raw.fields.get("agency"),
        client: raw.fields.get("client"),
        form_data: raw.fields.get("form_data"),
    };
    let validated = intake::validate(parts);
    let mut violations = match &validated {
        Ok(_) => Violations::default(),
        Err(v) => v.clone(),
    };
    let files = raw.files.unwrap_or_default();
    for (i, f) in files.iter().enumerate() {
        if f.file_name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            violations.push(format!("files[{i}].file_name"), "is required");
        }
        if f.file_value.is_none() {
            violations.push(format!("files[{i}].file_value"), "is required");
        }
    }
    let request = match validated {
        Ok(r) if violations.is_empty() => r,
        _ => return Err(violations.into()),
    };

    let mut stored = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name.as_deref().unwrap_or_default().trim().to_owned();
        let value = f.file_value.unwrap_or_default();
        let blob = store
            .put_base64(value.unescaped(), max_file)
            .map_err(|e| match e {
                PutError::InvalidBase64 => ApiError::field(
                    &format!("files[{i}].file_value"),
                    &format!("of file \"{name}\" is not valid base64"),
                ),
                PutError::TooLarge { limit } => ApiError::PayloadTooLarge(format!(
                    "files[{i}] (\"{name}\") is larger than {limit} bytes once decoded"
                )),
                PutError::Io(io) => ApiError::Internal(Box::new(io)),
            })?;
        stored.push(NewFile { name, blob });
    }

    let parsed = form::parse(&request.fields, Some(&request.client));
    let extra: Map<String, Value> = raw
        .fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "request_id" | "agency" | "client" | "form_data"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fingerprint = fingerprint(&raw.fields, &stored);
    Ok(NewReferral {
        request,
        parsed,
        fingerprint,
        extra: (!extra.is_empty()).then_some(Value::Object(extra)),
        files: stored,
        actor,
    })
}

/// Identifies a document's content independently of key order and whitespace: the SHA-256 of
/// its canonical JSON (keys sorted) without the file bodies, followed by each file's name and
/// content hash.
fn fingerprint(fields: &Map<String, Value>, files: &[NewFile]) -> String {
    let mut h = Sha256::new();
    let mut buf = Vec::new();
    canonical(&Value::Object(fields.clone()), &mut buf);
    h.update(&buf);
    for f in files {
        h.update(b"\0file\0");
        h.update(f.name.as_bytes());
        h.update(b"\0");
        h.update(f.blob.hash.as_str().as_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    refbridge_domain::ContentHash::from_digest(&digest).to_string()
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// serde_json's messages for wrong types can quote the submitted value; ours do not.
fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::InvalidJson(format!(
            "the document has the wrong shape near line {} column {} (files must be an array of \
             objects with string file_name and file_value)",
            e.line(),
            e.column()
        )),
        Category::Eof => {
            ApiError::InvalidJson("the body ends before the JSON document does".into())
        }
        Category::Syntax | Category::Io => ApiError::InvalidJson(format!(
            "the body is not valid JSON (line {} column {})",
            e.line(),
            e.column()
        )),
    }
}

/// The top level of the body: `files` borrowed from the request bytes, everything else as
/// JSON values.
struct RawBody<'a> {
    fields: Map<String, Value>,
    files: Option<Vec<RawFile<'a>>>,
}

#[derive(Deserialize)]
struct RawFile<'a> {
    #[serde(default)]
    file_name: Option<String>,
    #[serde(borrow, default, deserialize_with = "json_string")]
    file_value: Option<JsonStr<'a>>,
}

/// A JSON string's text as it is in the body, between its quotes and with its escapes:
/// borrowed, so a file's base64 is never copied, not even when the sender escapes every `/`
/// as `\/` (PHP's `json_encode` does by default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct JsonStr<'a>(&'a str);

impl<'a> JsonStr<'a> {
    /// The string's bytes with the escapes resolved, one at a time. A `\u` escape of a
    /// character outside ASCII gives 0xFF: never base64, so the decoder rejects it.
    fn unescaped(self) -> impl Iterator<Item = u8> + 'a {
        let mut bytes = self.0.bytes();
        std::iter::from_fn(move || {
            let b = bytes.next()?;
            if b != b'\\' {
                return Some(b);
            }
            // The JSON parser has checked every escape: each is complete.
            Some(match bytes.next()? {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'u' => {
                    let code = (0..4).try_fold(0u32, |acc, _| {
                        let digit = char::from(bytes.next()?).to_digit(16)?;
                        Some(acc * 16 + digit)
                    })?;
                    u8::try_from(code).ok().filter(u8::is_ascii).unwrap_or(0xFF)
                }
                // `\"`, `\\` and `\/` stand for themselves.
                other => other,
            })
        })
    }
}

/// `file_value`: a string, kept as its raw text (see [`JsonStr`]).
fn json_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JsonStr<'de>>, D::Error> {
    let Some(raw) = Option::<&'de RawValue>::deserialize(d)? else {
        return Ok(None);
    };
    raw.get()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .map(|t| Some(JsonStr(t)))
        .ok_or_else(|| de::Error::custom("file_value must be a string"))
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBody<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawBody<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBody<'a>, A::Error> {
                let mut fields = Map::new();
                let mut files = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "files" {
                        files = map.next_value::<Option<Vec<RawFile<'a>>>>()?;
                    } else {
                        let v: Value = map.next_value()?;
                        if fields.insert(key.into_owned(), v).is_some() {
                            return Err(de::Error::custom("duplicate key"));
                        }
                    }
                }
                Ok(RawBody { fields, files })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_are_borrowed_from_the_body_escapes_and_all() {
        let body = br#"{"request_id":"x","files":[{"file_name":"a.pdf","file_value":"QUJD"},
            {"file_name":"b.pdf","file_value":"QU\/J"},{"file_name":"c.pdf"},
            {"file_name":"d.pdf","file_value":null}]}"#;
        let raw: RawBody<'_> = serde_json::from_slice(body).unwrap();
        let files = raw.files.unwrap();
        assert_eq!(files[0].file_value, Some(JsonStr("QUJD")));
        assert_eq!(files[1].file_value, Some(JsonStr(r"QU\/J")));
        let start = body.as_ptr() as usize;
        let at = files[1].file_value.unwrap().0.as_ptr() as usize;
        assert!(
            (start..start + body.len()).contains(&at),
            "borrowed from the body"
        );
        assert_eq!(files[2].file_value, None);
        assert_eq!(files[3].file_value, None);
        let not_a_string = br#"{"files":[{"file_name":"a.pdf","file_value":12}]}"#;
        assert!(serde_json::from_slice::<RawBody<'_>>(not_a_string).is_err());
    }

    #[test]
    fn unescaping_resolves_every_json_escape() {
        let text = r#"QU\/J\n\r\t\u0041\u00e9\"\\\b\f"#;
        let got: Vec<u8> = JsonStr(text).unescaped().collect();
        assert_eq!(got, b"QU/J\n\r\tA\xFF\"\\\x08\x0c");
        // What serde_json makes of the same string, with the non-ASCII character marked.
        let parsed: String = serde_json::from_str(&format!("\"{text}\""))
            .map(|s: String| s.replace('\u{e9}', "\u{FF}"))
            .unwrap();
        let expected: Vec<u8> = parsed.chars().map(|c| c as u32 as u8).collect();
        assert_eq!(got, expected);
    }
}
