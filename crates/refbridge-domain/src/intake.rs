//! The Referral Request as AlayaConnector posts it, and its validation.
//!
//! [`validate`] takes the document's parts as untyped JSON so that it can report every
//! problem at once, each with its JSON path, instead of stopping at the first. The files are
//! not handled here: their contents are decoded and stored by the caller.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::Violations;
use crate::ids::RequestId;
use crate::text::{self, LABEL_MAX, LINE_MAX, NAME_MAX};
use crate::timezone::TimeZone;

/// The supply agency that sent the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agency {
    pub name: String,
    pub host: String,
    pub branch_id: i64,
    pub alayamarket_org_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "America/Denver"))]
    pub timezone: TimeZone,
}

/// The client as the agency's ACCloud knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientMeta {
    /// The client's primary key in the agency's ACCloud.
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub phone_main: Option<String>,
    pub birthday: Option<NaiveDate>,
    pub gender: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "America/Denver"))]
    pub timezone: TimeZone,
}

/// The form's own metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FormMeta {
    pub form_id: Option<i64>,
    pub form_name: Option<String>,
    pub form_schema_id: Option<String>,
    pub created_at: Option<String>,
    pub created_by: Option<String>,
}

/// One field of the submitted form, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FormField {
    /// Differs on every AlayaCare environment: kept for display, never used to match.
    pub field_id: i64,
    /// One line, at most 255 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 255,
            pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
        )
    )]
    pub field_tag: Option<String>,
    /// Not blank, at most 2,000 characters; line breaks and tabs are the only control
    /// characters it may hold.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2000,
            pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f](?:[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
        )
    )]
    pub field_label: String,
    /// One line, not blank, at most 255 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 255,
            pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
        )
    )]
    pub field_type: String,
    pub field_value: Value,
}

/// A Referral Request whose metadata passed validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeRequest {
    pub request_id: RequestId,
    pub agency: Agency,
    pub client: ClientMeta,
    pub form: FormMeta,
    pub fields: Vec<FormField>,
}

/// The parts of the payload that [`validate`] checks. `None` means the key was absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawParts<'a> {
    pub request_id: Option<&'a Value>,
    pub agency: Option<&'a Value>,
    pub client: Option<&'a Value>,
    pub form_data: Option<&'a Value>,
}

