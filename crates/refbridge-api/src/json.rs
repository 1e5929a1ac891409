//! Reading JSON bodies, the same way on every route.
//!
//! - **Media type.** A JSON route reads `application/json` (or `application/*+json`), UTF-8,
//!   uncompressed. Anything else is a 415 naming what is expected: a form, multipart, plain
//!   text or a body without a `Content-Type` is never parsed as JSON, and a compressed body
//!   (`Content-Encoding`) is refused rather than inflated (no decompression bomb to bound).
//! - **Strict documents.** A key twice in one object is a 400 naming the key's path (serde_json
//!   would keep the last value silently); nesting deeper than [`MAX_DEPTH`] is a 400 saying it
//!   is too deep, at the path where it happens.
//! - **Messages.** Problems name the field (its JSON path) and what is expected, never the
//!   value received.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Deepest nesting of arrays and objects accepted in a body (the Referral Request's form needs
/// five). serde_json stops at 128 with a bare syntax error; ours says where and why.
pub const MAX_DEPTH: usize = 64;

/// The media type every JSON route reads (named in 415 answers).
pub const JSON: &str = "application/json";

/// Checks the request's `Content-Encoding` and `Content-Type` for a JSON body.
pub fn check_json_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    check_encoding(headers)?;
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(not_json());
    };
    let ct = ct.to_str().map_err(|_| not_json())?;
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = essence == JSON
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if !json {
        return Err(not_json());
    }
    let other_charset = parts
        .filter_map(|p| p.split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("charset")
                && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        });
    if other_charset {
        return Err(ApiError::UnsupportedMediaType(
            "a JSON body must be UTF-8 (charset=utf-8)".into(),
        ));
    }
    Ok(())
}

/// A body sent compressed is refused: the routes read identity bodies only.
pub fn check_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let identity = v.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|e| e.trim().is_empty() || e.trim().eq_ignore_ascii_case("identity"))
        });
        if !identity {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Encoding is not supported: send the body uncompressed".into(),
            ));
        }
    }
    Ok(())
}

fn not_json() -> ApiError {
    ApiError::UnsupportedMediaType(format!("Content-Type must be {JSON}"))
}

// ---- strict parsing ----

/// The first problem a strict parse found, with its path. serde's error type carries only a
/// message, so the seeds leave the problem here and return a bare error.
#[derive(Default)]
pub struct Found(RefCell<Option<(String, &'static str)>>);

impl Found {
    pub fn fail<E: de::Error>(&self, path: &Path<'_>, problem: &'static str) -> E {
        let mut slot = self.0.borrow_mut();
        if slot.is_none() {
            *slot = Some((path.to_string(), problem));
        }
        E::custom(problem)
    }

    /// The error for a failed parse: the problem found, else serde_json's (by position).
    pub fn error(&self, e: &serde_json::Error) -> ApiError {
        match self.0.borrow_mut().take() {
            Some((path, problem)) => ApiError::field(&path, problem),
            None => syntax_error(e),
        }
    }
}

/// serde_json's own errors, by position only: its messages for wrong types quote values.
pub fn syntax_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let (line, column) = (e.line(), e.column());
    match e.classify() {
        // serde_json's own depth limit: inside a value read raw (a file's contents).
        _ if e.to_string().starts_with("recursion limit exceeded") => ApiError::InvalidJson(
            format!("the body is nested too deeply (line {line} column {column})"),
        ),
        Category::Eof => {
            ApiError::InvalidJson("the body ends before the JSON document does".into())
        }
        Category::Data => ApiError::InvalidJson(format!(
            "the body has the wrong shape near line {line} column {column}"
        )),
        Category::Syntax | Category::Io => ApiError::InvalidJson(format!(
            "the body is not valid JSON (line {line} column {column})"
        )),
    }
}

/// A JSON path, built only when a problem is reported: `agency.name`, `files[2].file_name`.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("body"),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(parent, k) => write!(f, "{parent}.{k}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Reads one JSON value, refusing a duplicate key, nesting deeper than [`MAX_DEPTH`] and,
/// unless `nul_ok`, a string holding NUL (`\u0000`: no text column stores it, PostgreSQL's
/// refuses it). `depth` counts the arrays and objects around the value.
pub struct StrictValue<'a> {
    pub found: &'a Found,
    pub path: Path<'a>,
    pub depth: usize,
    pub nul_ok: bool,
}

/// The problem of a string holding NUL.
pub const NUL: &str = "must not contain NUL characters (\\u0000)";

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // `10.0` is the integer 10 (as JSON Schema has it): every integer field takes it.
        const I64_RANGE: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && (-I64_RANGE..I64_RANGE).contains(&v) {
            #[allow(clippy::cast_possible_truncation)]
            return Ok((v as i64).into());
        }
        Ok(v.into())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.text(v)?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.text(&v)?;
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue {
            found: self.found,
            path: Path::Index(&self.path, out.len()),
            depth: self.depth + 1,
            nul_ok: self.nul_ok,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let path = Path::Key(&self.path, &key);
            if out.contains_key(key.as_ref()) {
                return Err(self.found.fail(&path, "is a duplicate key"));
            }
            if !self.nul_ok && key.contains('\0') {
                return Err(self
                    .found
                    .fail(&self.path, "has a key holding NUL (\\u0000)"));
            }
            let v = map.next_value_seed(StrictValue {
                found: self.found,
                path,
                depth: self.depth + 1,
                nul_ok: self.nul_ok,
            })?;
            out.insert(key.into_owned(), v);
        }
        Ok(Value::Object(out))
    }
}

