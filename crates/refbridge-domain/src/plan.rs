//! Patient plans (a patient's insurances) and the PUT decision procedure.
//!
//! A plan's fields are immutable once created; only its `source_id` (the caller's id for it)
//! can change. `PUT /v1/patient-plans` decides, from the patient's *active* plans, one of:
//!
//! 1. an active plan with the request's `source_id`: returned unchanged;
//! 2. else a duplicate by the deduplication strategy: it only takes the new `source_id`;
//! 3. else a new plan; if another active plan holds the requested `plan_order_number`, the
//!    conflict behaviour decides between replacing it (archive + withdraw its in-progress
//!    authorizations) and refusing with a conflict.
//!
//! [`decide`] is that procedure, pure; storage feeds it the active plans inside the write
//! transaction and carries the decision out. Archived plans never take part.

use std::fmt;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Violations;
use crate::ids::{FileId, PatientId, PayorId, PlanId};
use crate::person::normalize_name;

/// Silna's bounds for a member number (subscriber id): shorter is a typo, longer is not a
/// member number.
pub const MEMBER_NUMBER_MIN: usize = 2;
pub const MEMBER_NUMBER_MAX: usize = 80;
/// The caller's id for a record. Silna sets no limit; 255 matches the `Idempotency-Key`
/// limit and keeps index entries small.
pub const SOURCE_ID_MAX: usize = 255;
/// Plan order numbers: 1 primary, 2 secondary, … Nobody has a hundred insurances; a larger
/// number is a mistake.
pub const PLAN_ORDER_MAX: i64 = 99;

/// Why a value was refused. Messages never repeat the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("must be a string")]
    NotAString,
    #[error("must be from {min} to {max} characters")]
    Length { min: usize, max: usize },
    #[error("must be a whole number from 1 to {PLAN_ORDER_MAX}")]
    PlanOrder,
    #[error("must be a date (YYYY-MM-DD) or an RFC 3339 date-time")]
    Date,
    #[error("must be one of {0}")]
    OneOf(&'static str),
    #[error("must be a UUID")]
    Uuid,
    #[error("must not contain control characters (such as line breaks or tabs)")]
    Control,
}