/// Checks every field the contract requires or types, and reports all problems at once.
pub fn validate(raw: RawParts<'_>) -> Result<IntakeRequest, Violations> {
    let mut v = Violations::default();

    let request_id = match raw.request_id {
        None | Some(Value::Null) => {
            v.push("request_id", "is required");
            None
        }
        Some(Value::String(s)) => match RequestId::parse(s) {
            Ok(id) => Some(id),
            Err(_) => {
                v.push("request_id", "must be a UUID");
                None
            }
        },
        Some(_) => {
            v.push("request_id", "must be a string holding a UUID");
            None
        }
    };

    let agency = Obj::required(raw.agency, "agency", &mut v).and_then(|o| {
        let name = o.req_str("name", LINE_MAX, &mut v);
        let host = o.req_str("host", LINE_MAX, &mut v);
        let branch_id = o.req_int("branch_id", &mut v);
        let org = o.req_uuid("alayamarket_org_id", &mut v);
        let tz = o.req_tz("timezone", &mut v);
        Some(Agency {
            name: name?,
            host: host?,
            branch_id: branch_id?,
            alayamarket_org_id: org?,
            timezone: tz?,
        })
    });

    let client = Obj::required(raw.client, "client", &mut v).and_then(|o| {
        let id = o.req_int("id", &mut v);
        let first_name = o.req_str("first_name", NAME_MAX, &mut v);
        let last_name = o.req_str("last_name", NAME_MAX, &mut v);
        let tz = o.req_tz("timezone", &mut v);
        let birthday = o.opt_date("birthday", &mut v);
        let opt = |k: &str, v: &mut Violations| o.opt_str(k, LINE_MAX, v);
        let client = ClientMeta {
            email: opt("email", &mut v),
            phone_main: opt("phone_main", &mut v),
            gender: opt("gender", &mut v),
            address: opt("address", &mut v),
            city: opt("city", &mut v),
            state: opt("state", &mut v),
            zip: opt("zip", &mut v),
            country: opt("country", &mut v),
            id: id?,
            first_name: first_name?,
            last_name: last_name?,
            birthday: birthday?,
            timezone: tz?,
        };
        Some(client)
    });

    let form = Obj::required(raw.form_data, "form_data", &mut v).and_then(|o| {
        let meta = FormMeta {
            form_id: o.opt_int("form_id", &mut v),
            form_name: o.opt_str("form_name", LINE_MAX, &mut v),
            form_schema_id: o.opt_str("form_schema_id", LINE_MAX, &mut v),
            created_at: o.opt_str("created_at", LINE_MAX, &mut v),
            created_by: o.opt_str("created_by", LINE_MAX, &mut v),
        };
        let fields = match o.get("fields") {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => {
                let mut fields = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    let path = format!("form_data.fields[{i}]");
                    match Obj::required(Some(item), &path, &mut v).and_then(|f| {
                        let field_id = f.req_int("field_id", &mut v);
                        let label = f.req_text("field_label", LABEL_MAX, text::free, &mut v);
                        let ty = f.req_str("field_type", LINE_MAX, &mut v);
                        let tag = f.opt_str("field_tag", LINE_MAX, &mut v);
                        Some(FormField {
                            field_id: field_id?,
                            field_tag: tag,
                            field_label: label?,
                            field_type: ty?,
                            field_value: f.get("field_value").cloned().unwrap_or(Value::Null),
                        })
                    }) {
                        Some(f) => fields.push(f),
                        None => ok = false,
                    }
                }
                ok.then_some(fields)
            }
            Some(_) => {
                v.push("form_data.fields", "must be an array");
                None
            }
        };
        Some((meta, fields?))
    });

    match (request_id, agency, client, form) {
        (Some(request_id), Some(agency), Some(client), Some((form, fields))) if v.is_empty() => {
            Ok(IntakeRequest {
                request_id,
                agency,
                client,
                form,
                fields,
            })
        }
        _ => Err(v),
    }
}

