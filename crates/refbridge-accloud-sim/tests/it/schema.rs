//! A small validator of JSON values against the published OpenAPI /
//! Swagger response schemas (read from `../shared/reference/accloud`):
//! `$ref`, `allOf`, `anyOf`/`oneOf` (any branch), `type`, `nullable` /
//! `x-nullable`, `required`, `properties`, `items`, `enum` and the
//! `date`, `date-time` and `uuid` formats.

use std::path::PathBuf;

use serde_json::Value;

pub struct Spec {
    root: Value,
    name: String,
}

/// Enum values the sources document elsewhere (notes section 6): accepted
/// on top of a schema's `enum` for the named property.
pub type Extra<'a> = &'a [(&'a str, &'a [&'a str])];

pub fn specs_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ACCLOUD_SPECS_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/accloud")
}

impl Spec {
    pub fn load(file: &str) -> Spec {
        let path = specs_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the published spec {} ({e}); set ACCLOUD_SPECS_DIR",
                path.display()
            )
        });
        let root: Value = if file.ends_with(".json") {
            serde_json::from_str(&text).expect("spec is JSON")
        } else {
            serde_yaml_ng::from_str(&text).expect("spec is YAML")
        };
        Spec {
            root,
            name: file.to_owned(),
        }
    }

    fn deref<'a>(&'a self, mut s: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(r) = s.get("$ref").and_then(Value::as_str) else {
                return s;
            };
            let mut cur = &self.root;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part.replace("~1", "/").as_str()];
            }
            s = cur;
        }
        s
    }

    /// The response schema of `method path` for `status`.
    pub fn response(&self, path: &str, method: &str, status: &str) -> &Value {
        let op = &self.root["paths"][path][method];
        assert!(
            op.is_object(),
            "{}: no operation {method} {path}",
            self.name
        );
        let resp = self.deref(&op["responses"][status]);
        let schema = if resp.get("schema").is_some() {
            &resp["schema"]
        } else {
            let content = &resp["content"];
            content
                .get("application/json")
                .or_else(|| content.as_object().and_then(|m| m.values().next()))
                .map(|c| &c["schema"])
                .unwrap_or(&Value::Null)
        };
        assert!(
            !schema.is_null(),
            "{}: no schema for {method} {path} {status}",
            self.name
        );
        schema
    }

    /// The example values of a response (OpenAPI 3 `examples`/`example`).
    pub fn response_examples(&self, path: &str, method: &str, status: &str) -> Vec<Value> {
        let resp = self.deref(&self.root["paths"][path][method]["responses"][status]);
        let mut out = Vec::new();
        if let Some(content) = resp.get("content").and_then(Value::as_object) {
            for c in content.values() {
                if let Some(ex) = c.get("examples").and_then(Value::as_object) {
                    for e in ex.values() {
                        out.push(self.deref(e)["value"].clone());
                    }
                }
                if let Some(e) = c.get("example") {
                    out.push(e.clone());
                }
            }
        }
        if let Some(ex) = resp.get("examples").and_then(Value::as_object) {
            out.extend(ex.values().cloned());
        }
        out
    }

    /// The request body examples of an operation.
    pub fn request_examples(&self, path: &str, method: &str) -> Vec<Value> {
        let op = &self.root["paths"][path][method];
        let body = self.deref(&op["requestBody"]);
        let mut out = Vec::new();
        if let Some(content) = body.get("content").and_then(Value::as_object) {
            for c in content.values() {
                if let Some(ex) = c.get("examples").and_then(Value::as_object) {
                    for e in ex.values() {
                        out.push(self.deref(e)["value"].clone());
                    }
                }
                if let Some(e) = c.get("example") {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    pub fn check(
        &self,
        value: &Value,
        schema: &Value,
        extra: Extra<'_>,
    ) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.walk(value, schema, "$", extra, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Panics with every violation when `value` does not match.
    pub fn assert_valid(
        &self,
        path: &str,
        method: &str,
        status: &str,
        value: &Value,
        extra: Extra<'_>,
    ) {
        let schema = self.response(path, method, status);
        if let Err(errors) = self.check(value, schema, extra) {
            panic!(
                "{} {method} {path} {status}: response does not match the published schema:\n{}\nvalue: {value:#}",
                self.name,
                errors.join("\n")
            );
        }
    }

    fn walk(&self, v: &Value, s: &Value, at: &str, extra: Extra<'_>, errors: &mut Vec<String>) {
        let s = self.deref(s);
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.walk(v, sub, at, extra, errors);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = s.get(key).and_then(Value::as_array) {
                let ok = branches.iter().any(|b| {
                    let mut e = Vec::new();
                    self.walk(v, b, at, extra, &mut e);
                    e.is_empty()
                });
                if !ok {
                    errors.push(format!("{at}: matches no branch of {key}"));
                }
            }
        }
        if v.is_null() {
            let nullable = s.get("nullable") == Some(&Value::Bool(true))
                || s.get("x-nullable") == Some(&Value::Bool(true));
            if s.get("type").is_some() && !nullable {
                errors.push(format!("{at}: null where the schema does not allow it"));
            }
            return;
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: expected {t}, got {v}"));
                return;
            }
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
            let name = at.rsplit('.').next().unwrap_or_default();
            let documented_elsewhere = extra.iter().any(|(field, values)| {
                *field == name && v.as_str().is_some_and(|x| values.contains(&x))
            });
            if !allowed.contains(v) && !documented_elsewhere {
                errors.push(format!("{at}: {v} not in enum {allowed:?}"));
            }
        }
        if let (Some(fmt), Some(text)) = (s.get("format").and_then(Value::as_str), v.as_str()) {
            let ok = match fmt {
                "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
                "uuid" | "UUID" => uuid::Uuid::parse_str(text).is_ok(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: {text:?} is not a valid {fmt}"));
            }
        }
        if let Some(obj) = v.as_object() {
            if let Some(required) = s.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        errors.push(format!("{at}: missing required field {r}"));
                    }
                }
            }
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if let Some(child) = obj.get(k) {
                        self.walk(child, sub, &format!("{at}.{k}"), extra, errors);
                    }
                }
            }
        }
        if let (Some(items), Some(schema)) = (v.as_array(), s.get("items")) {
            for (i, item) in items.iter().enumerate() {
                self.walk(item, schema, &format!("{at}[{i}]"), extra, errors);
            }
        }
    }
}

#[test]
fn the_validator_rejects_a_value_breaking_a_published_schema() {
    let spec = Spec::load("alayacare-client-openapi.yml");
    let schema = spec.response("/clients", "post", "201");
    assert!(
        spec.check(
            &serde_json::json!({"id": 1, "external_id": "x"}),
            schema,
            &[]
        )
        .is_ok()
    );
    assert!(
        spec.check(
            &serde_json::json!({"id": "1", "external_id": "x"}),
            schema,
            &[]
        )
        .is_err()
    );
    assert!(
        spec.check(&serde_json::json!({"id": 1}), schema, &[])
            .is_err()
    );
    let group = spec.response("/groups", "get", "200");
    let bad_item =
        serde_json::json!({"count": 1, "page": 1, "total_pages": 1, "items": [{"id": "x"}]});
    assert!(spec.check(&bad_item, group, &[]).is_err());
}
