//! Turns the submitted form's fields into a [`StructuredReferral`].
//!
//! Fields are recognised by their `field_tag` when one is sent, otherwise by their label
//! after normalisation (case, spacing and punctuation ignored), through the one table
//! [`MEANINGS`]. `field_id` is never used: it differs on every AlayaCare environment.
//!
//! Nothing here rejects a request. A value that does not parse becomes a [`Warning`] for the
//! reviewer (without the value itself, since warnings travel back to the agency), and a field
//! that is not in the table is kept verbatim in [`StructuredReferral::unknown_fields`].

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::intake::{ClientMeta, FormField};
use crate::person::normalize_name;

/// What a form field means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meaning {
    ServiceRequested,
    ServiceStartDate,
    ServiceEndDate,
    ServiceFrequency,
    ServiceAuthorizations,
    PhysicianFirstName,
    PhysicianLastName,
    PhysicianNpi,
    PhysicianPhone,
    PhysicianOrder,
    Diagnoses,
    Insurance(Rank, InsuranceField),
    SecondaryInsuranceNeeded,
    Demographic(DemographicField),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rank {
    Primary,
    Secondary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsuranceField {
    Name,
    Phone,
    Group,
    SubscriberId,
    SubscriberName,
    SubscriberBirthday,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DemographicField {
    FirstName,
    LastName,
    PhoneMain,
    Email,
    Birthday,
    Gender,
    Address,
    City,
    State,
    Zip,
    Country,
}

use DemographicField as D;
use InsuranceField as I;
use Meaning as M;
use Rank::{Primary as P1, Secondary as P2};

/// The one table from labels (and tags) to meanings. Keys are compared after
/// [`normalize_label`]; several spellings may map to one meaning.
pub const MEANINGS: &[(&str, Meaning)] = &[
    ("Service Requested", M::ServiceRequested),
    ("Service start date", M::ServiceStartDate),
    ("Service end date", M::ServiceEndDate),
    ("Service frequency", M::ServiceFrequency),
    ("Service authorizations", M::ServiceAuthorizations),
    ("Physician first name", M::PhysicianFirstName),
    ("Physician last name", M::PhysicianLastName),
    ("Physician NPI", M::PhysicianNpi),
    ("Physician phone number", M::PhysicianPhone),
    ("Physician phone", M::PhysicianPhone),
    ("Physician order (PDF)", M::PhysicianOrder),
    ("Physician order", M::PhysicianOrder),
    ("ICD-10 Diagnosis", M::Diagnoses),
    ("Diagnosis", M::Diagnoses),
    ("Diagnoses", M::Diagnoses),
    ("Primary insurance name", M::Insurance(P1, I::Name)),
    ("Primary insurance phone number", M::Insurance(P1, I::Phone)),
    ("Primary insurance group", M::Insurance(P1, I::Group)),
    ("Primary subscriber ID", M::Insurance(P1, I::SubscriberId)),
    (
        "Primary subscriber full name",
        M::Insurance(P1, I::SubscriberName),
    ),
    (
        "Primary subscriber birthday",
        M::Insurance(P1, I::SubscriberBirthday),
    ),
    ("Secondary insurance needed?", M::SecondaryInsuranceNeeded),
    ("Secondary insurance name", M::Insurance(P2, I::Name)),
    (
        "Secondary insurance phone number",
        M::Insurance(P2, I::Phone),
    ),
    ("Secondary insurance group", M::Insurance(P2, I::Group)),
    ("Secondary subscriber ID", M::Insurance(P2, I::SubscriberId)),
    (
        "Secondary subscriber full name",
        M::Insurance(P2, I::SubscriberName),
    ),
    (
        "Secondary subscriber birthday",
        M::Insurance(P2, I::SubscriberBirthday),
    ),
    ("First Name", M::Demographic(D::FirstName)),
    ("Last Name", M::Demographic(D::LastName)),
    ("Phone (Main)", M::Demographic(D::PhoneMain)),
    ("Phone", M::Demographic(D::PhoneMain)),
    ("Email", M::Demographic(D::Email)),
    ("Date of Birth", M::Demographic(D::Birthday)),
    ("Birthday", M::Demographic(D::Birthday)),
    ("Gender", M::Demographic(D::Gender)),
    ("Address", M::Demographic(D::Address)),
    ("City", M::Demographic(D::City)),
    ("State", M::Demographic(D::State)),
    ("Zip Code", M::Demographic(D::Zip)),
    ("Zip", M::Demographic(D::Zip)),
    ("Country", M::Demographic(D::Country)),
];

/// Lowercase letters and digits only, so "Phone (Main)", "phone main" and "PHONE-MAIN" meet.
pub fn normalize_label(s: &str) -> String {
    normalize_name(s)
}

/// The meaning of a field: by tag first (`field_patient_first_name` style tags are matched
/// like labels, with the `field_` prefix ignored), then by label.
pub fn meaning_of(field: &FormField) -> Option<Meaning> {
    let lookup = |key: &str| {
        let key = normalize_label(key);
        MEANINGS
            .iter()
            .find(|(label, _)| normalize_label(label) == key)
            .map(|(_, m)| *m)
    };
    field
        .field_tag
        .as_deref()
        .and_then(|tag| lookup(tag.strip_prefix("field_").unwrap_or(tag)))
        .or_else(|| lookup(&field.field_label))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StructuredReferral {
    pub service: ServiceRequest,
    pub physician: Physician,
    pub diagnoses: Vec<Diagnosis>,
    pub primary_insurance: Option<Insurance>,
    /// Only when the form says a secondary insurance is needed.
    pub secondary_insurance: Option<Insurance>,
    pub secondary_insurance_needed: Option<bool>,
    pub demographics: Demographics,
    /// Fields the table does not know, kept as sent.
    pub unknown_fields: Vec<FormField>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceRequest {
    pub requested: Option<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub frequency: Option<String>,
    pub authorizations: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Physician {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// As sent, even when it is not a valid NPI (a warning says so).
    pub npi: Option<String>,
    pub phone: Option<String>,
    pub order_link: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diagnosis {
    /// The ICD-10 code: the part before `=`.
    pub code: Option<String>,
    /// The part after `=`.
    pub description: Option<String>,
    pub treatment: Option<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Insurance {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub group: Option<String>,
    pub subscriber_id: Option<String>,
    pub subscriber_name: Option<String>,
    pub subscriber_birthday: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Demographics {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_main: Option<String>,
    pub email: Option<String>,
    pub birthday: Option<NaiveDate>,
    pub gender: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
}

/// Something a reviewer should look at. Never carries the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Warning {
    /// The form field's label (or the part of the referral) concerned.
    pub field: String,
    /// A stable machine code, e.g. `invalid_date`.
    pub code: String,
    pub message: String,
}

impl Warning {
    fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// The result of parsing a form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedForm {
    pub referral: StructuredReferral,
    pub warnings: Vec<Warning>,
}

/// Parses the form's fields. `client` is the request's client metadata, used to flag
/// demographics that disagree with it.
pub fn parse(fields: &[FormField], client: Option<&ClientMeta>) -> ParsedForm {
    let mut out = Parser::default();
    let mut seen: Vec<Meaning> = Vec::new();
    let mut secondary: Vec<(&FormField, InsuranceField)> = Vec::new();
    for field in fields {
        if field.field_type == "section" {
            continue;
        }
        let Some(meaning) = meaning_of(field) else {
            out.r.unknown_fields.push(field.clone());
            continue;
        };
        if seen.contains(&meaning) {
            out.warn(
                &field.field_label,
                "duplicate_field",
                "appears more than once; the first value is used",
            );
            continue;
        }
        seen.push(meaning);
        match meaning {
            M::Insurance(P2, f) => secondary.push((field, f)),
            _ => out.apply(field, meaning),
        }
    }
    if out.r.secondary_insurance_needed == Some(true) {
        for (field, f) in secondary {
            out.apply(field, M::Insurance(P2, f));
        }
    }
    out.check_whole(client);
    ParsedForm {
        referral: out.r,
        warnings: out.warnings,
    }
}

#[derive(Default)]
struct Parser {
    r: StructuredReferral,
    warnings: Vec<Warning>,
}

impl Parser {
    fn warn(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.warnings.push(Warning::new(field, code, message));
    }

    fn text(&mut self, f: &FormField) -> Option<String> {
        match scalar_text(&f.field_value) {
            Ok(v) => v,
            Err(()) => {
                self.warn(
                    &f.field_label,
                    "unexpected_shape",
                    "value has an unexpected shape; kept as sent",
                );
                None
            }
        }
    }

    fn date(&mut self, f: &FormField) -> Option<NaiveDate> {
        let text = self.text(f)?;
        let d = parse_date(&text);
        if d.is_none() {
            self.warn(
                &f.field_label,
                "invalid_date",
                "is not a date (expected YYYY-MM-DD)",
            );
        }
        d
    }

    fn apply(&mut self, f: &FormField, meaning: Meaning) {
        match meaning {
            M::ServiceRequested => self.r.service.requested = self.text(f),
            M::ServiceStartDate => self.r.service.start_date = self.date(f),
            M::ServiceEndDate => self.r.service.end_date = self.date(f),
            M::ServiceFrequency => self.r.service.frequency = self.text(f),
            M::ServiceAuthorizations => self.r.service.authorizations = self.text(f),
            M::PhysicianFirstName => self.r.physician.first_name = self.text(f),
            M::PhysicianLastName => self.r.physician.last_name = self.text(f),
            M::PhysicianPhone => self.r.physician.phone = self.text(f),
            M::PhysicianOrder => self.r.physician.order_link = self.text(f),
            M::PhysicianNpi => {
                let npi = self.text(f);
                if let Some(n) = &npi {
                    if let Err(problem) = check_npi(n) {
                        self.warn(&f.field_label, "invalid_npi", problem);
                    }
                }
                self.r.physician.npi = npi;
            }
            M::Diagnoses => self.diagnoses(f),
            M::SecondaryInsuranceNeeded => {
                self.r.secondary_insurance_needed = match &f.field_value {
                    Value::Bool(b) => Some(*b),
                    Value::Null => None,
                    other => match scalar_text(other)
                        .ok()
                        .flatten()
                        .as_deref()
                        .map(str::to_ascii_lowercase)
                        .as_deref()
                    {
                        Some("true" | "yes" | "y" | "1") => Some(true),
                        Some("false" | "no" | "n" | "0") => Some(false),
                        None => None,
                        Some(_) => {
                            self.warn(
                                &f.field_label,
                                "invalid_boolean",
                                "is neither yes nor no; treated as no",
                            );
                            Some(false)
                        }
                    },
                };
            }
            M::Insurance(rank, field) => {
                let value = match field {
                    I::SubscriberBirthday => {
                        let d = self.date(f);
                        let ins = self.insurance(rank);
                        ins.subscriber_birthday = d;
                        return;
                    }
                    _ => self.text(f),
                };
                let ins = self.insurance(rank);
                match field {
                    I::Name => ins.name = value,
                    I::Phone => ins.phone = value,
                    I::Group => ins.group = value,
                    I::SubscriberId => ins.subscriber_id = value,
                    I::SubscriberName => ins.subscriber_name = value,
                    I::SubscriberBirthday => {}
                }
            }
            M::Demographic(D::Birthday) => self.r.demographics.birthday = self.date(f),
            M::Demographic(d) => {
                let value = self.text(f);
                let demo = &mut self.r.demographics;
                let slot = match d {
                    D::FirstName => &mut demo.first_name,
                    D::LastName => &mut demo.last_name,
                    D::PhoneMain => &mut demo.phone_main,
                    D::Email => &mut demo.email,
                    D::Gender => &mut demo.gender,
                    D::Address => &mut demo.address,
                    D::City => &mut demo.city,
                    D::State => &mut demo.state,
                    D::Zip => &mut demo.zip,
                    D::Country => &mut demo.country,
                    D::Birthday => return,
                };
                *slot = value;
            }
        }
    }

    fn insurance(&mut self, rank: Rank) -> &mut Insurance {
        let slot = match rank {
            P1 => &mut self.r.primary_insurance,
            P2 => &mut self.r.secondary_insurance,
        };
        slot.get_or_insert_with(Insurance::default)
    }

    fn diagnoses(&mut self, f: &FormField) {
        let items = match &f.field_value {
            Value::Array(items) => items,
            Value::Null => return,
            _ => {
                self.warn(
                    &f.field_label,
                    "unexpected_shape",
                    "expected a list of diagnoses; kept as sent",
                );
                return;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let label = format!("{} #{}", f.field_label, i + 1);
            let Some(values) = item.get("values").and_then(Value::as_array) else {
                self.warn(
                    &label,
                    "unexpected_shape",
                    "expected an entry with values; skipped",
                );
                continue;
            };
            let mut d = Diagnosis::default();
            for kv in values {
                let key = kv
                    .get("field_key")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let value = kv
                    .get("field_value")
                    .map(scalar_text)
                    .and_then(Result::ok)
                    .flatten();
                match key {
                    "diagnosis" => {
                        if let Some(v) = value {
                            let (code, desc) = match v.split_once('=') {
                                Some((c, d)) => (c.trim(), d.trim()),
                                None => (v.trim(), ""),
                            };
                            if !is_icd10(code) {
                                self.warn(
                                    &label,
                                    "invalid_icd10",
                                    "code does not look like an ICD-10 code",
                                );
                            }
                            d.code = (!code.is_empty()).then(|| code.to_owned());
                            d.description = (!desc.is_empty()).then(|| desc.to_owned());
                        }
                    }
                    "treatment" => d.treatment = value,
                    "notes" => d.notes = value,
                    "start_date" | "end_date" => {
                        let date = value.as_deref().and_then(|s| {
                            let d = parse_date(s);
                            if d.is_none() {
                                self.warn(
                                    &label,
                                    "invalid_date",
                                    format!("{key} is not a date (expected YYYY-MM-DD)"),
                                );
                            }
                            d
                        });
                        if key == "start_date" {
                            d.start_date = date;
                        } else {
                            d.end_date = date;
                        }
                    }
                    _ => self.warn(
                        &label,
                        "unknown_key",
                        "has an entry this service does not know; kept in the form",
                    ),
                }
            }
            self.r.diagnoses.push(d);
        }
    }

    fn check_whole(&mut self, client: Option<&ClientMeta>) {
        let (r, w) = (&self.r, &mut self.warnings);
        let mut warn = |field: &str, code: &str, msg: &str| w.push(Warning::new(field, code, msg));
        let s = &r.service;
        if s.requested.is_none() {
            warn("Service Requested", "missing", "no service was requested");
        }
        if s.start_date.is_none() {
            warn(
                "Service start date",
                "missing",
                "no valid service start date",
            );
        }
        if let (Some(a), Some(b)) = (s.start_date, s.end_date) {
            if b < a {
                warn(
                    "Service end date",
                    "end_before_start",
                    "is before the service start date",
                );
            }
        }
        match &r.primary_insurance {
            None => warn("Primary insurance name", "missing", "no primary insurance"),
            Some(ins) if ins.subscriber_id.is_none() => warn(
                "Primary subscriber ID",
                "missing",
                "no member number for the primary insurance",
            ),
            Some(_) => {}
        }
        if r.secondary_insurance_needed == Some(true) && r.secondary_insurance.is_none() {
            warn(
                "Secondary insurance name",
                "missing",
                "a secondary insurance is needed but none was given",
            );
        }
        if let Some(c) = client {
            let demo = &r.demographics;
            if let (Some(a), Some(b)) = (demo.birthday, c.birthday) {
                if a != b {
                    warn(
                        "Date of Birth",
                        "mismatch",
                        "differs from the client's birthday in the request",
                    );
                }
            }
        }
    }
}

/// Text of a scalar or list-option value. `Ok(None)` for null or empty, `Err` for shapes that
/// are not a scalar (an object that is not a list option, an array).
fn scalar_text(v: &Value) -> Result<Option<String>, ()> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(o) => match o.get("option") {
            // List fields: {"option": {"name": "PT", "value": "PT"}}; the value is the key.
            Some(opt) => {
                let pick = opt
                    .get("value")
                    .filter(|v| !v.is_null())
                    .or_else(|| opt.get("name"));
                return match pick {
                    Some(p @ (Value::String(_) | Value::Number(_))) => scalar_text(p),
                    Some(Value::Null) | None => Ok(None),
                    Some(_) => Err(()),
                };
            }
            None => return Err(()),
        },
        Value::Array(_) => return Err(()),
    };
    Ok((!s.is_empty()).then_some(s))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    // Form dates are ISO dates; a timestamp's date part is accepted too.
    let head = s.get(..10).unwrap_or(s);
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

/// A National Provider Identifier: 10 digits whose last is a Luhn check digit computed with
/// the `80840` prefix.
pub fn check_npi(s: &str) -> Result<(), &'static str> {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 10 || s.chars().any(|c| !c.is_ascii_digit()) {
        return Err("must be 10 digits");
    }
    // Luhn over "80840" + the first nine digits, doubling every second digit from the right
    // of the payload (the check digit excluded).
    let payload: Vec<u32> = [8, 0, 8, 4, 0]
        .into_iter()
        .chain(digits[..9].iter().copied())
        .collect();
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    if check == digits[9] {
        Ok(())
    } else {
        Err("check digit does not match")
    }
}

/// Letter, digit, alphanumeric, then up to four more alphanumerics, with an optional dot
/// after the third character (`A000`, `E08.00`, `S72.001A`).
pub fn is_icd10(code: &str) -> bool {
    let compact: String = code.chars().filter(|c| *c != '.').collect();
    let b = compact.as_bytes();
    (3..=7).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && b[2..]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        && code
            .find('.')
            .is_none_or(|i| i == 3 && code.matches('.').count() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(id: i64, label: &str, ty: &str, value: Value) -> FormField {
        FormField {
            field_id: id,
            field_tag: None,
            field_label: label.to_owned(),
            field_type: ty.to_owned(),
            field_value: value,
        }
    }

    #[test]
    fn every_table_key_is_distinct_after_normalisation() {
        let mut keys: Vec<String> = MEANINGS.iter().map(|(l, _)| normalize_label(l)).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn labels_match_regardless_of_case_spacing_and_punctuation() {
        let f = field(1, "  PHYSICIAN   npi: ", "number", json!(1234567893));
        assert_eq!(meaning_of(&f), Some(M::PhysicianNpi));
    }

    #[test]
    fn tag_wins_over_label() {
        let mut f = field(1, "Something else", "text", json!("x"));
        f.field_tag = Some("field_service_frequency".into());
        assert_eq!(meaning_of(&f), Some(M::ServiceFrequency));
    }

    #[test]
    fn npi_check_digit() {
        assert_eq!(check_npi("1234567893"), Ok(()));
        assert_eq!(check_npi("1234567890"), Err("check digit does not match"));
        assert_eq!(check_npi("12234567"), Err("must be 10 digits"));
        assert_eq!(check_npi("12345-6789"), Err("must be 10 digits"));
    }

    #[test]
    fn icd10_codes() {
        for ok in ["A000", "E0800", "E08.00", "S72.001A", "Z99"] {
            assert!(is_icd10(ok), "{ok}");
        }
        for bad in ["", "000", "a00", "A0", "A00.0.0", "A0.00", "A00000000"] {
            assert!(!is_icd10(bad), "{bad}");
        }
    }

    #[test]
    fn secondary_insurance_is_ignored_unless_needed() {
        let fields = vec![
            field(1, "Secondary insurance needed?", "checkbox", json!(false)),
            field(2, "Secondary insurance name", "text", json!("XYZ")),
        ];
        let p = parse(&fields, None);
        assert_eq!(p.referral.secondary_insurance, None);
        assert!(p.referral.unknown_fields.is_empty());

        let fields = vec![
            field(2, "Secondary insurance name", "text", json!("XYZ")),
            field(1, "Secondary insurance needed?", "checkbox", json!("Yes")),
        ];
        let p = parse(&fields, None);
        assert_eq!(
            p.referral.secondary_insurance.unwrap().name.as_deref(),
            Some("XYZ")
        );
    }

    #[test]
    fn unparseable_values_become_warnings_without_the_value() {
        let fields = vec![
            field(1, "Service start date", "date", json!("SECRET-not-a-date")),
            field(2, "Physician NPI", "number", json!(42)),
        ];
        let p = parse(&fields, None);
        assert_eq!(p.referral.service.start_date, None);
        assert_eq!(p.referral.physician.npi.as_deref(), Some("42"));
        let codes: Vec<&str> = p.warnings.iter().map(|w| w.code.as_str()).collect();
        assert!(codes.contains(&"invalid_date"), "{codes:?}");
        assert!(codes.contains(&"invalid_npi"), "{codes:?}");
        let text = serde_json::to_string(&p.warnings).unwrap();
        assert!(!text.contains("SECRET"));
    }

    #[test]
    fn unknown_fields_are_kept_verbatim() {
        let f = field(9, "Favourite colour", "text", json!({"deep": [1, 2]}));
        let p = parse(std::slice::from_ref(&f), None);
        assert_eq!(p.referral.unknown_fields, vec![f]);
    }

    #[test]
    fn section_fields_are_headings_not_unknown_fields() {
        let p = parse(&[field(1, "Physician", "section", Value::Null)], None);
        assert!(p.referral.unknown_fields.is_empty());
    }

    #[test]
    fn duplicate_meaning_keeps_the_first_and_warns() {
        let fields = vec![
            field(1, "Service frequency", "text", json!("Twice a week")),
            field(2, "service   FREQUENCY", "text", json!("Daily")),
        ];
        let p = parse(&fields, None);
        assert_eq!(
            p.referral.service.frequency.as_deref(),
            Some("Twice a week")
        );
        assert!(p.warnings.iter().any(|w| w.code == "duplicate_field"));
    }
}