impl StrictValue<'_> {
    fn text<E: de::Error>(&self, v: &str) -> Result<(), E> {
        if !self.nul_ok && v.contains('\0') {
            return Err(self.found.fail(&self.path, NUL));
        }
        Ok(())
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.found.fail(&self.path, TOO_DEEP));
        }
        Ok(())
    }
}

/// The problem of a value nested past [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "is nested too deeply (more than 64 levels of arrays and objects)";

/// A whole body as one strict JSON value.
pub fn parse_value(body: &[u8]) -> Result<Value, ApiError> {
    let found = Found::default();
    let mut d = serde_json::Deserializer::from_slice(body);
    let v = StrictValue {
        found: &found,
        path: Path::Root,
        depth: 0,
        nul_ok: false,
    }
    .deserialize(&mut d)
    .and_then(|v| d.end().map(|()| v))
    .map_err(|e| found.error(&e))?;
    Ok(v)
}

/// A parsed value as `T`, each problem named by its path and what was expected.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "body".to_owned() } else { path };
        ApiError::field(&path, &problem(&e.inner().to_string()))
    })
}

/// serde's message without the value it quotes: serde says `invalid type: string "…",
/// expected …`; we keep only what was expected.
pub(crate) fn problem(msg: &str) -> String {
    let expected = msg.rsplit_once(", expected ").map(|(_, e)| e);
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        return match expected {
            Some(e) => format!("has the wrong type or value (expected {e})"),
            None => "has the wrong type or value".into(),
        };
    }
    if msg.starts_with("unknown variant") {
        return match expected {
            Some(e) => format!("is not one of the allowed values (expected {e})"),
            None => "is not one of the allowed values".into(),
        };
    }
    if msg.starts_with("unknown field") {
        // The path ends with the key itself.
        return "is not a known field".into();
    }
    if msg.starts_with("missing field") || msg.starts_with("invalid length") {
        return msg.to_owned();
    }
    "is invalid".into()
}

// ---- extractors ----

/// A JSON body as `T`: 415 for another media type, 400 naming the path of each problem.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_json_headers(req.headers())?;
        let body = read(req, state).await?;
        from_value(parse_value(&body)?).map(JsonBody)
    }
}

/// A JSON body as a strict [`Value`], for handlers that validate the document themselves.
pub struct JsonValue(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_json_headers(req.headers())?;
        let body = read(req, state).await?;
        parse_value(&body).map(JsonValue)
    }
}

/// An optional JSON body: `None` when the request has none (empty, and no `Content-Type` or
/// a JSON one); a body that is there must be JSON (415 otherwise).
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_encoding(req.headers())?;
        let typed = req.headers().contains_key(header::CONTENT_TYPE);
        if typed {
            check_json_headers(req.headers())?;
        }
        let body = read(req, state).await?;
        if body.is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        if !typed {
            return Err(not_json());
        }
        from_value(parse_value(&body)?).map(|v| OptionalJsonBody(Some(v)))
    }
}

async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|e| ApiError::body_read(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn message(e: ApiError) -> String {
        match e {
            ApiError::InvalidRequest { message, .. } => message,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        for (body, path) in [
            (r#"{"a":1,"a":2}"#, "a"),
            (r#"{"x":{"name":"A","name":"B"}}"#, "x.name"),
            (r#"{"files":[{"k":1},{"k":1,"k":2}]}"#, "files[1].k"),
        ] {
            let e = parse_value(body.as_bytes()).unwrap_err();
            assert_eq!(message(e), format!("{path} is a duplicate key"), "{body}");
        }
        assert!(parse_value(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn nul_in_a_string_is_refused_with_its_path() {
        let e = parse_value(br#"{"a":[{"b":"x\u0000y"}]}"#).unwrap_err();
        assert_eq!(message(e), format!("a[0].b {NUL}"));
        assert!(parse_value(br#"{"a":"x\u0001y"}"#).is_ok());
    }

    #[test]
    fn deep_nesting_says_it_is_too_deep() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_value(ok.as_bytes()).is_ok());
        let deep = format!(
            "{{\"files\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        let e = message(parse_value(deep.as_bytes()).unwrap_err());
        assert!(e.starts_with("files[0]"), "{e}");
        assert!(e.contains("nested too deeply"), "{e}");
        let very_deep = "[".repeat(10_000);
        let e = message(parse_value(very_deep.as_bytes()).unwrap_err());
        assert!(e.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_path_not_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            n: Option<i64>,
            e: Option<Kind>,
        }
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            A,
        }
        let e = message(from_value::<T>(serde_json::json!({"n": "SECRET"})).unwrap_err());
        assert_eq!(e, "n has the wrong type or value (expected i64)");
        let e = message(from_value::<T>(serde_json::json!({"e": "SECRET"})).unwrap_err());
        assert!(e.starts_with("e is not one of the allowed values"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        let e = message(from_value::<T>(serde_json::json!({"zz": 1})).unwrap_err());
        assert_eq!(e, "zz is not a known field");
    }

    #[test]
    fn media_types() {
        let with = |ct: Option<&str>, ce: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            }
            if let Some(ce) = ce {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(ce).unwrap());
            }
            check_json_headers(&h).map_err(|e| e.to_string())
        };
        for ok in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/merge-patch+json",
        ] {
            assert_eq!(with(Some(ok), None), Ok(()), "{ok}");
        }
        assert_eq!(with(Some(JSON), Some("identity")), Ok(()));
        for bad in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert_eq!(
                with(bad, None),
                Err("Content-Type must be application/json".into())
            );
        }
        assert!(with(Some("application/json; charset=latin1"), None).is_err());
        assert!(
            with(Some(JSON), Some("gzip"))
                .unwrap_err()
                .contains("Content-Encoding")
        );
    }
}