/// One line of text ([`crate::text`]): trimmed, `min` to `max` characters, no control character.
pub(crate) fn bounded(s: &str, min: usize, max: usize) -> Result<String, FieldError> {
    let t = s.trim();
    if t.chars().any(char::is_control) {
        return Err(FieldError::Control);
    }
    let n = t.chars().count();
    if n < min || n > max {
        Err(FieldError::Length { min, max })
    } else {
        Ok(t.to_owned())
    }
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Trims, then checks the length in characters.
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                bounded(s, $min, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// The subscriber / member id on the insurance card.
    MemberNumber,
    MEMBER_NUMBER_MIN,
    MEMBER_NUMBER_MAX
);
text_value!(
    /// The group number on the insurance card (same bounds as the member number).
    GroupNumber,
    MEMBER_NUMBER_MIN,
    MEMBER_NUMBER_MAX
);
text_value!(
    /// The caller's own id for a record (a plan or a patient).
    SourceId,
    1,
    SOURCE_ID_MAX
);

/// 1 = primary, 2 = secondary, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanOrder(i64);

impl PlanOrder {
    pub const PRIMARY: PlanOrder = PlanOrder(1);
    pub const SECONDARY: PlanOrder = PlanOrder(2);

    pub fn parse(n: i64) -> Result<Self, FieldError> {
        if (1..=PLAN_ORDER_MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(FieldError::PlanOrder)
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A coverage date: `YYYY-MM-DD`, or an RFC 3339 date-time (Silna types these as date-time)
/// whose date part is kept.
pub fn parse_plan_date(s: &str) -> Result<NaiveDate, FieldError> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.date_naive()))
        .ok_or(FieldError::Date)
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        // By hand: the derive does not see the wire names through the macro.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($wire),+]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const NAMES: &'static str = concat!($($wire, " "),+);

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            /// The wire name, exactly (upper case).
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(FieldError::OneOf(Self::NAMES.trim_ascii_end())),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Kind of insurance.
    InsuranceType {
        Commercial = "COMMERCIAL",
        Medicare = "MEDICARE",
        Medicaid = "MEDICAID",
        RegionalCenter = "REGIONAL_CENTER",
        WorkersCompensation = "WORKERS_COMPENSATION",
        AutoInsurance = "AUTO_INSURANCE",
    }
);

wire_enum!(
    /// What a PUT does when the requested plan order is held by another active plan.
    ConflictBehavior {
        /// Archive the occupant (withdrawing its in-progress authorizations) and create.
        Replace = "REPLACE",
        /// Refuse (409); nothing changes.
        RaiseError = "RAISE_ERROR",
        /// Refuse only if the occupant has an authorization in progress; else replace.
        RaiseErrorOnAuthWithdrawal = "RAISE_ERROR_ON_AUTH_WITHDRAWAL",
    }
);

wire_enum!(
    /// Which existing plan counts as the same plan under another `source_id`.
    DeduplicationStrategy {
        MemberNumber = "MEMBER_NUMBER",
        MemberNumberAndPayor = "MEMBER_NUMBER_AND_PAYOR",
        MemberNumberPayorAndOrder = "MEMBER_NUMBER_PAYOR_AND_ORDER",
    }
);

// The enums come from a macro that cannot mark a default variant.
#[allow(clippy::derivable_impls)]
impl Default for ConflictBehavior {
    /// Silna's documented default, destructive as it is.
    fn default() -> Self {
        ConflictBehavior::Replace
    }
}

#[allow(clippy::derivable_impls)]
impl Default for DeduplicationStrategy {
    fn default() -> Self {
        DeduplicationStrategy::MemberNumber
    }
}

/// The immutable fields of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFields {
    pub member_number: MemberNumber,
    pub payor_id: PayorId,
    pub plan_order: PlanOrder,
    pub group_number: Option<GroupNumber>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub insurance_type: Option<InsuranceType>,
    pub insurance_card_file_id: Option<FileId>,
    pub insurance_card_back_file_id: Option<FileId>,
}

impl PlanFields {
    /// The wire names of the fields whose values differ from `stored`: what a source_id match
    /// or a deduplication ignored.
    pub fn differing_from(&self, stored: &PlanFields) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name, same: bool| {
            if !same {
                out.push(name);
            }
        };
        check("member_number", self.member_number == stored.member_number);
        check("payor_entity_id", self.payor_id == stored.payor_id);
        check("plan_order_number", self.plan_order == stored.plan_order);
        check("group_number", self.group_number == stored.group_number);
        check("start_date", self.start_date == stored.start_date);
        check("end_date", self.end_date == stored.end_date);
        check(
            "insurance_type",
            self.insurance_type == stored.insurance_type,
        );
        check(
            "insurance_card_file_id",
            self.insurance_card_file_id == stored.insurance_card_file_id,
        );
        check(
            "insurance_card_back_file_id",
            self.insurance_card_back_file_id == stored.insurance_card_back_file_id,
        );
        out
    }
}

/// A validated `PUT /v1/patient-plans` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPut {
    pub patient_id: PatientId,
    pub source_id: SourceId,
    pub fields: PlanFields,
    /// `None`: the server's configured default.
    pub conflict_behavior: Option<ConflictBehavior>,
    pub deduplication_strategy: DeduplicationStrategy,
}

/// Every field a PUT body may carry.
const PUT_FIELDS: &[&str] = &[
    "patient_id",
    "source_id",
    "member_number",
    "payor_entity_id",
    "plan_order_number",
    "group_number",
    "start_date",
    "end_date",
    "insurance_type",
    "insurance_card_file_id",
    "insurance_card_back_file_id",
    "conflict_behavior",
    "conflict_strategy",
    "deduplication_strategy",
];