/// A JSON object being validated, with the path that prefixes its fields' names.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn required(value: Option<&'a Value>, path: &str, v: &mut Violations) -> Option<Self> {
        match value {
            None | Some(Value::Null) => {
                v.push(path, "is required");
                None
            }
            Some(Value::Object(map)) => Some(Self {
                map,
                path: path.to_owned(),
            }),
            Some(_) => {
                v.push(path, "must be an object");
                None
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// A required one-line value ([`text::line`]).
    fn req_str(&self, key: &str, max: usize, v: &mut Violations) -> Option<String> {
        self.req_text(key, max, text::line, v)
    }

    fn req_text(
        &self,
        key: &str,
        max: usize,
        check: fn(&str, usize) -> Result<&str, text::TextError>,
        v: &mut Violations,
    ) -> Option<String> {
        match self.get(key) {
            None => {
                v.push(self.at(key), "is required");
                None
            }
            Some(Value::String(s)) => match check(s, max) {
                Ok(t) => Some(t.to_owned()),
                Err(e) => {
                    v.push(self.at(key), e.to_string());
                    None
                }
            },
            Some(_) => {
                v.push(self.at(key), "must be a string");
                None
            }
        }
    }

    /// An optional one-line value: absent, null or blank is `None`.
    fn opt_str(&self, key: &str, max: usize, v: &mut Violations) -> Option<String> {
        match self.get(key) {
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match text::line(s, max) {
                Ok(t) => Some(t.to_owned()),
                Err(e) => {
                    v.push(self.at(key), e.to_string());
                    None
                }
            },
            Some(_) => {
                v.push(self.at(key), "must be a string");
                None
            }
        }
    }

    fn int_of(&self, key: &str, value: &Value, v: &mut Violations) -> Option<i64> {
        match value.as_i64() {
            Some(n) => Some(n),
            None => {
                v.push(self.at(key), "must be an integer");
                None
            }
        }
    }

    fn req_int(&self, key: &str, v: &mut Violations) -> Option<i64> {
        match self.get(key) {
            None => {
                v.push(self.at(key), "is required");
                None
            }
            Some(value) => self.int_of(key, value, v),
        }
    }

    fn opt_int(&self, key: &str, v: &mut Violations) -> Option<i64> {
        self.get(key).and_then(|value| self.int_of(key, value, v))
    }

    fn req_uuid(&self, key: &str, v: &mut Violations) -> Option<Uuid> {
        let s = self.req_str(key, LINE_MAX, v)?;
        match Uuid::parse_str(&s) {
            Ok(u) => Some(u),
            Err(_) => {
                v.push(self.at(key), "must be a UUID");
                None
            }
        }
    }

    fn req_tz(&self, key: &str, v: &mut Violations) -> Option<TimeZone> {
        let s = self.req_str(key, LINE_MAX, v)?;
        match TimeZone::parse(&s) {
            Ok(tz) => Some(tz),
            Err(e) => {
                v.push(self.at(key), e.to_string());
                None
            }
        }
    }

    /// `Some(None)` when absent, `None` when present but invalid.
    fn opt_date(&self, key: &str, v: &mut Violations) -> Option<Option<NaiveDate>> {
        let Some(s) = self.opt_str(key, LINE_MAX, v) else {
            return Some(None);
        };
        match NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            Ok(d) => Some(Some(d)),
            Err(_) => {
                v.push(self.at(key), "must be a date in the form YYYY-MM-DD");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "request_id": "0e1d5e34-63d7-4bb2-8e22-9376943ab56f",
            "agency": {"host": "https://x.example", "name": "Gem City Home Care",
                       "timezone": "America/Denver", "branch_id": 1050,
                       "alayamarket_org_id": "91c79089-a3ca-4cca-acf4-52fc1f1302c6"},
            "client": {"id": 1094, "first_name": "Jane", "last_name": "Smithers",
                       "timezone": "America/Denver", "birthday": "1998-05-07"},
            "form_data": {"form_id": 14, "fields": [
                {"field_id": 1, "field_label": "Service frequency", "field_type": "text",
                 "field_value": "Twice a week"}
            ]}
        })
    }

    fn parts(v: &Value) -> RawParts<'_> {
        RawParts {
            request_id: v.get("request_id"),
            agency: v.get("agency"),
            client: v.get("client"),
            form_data: v.get("form_data"),
        }
    }

    fn paths(err: Violations) -> Vec<String> {
        err.0.into_iter().map(|v| v.path).collect()
    }

    #[test]
    fn accepts_a_well_formed_request() {
        let doc = good();
        let req = validate(parts(&doc)).unwrap();
        assert_eq!(req.agency.branch_id, 1050);
        assert_eq!(req.client.birthday, NaiveDate::from_ymd_opt(1998, 5, 7));
        assert_eq!(req.fields.len(), 1);
    }

    #[test]
    fn reports_every_violation_at_once() {
        let mut doc = good();
        doc["request_id"] = json!("nope");
        doc["agency"]["timezone"] = json!("MST");
        doc["agency"]["branch_id"] = json!("x");
        doc["client"].as_object_mut().unwrap().remove("last_name");
        doc["client"]["birthday"] = json!("07/05/1998");
        doc["form_data"]["fields"][0]
            .as_object_mut()
            .unwrap()
            .remove("field_label");
        let err = validate(parts(&doc)).unwrap_err();
        assert_eq!(
            paths(err),
            vec![
                "request_id",
                "agency.branch_id",
                "agency.timezone",
                "client.last_name",
                "client.birthday",
                "form_data.fields[0].field_label",
            ]
        );
    }

    #[test]
    fn missing_sections_are_required() {
        let doc = json!({});
        let err = validate(parts(&doc)).unwrap_err();
        assert_eq!(
            paths(err),
            vec!["request_id", "agency", "client", "form_data"]
        );
    }

    #[test]
    fn messages_never_repeat_the_value() {
        let mut doc = good();
        doc["client"]["birthday"] = json!("SECRET-VALUE");
        doc["agency"]["timezone"] = json!("SECRET-TZ");
        let err = validate(parts(&doc)).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
