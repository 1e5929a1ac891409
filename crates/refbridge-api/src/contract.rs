//! The OpenAPI document is the contract: what the shared layers answer, stated once.
//!
//! A route's annotation states what is particular to it (its successes, its 404 and 409, the
//! constraints of its fields). [`complete`] adds what the layers every route passes through
//! answer, so that no route can leave it out:
//!
//! - an operation with a bearer `security` requirement: 401 (no token, or an unknown one;
//!   with `WWW-Authenticate`), 403 (the token's role may not do this) and 503 (the database
//!   does not answer, or too many connections are open);
//! - an operation with parameters or a body: 400, naming the parameter or field;
//! - an operation with a body: 408 (the body read timeout), 413 (the body limit) and 415
//!   (another media type, or a compressed body);
//! - POST, PUT and PATCH: the `Idempotency-Key` header, 409 (the key's first request still
//!   runs) and 422 (the key used with another request);
//!
//! and every error answer, 4xx or 5xx, is the one [`ErrorBody`](crate::ErrorBody) shape in
//! `application/json`. An optional body (`OptionalJsonBody`) is absent when not given, never
//! `null`: its schema loses the `null` alternative that utoipa gives an `Option`. The test
//! suite checks the served document for each of these.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Required, ResponseBuilder};

/// The name of the one error schema in `components.schemas`.
pub const ERROR_SCHEMA: &str = "ErrorBody";

/// Components whose Rust type flattens another (`#[serde(flatten)]`) and refuses unknown
/// fields: utoipa gives them an `allOf` that lets any field through.
const CLOSED_FLATTENED: &[&str] = &["AuthorizationInput"];

/// Adds the shared answers to every operation of `doc` (see the module doc).
pub fn complete(doc: &mut OpenApi) {
    close_flattened(doc);
    for item in doc.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, false),
            (&mut item.patch, true),
        ];
        for (op, keyed) in ops {
            if let Some(op) = op.as_mut() {
                complete_operation(op, keyed);
            }
        }
    }
}

fn complete_operation(op: &mut Operation, keyed: bool) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if authenticated {
        add(
            op,
            "401",
            "no bearer token, or one that is unknown or revoked",
        );
        add(op, "403", "the token's role may not do this");
        add(
            op,
            "503",
            "the database does not answer, or the server holds as many connections as it serves",
        );
    }
    if has_body || has_params || keyed {
        add(
            op,
            "400",
            "a parameter, header or field that is invalid; every problem is listed with the \
             parameter or field it concerns",
        );
    }
    if has_body {
        add(
            op,
            "408",
            "the body did not arrive within the body read timeout",
        );
        add(op, "413", "the body is larger than the server accepts");
        add(
            op,
            "415",
            "the body is not of the media type the operation reads (UTF-8 JSON, or \
             multipart/form-data for documents), or it is compressed (Content-Encoding)",
        );
    }
    if keyed && authenticated {
        idempotency_key(op);
        add(
            op,
            "409",
            "a request with this Idempotency-Key is still being processed (Retry-After: 1)",
        );
        add(
            op,
            "422",
            "this Idempotency-Key was used with another request (method, path or body)",
        );
    }
    if let Some(body) = op.request_body.as_mut() {
        if !matches!(body.required, Some(Required::True)) {
            for content in body.content.values_mut() {
                if let Some(RefOr::T(Schema::OneOf(one))) = &content.schema {
                    let rest: Vec<_> = one.items.iter().filter(|s| !is_null(s)).collect();
                    if let [only] = rest.as_slice() {
                        content.schema = Some((*only).clone());
                    }
                }
            }
        }
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (error, response) {
            response.content.clear();
            response
                .content
                .insert("application/json".into(), error_content());
            if status == "401" {
                response.headers.insert(
                    "WWW-Authenticate".into(),
                    HeaderBuilder::new()
                        .schema(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .enum_values(Some(["Bearer"])),
                        )
                        .description(Some("the scheme to authenticate with"))
                        .build(),
                );
            }
        }
    }
}

/// Merges each of [`CLOSED_FLATTENED`]'s `allOf` parts into one object that admits no other
/// field.
fn close_flattened(doc: &mut OpenApi) {
    use serde_json::{Map, Value};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let all = serde_json::to_value(&components.schemas).unwrap_or_default();
    for name in CLOSED_FLATTENED {
        let Some(Value::Array(parts)) = all.get(name).and_then(|s| s.get("allOf")).cloned() else {
            continue;
        };
        let mut properties = Map::new();
        let mut required = Vec::new();
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => all
                    .get(r.trim_start_matches("#/components/schemas/"))
                    .cloned()
                    .unwrap_or_default(),
                None => part,
            };
            if let Some(Value::Object(p)) = part.get("properties") {
                properties.extend(p.clone());
            }
            if let Some(Value::Array(r)) = part.get("required") {
                required.extend(r.iter().cloned());
            }
        }
        let mut merged = serde_json::json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            merged["required"] = Value::Array(required);
        }
        if let Ok(schema) = serde_json::from_value(merged) {
            components.schemas.insert((*name).to_owned(), schema);
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name(ERROR_SCHEMA)))
}

/// Adds a `status` answer with the error body, unless the route describes it already (then
/// `description` is added to the route's, when it says something else).
fn add(op: &mut Operation, status: &str, description: &str) {
    match op.responses.responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            if existing.description.is_empty() {
                existing.description = description.to_owned();
            } else if !existing.description.contains(description) && status == "409" {
                existing.description = format!("{}; or {description}", existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            op.responses.responses.insert(
                status.to_owned(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/json", error_content())
                        .build(),
                ),
            );
        }
    }
}

/// The `Idempotency-Key` header of every POST, PUT and PATCH (see `idempotency.rs`).
fn idempotency_key(op: &mut Operation) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    if params
        .iter()
        .any(|p| p.name.eq_ignore_ascii_case("idempotency-key"))
    {
        return;
    }
    params.push(
        ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Replays the first answer to this key (per token) for 24 hours, marked \
                 `Idempotent-Replayed: true`; 1 to 255 visible ASCII characters.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(crate::idempotency::MAX_KEY_LEN))
                    .pattern(Some("^[!-~]+$")),
            ))
            .build(),
    );
}

/// An IANA time zone name, as `refbridge_domain::timezone::TimeZone` accepts it: the
/// document lists every one.
pub struct TimeZoneName;

impl utoipa::PartialSchema for TimeZoneName {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An IANA time zone name (`America/Chicago`), or `UTC`.",
            ))
            .enum_values(Some(refbridge_domain::timezone::TimeZone::names()))
            .into()
    }
}

impl utoipa::ToSchema for TimeZoneName {
    fn name() -> std::borrow::Cow<'static, str> {
        "TimeZoneName".into()
    }
}

/// An event type's name (`refbridge_domain::event::EventType`): the document lists every one.
pub struct EventTypeName;

impl utoipa::PartialSchema for EventTypeName {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("An event type, such as `send.completed`."))
            .enum_values(Some(
                refbridge_domain::event::EventType::ALL
                    .iter()
                    .map(|t| t.as_str()),
            ))
            .into()
    }
}

impl utoipa::ToSchema for EventTypeName {
    fn name() -> std::borrow::Cow<'static, str> {
        "EventTypeName".into()
    }
}