/// Reads fields of one JSON object, collecting every problem.
pub(crate) struct Reader<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) v: Violations,
}

impl<'a> Reader<'a> {
    /// The field's string value; `None` when absent or null; a violation when required and
    /// missing, or not a string.
    pub(crate) fn text(&mut self, key: &str, required: bool) -> Option<&'a str> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.v.push(key, "is required");
                }
                None
            }
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.v.push(key, FieldError::NotAString.to_string());
                None
            }
        }
    }

    pub(crate) fn parsed<T>(
        &mut self,
        key: &str,
        required: bool,
        parse: impl FnOnce(&str) -> Result<T, FieldError>,
    ) -> Option<T> {
        let s = self.text(key, required)?;
        match parse(s) {
            Ok(t) => Some(t),
            Err(e) => {
                self.v.push(key, e.to_string());
                None
            }
        }
    }

    fn uuid<T>(&mut self, key: &str, required: bool, parse: fn(&str) -> Option<T>) -> Option<T> {
        self.parsed(key, required, |s| parse(s).ok_or(FieldError::Uuid))
    }

    fn plan_order(&mut self, key: &str) -> Option<PlanOrder> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                self.v.push(key, "is required");
                None
            }
            Some(Value::Number(n)) => match n.as_i64().map(PlanOrder::parse) {
                Some(Ok(o)) => Some(o),
                _ => {
                    self.v.push(key, FieldError::PlanOrder.to_string());
                    None
                }
            },
            Some(_) => {
                self.v.push(key, FieldError::PlanOrder.to_string());
                None
            }
        }
    }

    fn unknown_fields(&mut self, known: &[&str], what: &str) {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            self.v.push(k, format!("is not a field of {what}"));
        }
    }
}

pub(crate) fn object<'a>(
    body: &'a Value,
    what: &str,
) -> Result<&'a Map<String, Value>, Violations> {
    body.as_object().ok_or_else(|| {
        let mut v = Violations::default();
        v.push("$", format!("must be a JSON object ({what})"));
        v
    })
}

impl PlanPut {
    /// Validates a PUT body, reporting every problem with its field. Unknown fields are
    /// refused: a misspelt `conflict_behavior` would otherwise silently mean REPLACE.
    pub fn parse(body: &Value) -> Result<PlanPut, Violations> {
        let map = object(body, "a patient plan")?;
        let mut r = Reader {
            map,
            v: Violations::default(),
        };
        r.unknown_fields(PUT_FIELDS, "a patient plan");
        let patient_id = r.uuid("patient_id", true, |s| PatientId::parse(s).ok());
        let source_id = r.parsed("source_id", true, SourceId::parse);
        let member_number = r.parsed("member_number", true, MemberNumber::parse);
        let payor_id = r.uuid("payor_entity_id", true, |s| PayorId::parse(s).ok());
        let plan_order = r.plan_order("plan_order_number");
        let group_number = r.parsed("group_number", false, GroupNumber::parse);
        let start_date = r.parsed("start_date", false, parse_plan_date);
        let end_date = r.parsed("end_date", false, parse_plan_date);
        if let (Some(a), Some(b)) = (start_date, end_date) {
            if b < a {
                r.v.push("end_date", "must not be before start_date");
            }
        }
        let insurance_type = r.parsed("insurance_type", false, InsuranceType::parse);
        let card = r.uuid("insurance_card_file_id", false, |s| FileId::parse(s).ok());
        let card_back = r.uuid("insurance_card_back_file_id", false, |s| {
            FileId::parse(s).ok()
        });
        let behavior = r.parsed("conflict_behavior", false, ConflictBehavior::parse);
        let alias = r.parsed("conflict_strategy", false, ConflictBehavior::parse);
        let conflict_behavior = match (behavior, alias) {
            (Some(a), Some(b)) if a != b => {
                r.v.push(
                    "conflict_strategy",
                    "is an alias of conflict_behavior and must not differ from it",
                );
                None
            }
            (a, b) => a.or(b),
        };
        let dedup = r.parsed(
            "deduplication_strategy",
            false,
            DeduplicationStrategy::parse,
        );
        let Reader { v, .. } = r;
        match (patient_id, source_id, member_number, payor_id, plan_order) {
            (Some(patient_id), Some(source_id), Some(member_number), Some(payor_id), Some(po))
                if v.is_empty() =>
            {
                Ok(PlanPut {
                    patient_id,
                    source_id,
                    fields: PlanFields {
                        member_number,
                        payor_id,
                        plan_order: po,
                        group_number,
                        start_date,
                        end_date,
                        insurance_type,
                        insurance_card_file_id: card,
                        insurance_card_back_file_id: card_back,
                    },
                    conflict_behavior,
                    deduplication_strategy: dedup.unwrap_or_default(),
                })
            }
            _ => Err(v),
        }
    }
}

