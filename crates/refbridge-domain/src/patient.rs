//! `PUT /v1/patients`: a patient pushed by a caller that keeps its own patient records.

use chrono::NaiveDate;
use serde_json::Value;

use crate::error::Violations;
use crate::plan::{FieldError, Reader, SourceId, bounded, object};
use crate::timezone::TimeZone;

/// Longest address line (or other one-line field) accepted.
pub const TEXT_MAX: usize = crate::text::LINE_MAX;
/// Longest first or last name accepted.
pub const NAME_MAX: usize = crate::text::NAME_MAX;

/// A validated `PUT /v1/patients` body. The update flow replaces every field (PUT semantics):
/// an optional field left out becomes empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientPut {
    pub source_id: SourceId,
    pub first_name: String,
    pub last_name: String,
    pub birthday: NaiveDate,
    pub gender: Option<String>,
    pub email: Option<String>,
    pub phone_main: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub timezone: Option<TimeZone>,
}

fn text(s: &str) -> Result<String, FieldError> {
    bounded(s, 1, TEXT_MAX)
}

fn name(s: &str) -> Result<String, FieldError> {
    bounded(s, 1, NAME_MAX)
}

fn date(s: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| FieldError::Date)
}

impl PatientPut {
    /// Validates a body, naming every problem. Silna's names are accepted where ours differ
    /// (`date_of_birth`, `sex`, `zip_code`, `address_line_1`); fields refbridge does not keep
    /// (provider, specialties, status) are ignored.
    pub fn parse(body: &Value) -> Result<PatientPut, Violations> {
        let map = object(body, "a patient")?;
        let mut r = Reader {
            map,
            v: Violations::default(),
        };
        let source_id = r.parsed("source_id", true, SourceId::parse);
        let first_name = r.parsed("first_name", true, name);
        let last_name = r.parsed("last_name", true, name);
        let dob_key = if map.contains_key("date_of_birth") || !map.contains_key("birthday") {
            "date_of_birth"
        } else {
            "birthday"
        };
        let birthday = r.parsed(dob_key, true, date);
        let mut opt = |keys: &[&str]| {
            let key = keys
                .iter()
                .copied()
                .find(|k| map.contains_key(*k))
                .unwrap_or(keys[0]);
            r.parsed(key, false, text)
        };
        let gender = opt(&["gender", "sex"]);
        let email = opt(&["email"]);
        let phone_main = opt(&["phone_main", "phone"]);
        let address = opt(&["address", "address_line_1"]);
        let city = opt(&["city"]);
        let state = opt(&["state"]);
        let zip = opt(&["zip", "zip_code"]);
        let country = opt(&["country"]);
        let timezone = r.parsed("timezone", false, |s| {
            TimeZone::parse(s).map_err(|_| FieldError::OneOf("the IANA time zone names"))
        });
        let Reader { v, .. } = r;
        match (source_id, first_name, last_name, birthday) {
            (Some(source_id), Some(first_name), Some(last_name), Some(birthday))
                if v.is_empty() =>
            {
                Ok(PatientPut {
                    source_id,
                    first_name,
                    last_name,
                    birthday,
                    gender,
                    email,
                    phone_main,
                    address,
                    city,
                    state,
                    zip,
                    country,
                    timezone,
                })
            }
            _ => Err(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn silna_names_are_accepted() {
        let p = PatientPut::parse(&json!({
            "source_id": "e1", "first_name": " Ana ", "last_name": "Lee",
            "date_of_birth": "2015-03-02", "sex": "FEMALE", "zip_code": "80202",
            "provider_id": "ignored",
        }))
        .unwrap();
        assert_eq!(p.first_name, "Ana");
        assert_eq!(p.birthday, NaiveDate::from_ymd_opt(2015, 3, 2).unwrap());
        assert_eq!(p.gender.as_deref(), Some("FEMALE"));
        assert_eq!(p.zip.as_deref(), Some("80202"));
    }

    #[test]
    fn every_problem_is_named() {
        let e = PatientPut::parse(&json!({"first_name": 3, "date_of_birth": "03/02/2015",
            "timezone": "MST"}))
        .unwrap_err();
        let paths: Vec<_> = e.0.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "source_id",
                "first_name",
                "last_name",
                "date_of_birth",
                "timezone"
            ]
        );
    }
}
