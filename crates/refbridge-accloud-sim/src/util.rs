//! Small helpers shared by the route modules: query strings, JSON field
//! access with family-shaped errors, and paging.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::faults::Family;

/// A parsed query string, keeping repeated keys.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// First value of `key`, empty values treated as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// All values of `key` (repeated keys and comma-separated values).
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key || k.strip_suffix("[]") == Some(key))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// `page` of `per_page` items, plus the total page count (0 when empty).
pub(crate) fn paginate<T>(items: Vec<T>, page: usize, per_page: usize) -> (Vec<T>, usize) {
    if per_page == 0 {
        return (Vec::new(), 0);
    }
    let total_pages = items.len().div_ceil(per_page);
    let start = (page.saturating_sub(1)).saturating_mul(per_page);
    let items = items.into_iter().skip(start).take(per_page).collect();
    (items, total_pages)
}

/// Parses an optional integer query parameter.
pub(crate) fn query_int(
    q: &Query,
    key: &str,
    default: i64,
    min: i64,
    family: Family,
) -> ApiResult<i64> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(bad_value(family, key, v)),
        },
    }
}

pub(crate) fn bad_value(family: Family, key: &str, value: &str) -> ApiError {
    let message = match family {
        Family::Ext => "Invalid request".to_owned(),
        Family::Authorizations => format!("{value} is not a valid choice for field `{key}`."),
        Family::Outbox => format!("'{value}' is not valid for '{key}'"),
    };
    ApiError::new(family, StatusCode::BAD_REQUEST, message)
}

/// Parses a JSON object body.
pub(crate) fn json_object(body: &[u8], family: Family) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            family,
            StatusCode::BAD_REQUEST,
            match family {
                Family::Outbox => "Request body is not a valid JSON object",
                Family::Authorizations => "Bad request.",
                Family::Ext => "Invalid request",
            },
        )),
        Err(_) => Err(ApiError::new(
            family,
            StatusCode::BAD_REQUEST,
            match family {
                Family::Outbox => "Request body is not valid JSON",
                Family::Authorizations => "Bad request.",
                Family::Ext => "Invalid request",
            },
        )),
    }
}

/// Typed access to the fields of a JSON object, with errors shaped for
/// one API family. `null` counts as absent.
pub(crate) struct Fields<'a> {
    pub obj: &'a Map<String, Value>,
    pub family: Family,
    /// Prefix for nested objects (`client.`), used in messages.
    pub prefix: &'a str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(obj: &'a Map<String, Value>, family: Family) -> Self {
        Self {
            obj,
            family,
            prefix: "",
        }
    }

    pub(crate) fn nested(obj: &'a Map<String, Value>, family: Family, prefix: &'a str) -> Self {
        Self {
            obj,
            family,
            prefix,
        }
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.present(name).is_some()
    }

    pub(crate) fn type_error(&self, name: &str, expected: &str) -> ApiError {
        let full = format!("{}{}", self.prefix, name);
        let message = match self.family {
            Family::Ext => format!("Field {full} must be of type {expected}."),
            Family::Authorizations => format!("`{full}` must be of type {expected}."),
            Family::Outbox => format!("'{full}' is not of type '{expected}'"),
        };
        ApiError::new(self.family, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn missing(&self, name: &str) -> ApiError {
        let full = format!("{}{}", self.prefix, name);
        let message = match self.family {
            Family::Ext => format!("Field {full} is required."),
            Family::Authorizations => format!("Missing data for required field `{full}`."),
            Family::Outbox => format!("'{full}' is a required property"),
        };
        ApiError::new(self.family, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_one_of(&self, name: &str, value: &str, allowed: &[&str]) -> ApiError {
        let full = format!("{}{}", self.prefix, name);
        let message = match self.family {
            Family::Ext => format!("Invalid value for field {full}: {value}."),
            Family::Authorizations => format!("{value} is not a valid choice for field `{full}`."),
            Family::Outbox => format!("'{value}' is not one of {allowed:?}"),
        };
        ApiError::new(self.family, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn str(&self, name: &str) -> ApiResult<Option<String>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.type_error(name, "string")),
        }
    }

    pub(crate) fn req_str(&self, name: &str) -> ApiResult<String> {
        self.str(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn enum_str(&self, name: &str, allowed: &[&str]) -> ApiResult<Option<String>> {
        match self.str(name)? {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
            Some(v) => Err(self.not_one_of(name, &v, allowed)),
        }
    }

    pub(crate) fn int(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.type_error(name, "integer")),
        }
    }

    pub(crate) fn req_int(&self, name: &str) -> ApiResult<i64> {
        self.int(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn num(&self, name: &str) -> ApiResult<Option<f64>> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.type_error(name, "number")),
        }
    }

    pub(crate) fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.type_error(name, "boolean")),
        }
    }

    pub(crate) fn object(&self, name: &str) -> ApiResult<Option<&'a Map<String, Value>>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.type_error(name, "object")),
        }
    }

    pub(crate) fn array(&self, name: &str) -> ApiResult<Option<&'a Vec<Value>>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.type_error(name, "array")),
        }
    }

    pub(crate) fn int_array(&self, name: &str) -> ApiResult<Option<Vec<i64>>> {
        match self.array(name)? {
            None => Ok(None),
            Some(items) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| self.type_error(name, "array of integers"))
                })
                .collect::<ApiResult<Vec<i64>>>()
                .map(Some),
        }
    }
}