/// A validated `PATCH /v1/patient-plans/{id}` body: the source_id only (null clears it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPatch {
    pub source_id: Option<SourceId>,
}

impl PlanPatch {
    pub fn parse(body: &Value) -> Result<PlanPatch, Violations> {
        let map = object(body, "a patient plan change")?;
        let mut r = Reader {
            map,
            v: Violations::default(),
        };
        for k in map.keys().filter(|k| k.as_str() != "source_id") {
            r.v.push(
                k.clone(),
                "cannot be changed: a plan's fields are immutable except source_id",
            );
        }
        if !map.contains_key("source_id") {
            r.v.push("source_id", "is required (null clears it)");
        }
        let source_id = r.parsed("source_id", false, SourceId::parse);
        let Reader { v, .. } = r;
        v.into_result(PlanPatch { source_id })
    }
}

/// An active plan of the patient, as the decision procedure sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePlan {
    pub id: PlanId,
    pub source_id: Option<SourceId>,
    pub fields: PlanFields,
    /// Whether archiving this plan would withdraw an authorization in progress.
    pub has_in_progress_authorization: bool,
}

/// Why a create was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictReason {
    /// `RAISE_ERROR`: the plan order is held by another active plan.
    PlanOrderTaken,
    /// `RAISE_ERROR_ON_AUTH_WITHDRAWAL`: replacing would withdraw an authorization in progress.
    AuthorizationInProgress,
}

/// What a PUT does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An active plan has the request's source_id: nothing changes.
    SourceIdMatch(PlanId),
    /// A duplicate under another source_id: it takes the request's source_id, nothing else.
    Deduplicated(PlanId),
    /// A new plan into a free plan order.
    Create,
    /// Archive the occupant of the plan order, then create.
    Replace(PlanId),
    /// Refused; nothing changes.
    Conflict(PlanId, ConflictReason),
}

/// The decision procedure. `active` are the patient's active plans, oldest first (the
/// order breaks ties between several duplicates).
///
/// Several duplicates can exist under `MEMBER_NUMBER` (one member number with two payors).
/// The pick is deterministic: first one at the requested plan order, then one with the
/// requested payor, then the lowest plan order, then the oldest.
pub fn decide(
    source_id: &SourceId,
    req: &PlanFields,
    strategy: DeduplicationStrategy,
    behavior: ConflictBehavior,
    active: &[ActivePlan],
) -> Decision {
    if let Some(p) = active
        .iter()
        .find(|p| p.source_id.as_ref() == Some(source_id))
    {
        return Decision::SourceIdMatch(p.id);
    }

    let is_duplicate = |p: &ActivePlan| {
        let f = &p.fields;
        f.member_number == req.member_number
            && match strategy {
                DeduplicationStrategy::MemberNumber => true,
                DeduplicationStrategy::MemberNumberAndPayor => f.payor_id == req.payor_id,
                DeduplicationStrategy::MemberNumberPayorAndOrder => {
                    f.payor_id == req.payor_id && f.plan_order == req.plan_order
                }
            }
    };
    if let Some((_, p)) = active
        .iter()
        .enumerate()
        .filter(|(_, p)| is_duplicate(p))
        .min_by_key(|(age, p)| {
            (
                p.fields.plan_order != req.plan_order,
                p.fields.payor_id != req.payor_id,
                p.fields.plan_order,
                *age,
            )
        })
    {
        return Decision::Deduplicated(p.id);
    }

    let Some(occupant) = active
        .iter()
        .find(|p| p.fields.plan_order == req.plan_order)
    else {
        return Decision::Create;
    };
    match behavior {
        ConflictBehavior::Replace => Decision::Replace(occupant.id),
        ConflictBehavior::RaiseError => {
            Decision::Conflict(occupant.id, ConflictReason::PlanOrderTaken)
        }
        ConflictBehavior::RaiseErrorOnAuthWithdrawal if occupant.has_in_progress_authorization => {
            Decision::Conflict(occupant.id, ConflictReason::AuthorizationInProgress)
        }
        ConflictBehavior::RaiseErrorOnAuthWithdrawal => Decision::Replace(occupant.id),
    }
}

/// Payor names are matched after this: "Blue Cross  Blue-Shield" and "blue cross blue
/// shield" are one payor.
pub fn normalize_payor_name(s: &str) -> String {
    normalize_name(s)
}

/// A payor's display name: 1 to 200 characters, with letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PayorName(String);

impl PayorName {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = bounded(s, 1, 200)?;
        if normalize_payor_name(&t).is_empty() {
            return Err(FieldError::Length { min: 1, max: 200 });
        }
        Ok(Self(t))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn normalized(&self) -> String {
        normalize_payor_name(&self.0)
    }
}

/// A validated `PUT /v1/payors` body: the payor and its ACCloud funder, if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayorPut {
    pub name: PayorName,
    pub accloud_funder_id: Option<i64>,
    pub accloud_funder_name: Option<String>,
}

impl PayorPut {
    pub fn parse(body: &Value) -> Result<PayorPut, Violations> {
        let map = object(body, "a payor")?;
        let mut r = Reader {
            map,
            v: Violations::default(),
        };
        r.unknown_fields(
            &["name", "accloud_funder_id", "accloud_funder_name"],
            "a payor",
        );
        let name = r.parsed("name", true, PayorName::parse);
        let funder_id = match map.get("accloud_funder_id") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i > 0) => n.as_i64(),
            Some(_) => {
                r.v.push("accloud_funder_id", "must be a positive whole number");
                None
            }
        };
        let funder_name = r.parsed("accloud_funder_name", false, |s| bounded(s, 1, 200));
        let Reader { v, .. } = r;
        match name {
            Some(name) if v.is_empty() => Ok(PayorPut {
                name,
                accloud_funder_id: funder_id,
                accloud_funder_name: funder_name,
            }),
            _ => Err(v),
        }
    }

    /// Whether the payor has no ACCloud funder yet.
    pub fn unmapped(&self) -> bool {
        self.accloud_funder_id.is_none() && self.accloud_funder_name.is_none()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PATIENT: &str = "0190a1b2-0000-7000-8000-000000000001";
    const PAYOR_X: &str = "0190a1b2-0000-7000-8000-0000000000aa";
    const PAYOR_Y: &str = "0190a1b2-0000-7000-8000-0000000000bb";

    fn body() -> Value {
        json!({
            "patient_id": PATIENT, "source_id": "s1", "member_number": "M1",
            "payor_entity_id": PAYOR_X, "plan_order_number": 1,
        })
    }

    fn with(k: &str, v: Value) -> Value {
        let mut b = body();
        b[k] = v;
        b
    }

    fn paths(v: Violations) -> Vec<String> {
        v.0.into_iter().map(|v| v.path).collect()
    }

    #[test]
    fn minimal_body_parses_with_defaults() {
        let p = PlanPut::parse(&body()).unwrap();
        assert_eq!(p.source_id.as_str(), "s1");
        assert_eq!(p.fields.plan_order, PlanOrder::PRIMARY);
        assert_eq!(p.conflict_behavior, None);
        assert_eq!(
            p.deduplication_strategy,
            DeduplicationStrategy::MemberNumber
        );
    }

    #[test]
    fn member_number_must_be_2_to_80_characters() {
        for bad in ["1", "", &"x".repeat(81)] {
            let e = PlanPut::parse(&with("member_number", json!(bad))).unwrap_err();
            assert_eq!(paths(e), ["member_number"]);
        }
        for ok in ["12", &"x".repeat(80)] {
            assert!(PlanPut::parse(&with("member_number", json!(ok))).is_ok());
        }
    }

    #[test]
    fn every_missing_required_field_is_named() {
        let e = PlanPut::parse(&json!({})).unwrap_err();
        assert_eq!(
            paths(e),
            [
                "patient_id",
                "source_id",
                "member_number",
                "payor_entity_id",
                "plan_order_number"
            ]
        );
    }

    #[test]
    fn plan_order_must_be_at_least_one() {
        for bad in [json!(0), json!(-1), json!(1.5), json!("1"), json!(100)] {
            let e = PlanPut::parse(&with("plan_order_number", bad)).unwrap_err();
            assert_eq!(paths(e), ["plan_order_number"]);
        }
    }

    #[test]
    fn dates_accept_date_or_date_time_and_end_not_before_start() {
        let mut b = with("start_date", json!("2026-01-01T10:00:00Z"));
        b["end_date"] = json!("2026-12-31");
        let p = PlanPut::parse(&b).unwrap();
        assert_eq!(p.fields.start_date, NaiveDate::from_ymd_opt(2026, 1, 1));
        b["end_date"] = json!("2025-12-31");
        assert_eq!(paths(PlanPut::parse(&b).unwrap_err()), ["end_date"]);
        let e = PlanPut::parse(&with("start_date", json!("01/02/2026"))).unwrap_err();
        assert_eq!(paths(e), ["start_date"]);
    }

    #[test]
    fn enums_accept_only_their_wire_names() {
        assert!(PlanPut::parse(&with("insurance_type", json!("MEDICAID"))).is_ok());
        for (k, v) in [
            ("insurance_type", "medicaid"),
            ("conflict_behavior", "OVERWRITE"),
            ("deduplication_strategy", "PAYOR"),
        ] {
            assert_eq!(paths(PlanPut::parse(&with(k, json!(v))).unwrap_err()), [k]);
        }
    }

    #[test]
    fn conflict_strategy_is_an_alias_that_must_agree() {
        let p = PlanPut::parse(&with("conflict_strategy", json!("RAISE_ERROR"))).unwrap();
        assert_eq!(p.conflict_behavior, Some(ConflictBehavior::RaiseError));
        let mut b = with("conflict_strategy", json!("RAISE_ERROR"));
        b["conflict_behavior"] = json!("RAISE_ERROR");
        assert!(PlanPut::parse(&b).is_ok());
        b["conflict_behavior"] = json!("REPLACE");
        assert_eq!(
            paths(PlanPut::parse(&b).unwrap_err()),
            ["conflict_strategy"]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = PlanPut::parse(&with("conflict_behaviour", json!("RAISE_ERROR"))).unwrap_err();
        assert_eq!(paths(e), ["conflict_behaviour"]);
    }

    #[test]
    fn patch_takes_source_id_only() {
        let p = PlanPatch::parse(&json!({"source_id": "x"})).unwrap();
        assert_eq!(p.source_id.unwrap().as_str(), "x");
        assert_eq!(
            PlanPatch::parse(&json!({"source_id": null})).unwrap(),
            PlanPatch { source_id: None }
        );
        let e = PlanPatch::parse(&json!({"source_id": "x", "member_number": "M2"})).unwrap_err();
        assert_eq!(paths(e), ["member_number"]);
        assert_eq!(
            paths(PlanPatch::parse(&json!({})).unwrap_err()),
            ["source_id"]
        );
    }

    fn fields(member: &str, payor: &str, order: i64) -> PlanFields {
        PlanFields {
            member_number: MemberNumber::parse(member).unwrap(),
            payor_id: PayorId::parse(payor).unwrap(),
            plan_order: PlanOrder::parse(order).unwrap(),
            group_number: None,
            start_date: None,
            end_date: None,
            insurance_type: None,
            insurance_card_file_id: None,
            insurance_card_back_file_id: None,
        }
    }

    fn plan(source: &str, member: &str, payor: &str, order: i64) -> ActivePlan {
        ActivePlan {
            id: PlanId::new(),
            source_id: Some(SourceId::parse(source).unwrap()),
            fields: fields(member, payor, order),
            has_in_progress_authorization: false,
        }
    }

    fn sid(s: &str) -> SourceId {
        SourceId::parse(s).unwrap()
    }

    use ConflictBehavior as C;
    use DeduplicationStrategy as D;

    #[test]
    fn source_id_match_wins_whatever_the_other_fields() {
        let a = plan("s1", "M1", PAYOR_X, 1);
        let req = fields("M2", PAYOR_Y, 2);
        let d = decide(
            &sid("s1"),
            &req,
            D::MemberNumber,
            C::RaiseError,
            std::slice::from_ref(&a),
        );
        assert_eq!(d, Decision::SourceIdMatch(a.id));
    }

    #[test]
    fn dedup_by_member_number_ignores_payor_and_order() {
        let a = plan("old", "M1", PAYOR_X, 2);
        let req = fields("M1", PAYOR_Y, 1);
        let d = decide(
            &sid("new"),
            &req,
            D::MemberNumber,
            C::Replace,
            std::slice::from_ref(&a),
        );
        assert_eq!(d, Decision::Deduplicated(a.id));
    }

    #[test]
    fn dedup_by_member_and_payor_needs_both() {
        let a = plan("old", "M1", PAYOR_X, 2);
        let other_payor = fields("M1", PAYOR_Y, 1);
        let d = decide(
            &sid("new"),
            &other_payor,
            D::MemberNumberAndPayor,
            C::Replace,
            std::slice::from_ref(&a),
        );
        assert_eq!(d, Decision::Create);
        let same_payor = fields("M1", PAYOR_X, 1);
        let d = decide(
            &sid("new"),
            &same_payor,
            D::MemberNumberAndPayor,
            C::Replace,
            std::slice::from_ref(&a),
        );
        assert_eq!(d, Decision::Deduplicated(a.id));
    }

    #[test]
    fn dedup_by_member_payor_and_order_needs_all_three() {
        let a = plan("old", "M1", PAYOR_X, 2);
        let d = decide(
            &sid("new"),
            &fields("M1", PAYOR_X, 1),
            D::MemberNumberPayorAndOrder,
            C::Replace,
            std::slice::from_ref(&a),
        );
        assert_eq!(d, Decision::Create);
        let d = decide(
            &sid("new"),
            &fields("M1", PAYOR_X, 2),
            D::MemberNumberPayorAndOrder,
            C::Replace,
            std::slice::from_ref(&a),
        );
        assert_eq!(d, Decision::Deduplicated(a.id));
    }

    #[test]
    fn several_duplicates_prefer_the_requested_order_then_payor() {
        let p1 = plan("a", "M1", PAYOR_X, 1);
        let p2 = plan("b", "M1", PAYOR_Y, 2);
        let all = [p1.clone(), p2.clone()];
        let d = decide(
            &sid("z"),
            &fields("M1", PAYOR_X, 2),
            D::MemberNumber,
            C::Replace,
            &all,
        );
        assert_eq!(d, Decision::Deduplicated(p2.id));
        let d = decide(
            &sid("z"),
            &fields("M1", PAYOR_Y, 3),
            D::MemberNumber,
            C::Replace,
            &all,
        );
        assert_eq!(d, Decision::Deduplicated(p2.id));
        let other = "0190a1b2-0000-7000-8000-0000000000cc";
        let d = decide(
            &sid("z"),
            &fields("M1", other, 3),
            D::MemberNumber,
            C::Replace,
            &all,
        );
        assert_eq!(d, Decision::Deduplicated(p1.id));
    }

    #[test]
    fn dedup_comes_before_conflict() {
        let a = plan("a", "M1", PAYOR_X, 1);
        let d = decide(
            &sid("z"),
            &fields("M1", PAYOR_X, 1),
            D::MemberNumber,
            C::RaiseError,
            std::slice::from_ref(&a),
        );
        assert_eq!(d, Decision::Deduplicated(a.id));
    }

    #[test]
    fn empty_plan_order_creates_whatever_the_behavior() {
        let a = plan("a", "M1", PAYOR_X, 1);
        for c in ConflictBehavior::ALL {
            let d = decide(
                &sid("b"),
                &fields("M2", PAYOR_X, 2),
                D::MemberNumber,
                *c,
                std::slice::from_ref(&a),
            );
            assert_eq!(d, Decision::Create);
        }
    }

    #[test]
    fn taken_plan_order_follows_the_conflict_behavior() {
        let mut a = plan("a", "M1", PAYOR_X, 1);
        let req = fields("M2", PAYOR_X, 1);
        let run = |c, a: &ActivePlan| {
            decide(&sid("b"), &req, D::MemberNumber, c, std::slice::from_ref(a))
        };
        assert_eq!(run(C::Replace, &a), Decision::Replace(a.id));
        assert_eq!(
            run(C::RaiseError, &a),
            Decision::Conflict(a.id, ConflictReason::PlanOrderTaken)
        );
        assert_eq!(
            run(C::RaiseErrorOnAuthWithdrawal, &a),
            Decision::Replace(a.id)
        );
        a.has_in_progress_authorization = true;
        assert_eq!(
            run(C::RaiseErrorOnAuthWithdrawal, &a),
            Decision::Conflict(a.id, ConflictReason::AuthorizationInProgress)
        );
        assert_eq!(run(C::Replace, &a), Decision::Replace(a.id));
    }

    #[test]
    fn differing_fields_are_named() {
        let a = fields("M1", PAYOR_X, 1);
        let b = fields("M1", PAYOR_Y, 2);
        assert_eq!(
            b.differing_from(&a),
            ["payor_entity_id", "plan_order_number"]
        );
        assert!(a.differing_from(&a).is_empty());
    }

    #[test]
    fn payor_names_match_after_normalisation_and_unmapped_means_no_funder() {
        let a = PayorName::parse("  Blue Cross Blue-Shield ").unwrap();
        assert_eq!(a.as_str(), "Blue Cross Blue-Shield");
        assert_eq!(
            a.normalized(),
            normalize_payor_name("blue cross  blue shield")
        );
        assert!(PayorName::parse(" -- ").is_err());
        let p = PayorPut::parse(&json!({"name": "ABC"})).unwrap();
        assert!(p.unmapped());
        let p = PayorPut::parse(&json!({"name": "ABC", "accloud_funder_id": 7})).unwrap();
        assert!(!p.unmapped());
        let e = PayorPut::parse(&json!({"name": "ABC", "accloud_funder_id": "7"})).unwrap_err();
        assert_eq!(paths(e), ["accloud_funder_id"]);
    }
}
