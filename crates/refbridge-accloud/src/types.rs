//! Request and response types of the operations the workers need.
//!
//! Rust names are plain; the wire names are given by serde attributes and checked against the
//! spec and guide examples in the tests at the bottom. Responses are read leniently: unknown
//! fields are ignored, optional and nullable fields default, ids accept int or string. Fields
//! that carry PHI and that no worker needs (client names inside referral answers, contacts,
//! diagnoses) are not read at all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::enums::{
    AuthorizationMethodology, AuthorizationStatus, CancelReason, CareType, ClientStatus,
    FundingMethodology, ReferralSortBy, ReferralStatus, ReferralType, Revisions, RuleType,
    ServiceStatus, SortOrder,
};
use crate::ids::{
    AuthorizationId, BranchId, ClientId, FunderId, GroupId, ReferralId, RevisionGroupId,
    SequenceId, ServiceCodeId, ServiceId, SupplyPersonaId,
};
use crate::wire;

// ---------------------------------------------------------------------------------------------
// Paging

/// Which page to ask for. On `/ext/api/v2` lists `per_page` is sent as `count`; on the
/// AlayaMarket outbox lists as `items_per_page` (notes 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u32,
    /// Items per page (server default 100).
    pub per_page: u32,
}

impl PageRequest {
    /// Page 1 with `per_page` items.
    pub fn first(per_page: u32) -> Self {
        Self { page: 1, per_page }
    }

    /// The page after this one.
    pub fn next(self) -> Self {
        Self {
            page: self.page.saturating_add(1),
            ..self
        }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::first(100)
    }
}

/// One page of a list. There is no total-items field on `/ext/api/v2` lists: read on while
/// [`Page::has_next`] (notes 3.1).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// This page's number.
    pub page: u32,
    /// Number of pages.
    pub total_pages: u32,
    /// Total items, on AlayaMarket-style lists only.
    pub total_items: Option<u64>,
}

impl<T> Page<T> {
    /// Whether a later page exists.
    pub fn has_next(&self) -> bool {
        self.page < self.total_pages
    }
}

// ---------------------------------------------------------------------------------------------
// Branches and groups

/// `{ id, name }` of a branch.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BranchRef {
    /// Branch id.
    pub id: BranchId,
    /// Branch name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A client group (`GET /ext/api/v2/patients/groups`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClientGroup {
    /// Group id.
    pub id: GroupId,
    /// Group name (the CSI group is named `CSI`).
    #[serde(default, deserialize_with = "wire::null_default")]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the group is disabled.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub is_disabled: bool,
    /// Owning branch.
    #[serde(default)]
    pub branch: Option<BranchRef>,
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Free-form client profile attributes (`demographics`): `first_name`, `last_name`, `gender`
/// (`M`/`F`/`O`), `birthday` (`YYYY-MM-DD`), `address`, `city`, `state`, `zip`, `country`,
/// `email`, `phone_main`, ... (notes 4.2).
///
/// This is PHI. Its `Debug` prints the attribute keys only, never the values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Demographics(pub BTreeMap<String, Value>);

impl Demographics {
    /// Demographics with the two attributes ACCloud requires on create.
    pub fn new(first_name: impl Into<String>, last_name: impl Into<String>) -> Self {
        Self::default()
            .with("first_name", first_name)
            .with("last_name", last_name)
    }

    /// Sets a string attribute.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), Value::String(value.into()));
        self
    }

    /// A string attribute, if present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Demographics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Demographics")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Body of `POST /ext/api/v2/patients/clients` (`ClientCreate`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewClient {
    /// Our stable patient id; unique in ACCloud (a second create answers 409).
    pub external_id: String,
    /// The HQ branch (defaults to the API user's branch when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<BranchId>,
    /// Profile attributes; `first_name` and `last_name` are required.
    pub demographics: Demographics,
    /// `ClientLanguage` code, e.g. `en`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Group ids, sent as `[{ "id": .. }]`; must include the `CSI` group.
    #[serde(serialize_with = "wire::group_refs")]
    pub groups: Vec<GroupId>,
    /// IANA time zone; absent inherits the branch's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// `{ id, external_id }`, the answer to client create and update.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClientRef {
    /// ACCloud client id.
    pub id: ClientId,
    /// Our external id.
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub external_id: Option<String>,
}

/// `{ id, name }` of a client's group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct GroupRef {
    /// Group id.
    pub id: GroupId,
    /// Group name.
    #[serde(default)]
    pub name: Option<String>,
}

/// `ClientDetails` (`GET clients/{id}` and `GET clients/by_id/{external_id}`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ClientDetails {
    /// ACCloud client id.
    pub id: ClientId,
    /// Display id, e.g. `AC000000024`.
    #[serde(default)]
    pub ac_id: Option<String>,
    /// Our external id.
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub external_id: Option<String>,
    /// Profile id.
    #[serde(default)]
    pub profile_id: Option<i64>,
    /// Branch id.
    #[serde(default)]
    pub branch_id: Option<BranchId>,
    /// Status (`pending` after create).
    #[serde(default)]
    pub status: Option<ClientStatus>,
    /// Profile attributes (PHI).
    #[serde(default, deserialize_with = "wire::null_default")]
    pub demographics: Demographics,
    /// Language code.
    #[serde(default)]
    pub language: Option<String>,
    /// Groups.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub groups: Vec<GroupRef>,
    /// IANA time zone (the branch's when unset).
    #[serde(default)]
    pub timezone: Option<String>,
}

impl ClientDetails {
    /// Whether the client is in the group.
    pub fn has_group(&self, id: GroupId) -> bool {
        self.groups.iter().any(|g| g.id == id)
    }
}

/// Body of `PUT clients/{id}` (`ClientUpdate`). `None` fields are not sent. `groups`
/// replaces the client's groups: send the full set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientUpdate {
    /// Profile attributes to set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demographics: Option<Demographics>,
    /// New external id (409 if taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Language code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Group ids, sent as `[{ "id": .. }]`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::opt_group_refs"
    )]
    pub groups: Option<Vec<GroupId>>,
    /// IANA time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Funders and service codes

/// Filters of `GET /ext/api/v2/accounting/funders`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunderFilter {
    /// `funder_name`: substring of the name.
    pub name: Option<String>,
    /// `search`: substring of name or code.
    pub search: Option<String>,
    /// `funder_id`: the funder's external id.
    pub external_id: Option<String>,
    /// `branch_id`.
    pub branch_id: Option<BranchId>,
    /// Paging.
    pub page: PageRequest,
}

/// `FunderDetails`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Funder {
    /// Funder id.
    pub id: FunderId,
    /// External id.
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub external_id: Option<String>,
    /// Name.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub name: String,
    /// Code.
    #[serde(default)]
    pub code: Option<String>,
    /// `type`.
    #[serde(default, rename = "type")]
    pub funder_type: Option<String>,
    /// `enabled` / `disabled`.
    #[serde(default)]
    pub status: Option<String>,
    /// Branch.
    #[serde(default)]
    pub branch: Option<BranchRef>,
}

/// A service code (`GET /ext/api/v2/scheduler/service_codes`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceCode {
    /// Service code id.
    pub id: ServiceCodeId,
    /// Name.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub name: String,
    /// Branch.
    #[serde(default)]
    pub branch: Option<BranchRef>,
}

// ---------------------------------------------------------------------------------------------
// Services

/// The service's client: exactly one of the two ids (both is a 400; notes 4.7). Note the
/// Services API naming: `alayacare_client_id` is ACCloud's integer id, `client_id` our
/// external string id (notes 2, \[CONFLICT\] with the guide's prose; the spec wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ServiceClientRef {
    /// `{ "alayacare_client_id": 1060 }`
    #[serde(rename = "alayacare_client_id")]
    AlayaCare(ClientId),
    /// `{ "client_id": "<external id>" }`
    #[serde(rename = "client_id")]
    External(String),
}

/// The service code: exactly one of `service_code_id` / `service_code_name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ServiceCodeRef {
    /// `service_code_id`
    #[serde(rename = "service_code_id")]
    Id(ServiceCodeId),
    /// `service_code_name`
    #[serde(rename = "service_code_name")]
    Name(String),
}

/// One `guid_funder_breakdowns` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunderShare {
    /// Funder id.
    pub funder_id: FunderId,
    /// Sent as `1` / `0`.
    #[serde(serialize_with = "wire::bool_as_int")]
    pub is_primary: bool,
    /// Percentage (CSI: a single funder at 100).
    pub percentage: u32,
}

/// Body of `POST /ext/api/v2/scheduler/services` (`ServiceCreateSchema`, CSI subset).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewService {
    /// External service id = the referral request's `request_id`.
    pub service_id: String,
    /// Service name.
    pub name: String,
    /// The client, by exactly one id.
    pub client: ServiceClientRef,
    /// Informative only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    /// Informative only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_end_date: Option<NaiveDate>,
    /// CSI: `single_funder`.
    pub funding_methodology: FundingMethodology,
    /// `guid_funder_breakdowns`.
    #[serde(rename = "guid_funder_breakdowns")]
    pub funders: Vec<FunderShare>,
    /// Service code by id or name.
    #[serde(flatten)]
    pub service_code: ServiceCodeRef,
    /// Instructions for the agency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_instructions: Option<String>,
    /// Notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Whether the client's address is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_client_address: Option<bool>,
    /// Service profile attributes, e.g. `target_agency`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub profile: BTreeMap<String, Value>,
}

/// `{ id, external_id }`, the answer to service create (200) and update.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceRef {
    /// ACCloud service id.
    pub id: ServiceId,
    /// Our external id.
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub external_id: Option<String>,
}

/// `patient` inside `ServiceDetails` (the name is not read).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServicePatient {
    /// ACCloud client id.
    pub id: ClientId,
    /// External client id.
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub external_id: Option<String>,
    /// IANA time zone.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// One entry of `ServiceDetails.funders`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServiceFunder {
    /// Funder id.
    pub id: FunderId,
    /// External id.
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub external_id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Percentage.
    #[serde(default)]
    pub percentage: Option<f64>,
}

/// `ServiceDetails` (`GET services/{id}` and `GET services/by_id/{service_id}`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServiceDetails {
    /// `alayacare_service_id` (documented as a string here, an integer elsewhere).
    #[serde(rename = "alayacare_service_id")]
    pub id: ServiceId,
    /// `service_id`, our external id.
    #[serde(
        rename = "service_id",
        default,
        deserialize_with = "wire::opt_string_lenient"
    )]
    pub external_id: Option<String>,
    /// `service_name`.
    #[serde(rename = "service_name", default)]
    pub name: Option<String>,
    /// `service_status`.
    #[serde(rename = "service_status", default)]
    pub status: Option<ServiceStatus>,
    /// `alayacare_service_code_id`.
    #[serde(rename = "alayacare_service_code_id", default)]
    pub service_code_id: Option<ServiceCodeId>,
    /// `service_code_name`.
    #[serde(default)]
    pub service_code_name: Option<String>,
    /// `service_instructions`.
    #[serde(default)]
    pub service_instructions: Option<String>,
    /// `start_date`, as sent by ACCloud.
    #[serde(default)]
    pub start_date: Option<String>,
    /// `use_client_address`.
    #[serde(default)]
    pub use_client_address: Option<bool>,
    /// `patient`.
    #[serde(default)]
    pub patient: Option<ServicePatient>,
    /// `funders`.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub funders: Vec<ServiceFunder>,
    /// `profile` attributes (e.g. `target_agency`).
    #[serde(default, deserialize_with = "wire::null_default")]
    pub profile: BTreeMap<String, Value>,
}

/// One item of `GET /ext/api/v2/scheduler/services`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServiceSummary {
    /// `alayacare_service_id`.
    #[serde(rename = "alayacare_service_id")]
    pub id: ServiceId,
    /// `service_id`.
    #[serde(
        rename = "service_id",
        default,
        deserialize_with = "wire::opt_string_lenient"
    )]
    pub external_id: Option<String>,
    /// `service_name`.
    #[serde(rename = "service_name", default)]
    pub name: Option<String>,
    /// `service_status`.
    #[serde(rename = "service_status", default)]
    pub status: Option<ServiceStatus>,
    /// `alayacare_service_code_id`.
    #[serde(rename = "alayacare_service_code_id", default)]
    pub service_code_id: Option<ServiceCodeId>,
    /// `service_code_name`.
    #[serde(default)]
    pub service_code_name: Option<String>,
    /// `service_start_date`.
    #[serde(default)]
    pub service_start_date: Option<String>,
}

/// Filters of `GET /ext/api/v2/scheduler/services`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceFilter {
    /// `alayacare_client_id` or `client_id` (external).
    pub client: Option<ServiceClientRef>,
    /// `external_ids`, repeated.
    pub external_ids: Vec<String>,
    /// `status`. **ACCloud defaults to `active`** when absent (notes 6.7).
    pub status: Option<ServiceStatus>,
    /// Paging.
    pub page: PageRequest,
}

/// Body of `PUT services/{id}` (`ServiceUpdate`, the fields CSI changes). `None` is not sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceUpdate {
    /// New external id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// Instructions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_instructions: Option<String>,
    /// Profile attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<BTreeMap<String, Value>>,
}

// ---------------------------------------------------------------------------------------------
// Authorizations

/// The limit fields `rule_*` (hours or visits per `rule_type`). `rule_daily` cannot be
/// combined with any weekday rule; a weekday rule of `0` still counts as set (notes 4.8).
/// `None` fields are not sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationLimits {
    /// `rule_daily`
    #[serde(
        rename = "rule_daily",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub daily: Option<f64>,
    /// `rule_weekly`
    #[serde(
        rename = "rule_weekly",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub weekly: Option<f64>,
    /// `rule_monthly`
    #[serde(
        rename = "rule_monthly",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub monthly: Option<f64>,
    /// `rule_period`
    #[serde(
        rename = "rule_period",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub period: Option<f64>,
    /// `rule_monday`
    #[serde(
        rename = "rule_monday",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub monday: Option<f64>,
    /// `rule_tuesday`
    #[serde(
        rename = "rule_tuesday",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tuesday: Option<f64>,
    /// `rule_wednesday`
    #[serde(
        rename = "rule_wednesday",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wednesday: Option<f64>,
    /// `rule_thursday`
    #[serde(
        rename = "rule_thursday",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub thursday: Option<f64>,
    /// `rule_friday`
    #[serde(
        rename = "rule_friday",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub friday: Option<f64>,
    /// `rule_saturday`
    #[serde(
        rename = "rule_saturday",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub saturday: Option<f64>,
    /// `rule_sunday`
    #[serde(
        rename = "rule_sunday",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sunday: Option<f64>,
}

/// The `case_manager_*` fields of an authorization (kept in HQ, not sent to the agency).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCaseManager {
    /// `case_manager_name`
    #[serde(
        rename = "case_manager_name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// `case_manager_phone`
    #[serde(
        rename = "case_manager_phone",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub phone: Option<String>,
    /// `case_manager_fax`
    #[serde(
        rename = "case_manager_fax",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fax: Option<String>,
    /// `case_manager_email`
    #[serde(
        rename = "case_manager_email",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub email: Option<String>,
}

/// Body of `POST /ext/api/v2/scheduler/authorizations` (`CreateAuthorization`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewAuthorization {
    /// ACCloud (internal) client id.
    pub client_id: ClientId,
    /// ACCloud service ids (methodology `service`).
    pub service_ids: Vec<ServiceId>,
    /// Start date, not more than a year back.
    pub start_at: NaiveDate,
    /// End date, on or after the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<NaiveDate>,
    /// CSI: `service`.
    pub methodology: AuthorizationMethodology,
    /// `HOURS` or `VISITS`.
    pub rule_type: RuleType,
    /// The `rule_*` limits.
    #[serde(flatten)]
    pub limits: AuthorizationLimits,
    /// 0 = Monday ... 6 = Sunday.
    pub first_day_of_week: u8,
    /// Authorization number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_number: Option<String>,
    /// Member number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_number: Option<String>,
    /// Program id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program_id: Option<String>,
    /// Notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// `case_manager_*`.
    #[serde(flatten)]
    pub case_manager: AuthorizationCaseManager,
}

/// `BaseAuthorization` (create/update answers) and `Authorization` (list items, which add
/// `service_ids`). Only `id` is required.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Authorization {
    /// Authorization id (a JSON number).
    pub id: AuthorizationId,
    /// ACCloud client id.
    #[serde(default)]
    pub client_id: Option<ClientId>,
    /// Service ids (list items only).
    #[serde(default, deserialize_with = "wire::null_default")]
    pub service_ids: Vec<ServiceId>,
    /// Start date.
    #[serde(default, deserialize_with = "wire::opt_date_lenient")]
    pub start_at: Option<NaiveDate>,
    /// End date.
    #[serde(default, deserialize_with = "wire::opt_date_lenient")]
    pub end_at: Option<NaiveDate>,
    /// Methodology (the response enum lacks `service`; kept as read).
    #[serde(default)]
    pub methodology: Option<AuthorizationMethodology>,
    /// Rule type.
    #[serde(default)]
    pub rule_type: Option<RuleType>,
    /// The `rule_*` limits.
    #[serde(flatten)]
    pub limits: AuthorizationLimits,
    /// First day of week, 0 = Monday.
    #[serde(default)]
    pub first_day_of_week: Option<i64>,
    /// Authorization number.
    #[serde(default)]
    pub authorization_number: Option<String>,
    /// Member number.
    #[serde(default)]
    pub member_number: Option<String>,
    /// Program id.
    #[serde(default)]
    pub program_id: Option<String>,
    /// Notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Status.
    #[serde(default)]
    pub authorization_status: Option<AuthorizationStatus>,
    /// `case_manager_*`.
    #[serde(flatten)]
    pub case_manager: AuthorizationCaseManager,
}

/// Body of `PUT authorizations/{id}`: only the fields ACCloud lets change (notes 4.8; a
/// start date, rule type or limit change is a delete and a new create). `None` is not sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AuthorizationUpdate {
    /// New end date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<NaiveDate>,
    /// Authorization number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_number: Option<String>,
    /// Member number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_number: Option<String>,
    /// Program id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program_id: Option<String>,
    /// Notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// `case_manager_*`.
    #[serde(flatten)]
    pub case_manager: AuthorizationCaseManager,
}

/// Filters of `GET /ext/api/v2/scheduler/authorizations`. `start_at_from` and `start_at_to`
/// are required by ACCloud, hence [`AuthorizationFilter::new`].
#[derive(Clone, Debug, PartialEq)]
pub struct AuthorizationFilter {
    /// `start_at_from` (required).
    pub start_at_from: NaiveDate,
    /// `start_at_to` (required).
    pub start_at_to: NaiveDate,
    /// `end_at_from`.
    pub end_at_from: Option<NaiveDate>,
    /// `end_at_to`.
    pub end_at_to: Option<NaiveDate>,
    /// `client_id` (ACCloud id).
    pub client_id: Option<ClientId>,
    /// `service_id`, repeated.
    pub service_ids: Vec<ServiceId>,
    /// `authorization_number` (a **substring** match: compare exactly on the result).
    pub authorization_number: Option<String>,
    /// Paging.
    pub page: PageRequest,
}

impl AuthorizationFilter {
    /// Authorizations starting between the two dates, inclusive.
    pub fn new(start_at_from: NaiveDate, start_at_to: NaiveDate) -> Self {
        Self {
            start_at_from,
            start_at_to,
            end_at_from: None,
            end_at_to: None,
            client_id: None,
            service_ids: Vec::new(),
            authorization_number: None,
            page: PageRequest::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Referrals (AlayaMarket outbox through ACCloud)

/// `CaseManagerCore`: what the agency sees. `None` goes out as `null` (as in the guide).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseManager {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone_number: Option<String>,
    /// Fax.
    #[serde(default)]
    pub fax_number: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
}

/// Body of `POST /api/v1/alayamarket/outbox/referrals/from_service/{service_id}`
/// (`ReferralOutboxCreateFromServiceRequest`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewReferral {
    /// CSI: `nursing`.
    pub care_type: CareType,
    /// CSI: `service`.
    pub referral_type: ReferralType,
    /// Local midnight of the authorizations' start date, with offset.
    #[serde(serialize_with = "wire::rfc3339_secs")]
    pub start_at: DateTime<FixedOffset>,
    /// Local midnight of the authorizations' end date, with offset.
    #[serde(serialize_with = "wire::rfc3339_secs")]
    pub end_at: DateTime<FixedOffset>,
    /// The agency (`agency.alayamarket_org_id`).
    pub supply_persona_id: SupplyPersonaId,
    /// Authorization ids; not sent when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorization_ids: Vec<AuthorizationId>,
    /// Comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Case manager the agency sees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_manager: Option<CaseManager>,
}

/// `revision` of an update request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RevisionRequest {
    /// At least one reason.
    pub reasons: Vec<String>,
    /// Optional comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Body of `POST .../from_service/{service_id}/update/{referral_id}`
/// (`OutboxReferralUpdateFromServiceRequest`). `supply_persona_id` is not part of the schema
/// and is not sent (notes 6.12: the guide's example has it; the spec wins).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReferralUpdate {
    /// New start, with offset.
    #[serde(serialize_with = "wire::rfc3339_secs")]
    pub start_at: DateTime<FixedOffset>,
    /// New end, with offset.
    #[serde(serialize_with = "wire::rfc3339_secs")]
    pub end_at: DateTime<FixedOffset>,
    /// Current authorization ids; not sent when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorization_ids: Vec<AuthorizationId>,
    /// Comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Case manager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_manager: Option<CaseManager>,
    /// Reasons (at least one) and comment.
    pub revision: RevisionRequest,
}

/// Body of `POST /api/v1/alayamarket/outbox/referrals/{referral_id}/cancel`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CancelReferral {
    /// One of the seven reason codes.
    pub reason_code: CancelReason,
    /// At most 1,000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Longest cancel comment the Marketplace accepts (`cancellation_comment` maxLength).
pub const MAX_CANCEL_COMMENT_CHARS: usize = 1000;

/// `referral` inside a referral answer (`OutboxReferralCore`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ReferralCore {
    /// This revision's id.
    pub id: ReferralId,
    /// Sequence id (Marketplace; may be absent from ACCloud answers).
    #[serde(default)]
    pub sequence_id: Option<SequenceId>,
    /// Status.
    pub status: ReferralStatus,
    /// Care type.
    #[serde(default)]
    pub care_type: Option<CareType>,
    /// Referral type.
    #[serde(default)]
    pub referral_type: Option<ReferralType>,
    /// Start.
    #[serde(default, deserialize_with = "wire::opt_datetime_lenient")]
    pub start_at: Option<DateTime<FixedOffset>>,
    /// End.
    #[serde(default, deserialize_with = "wire::opt_datetime_lenient")]
    pub end_at: Option<DateTime<FixedOffset>>,
    /// Created.
    #[serde(default, deserialize_with = "wire::opt_datetime_lenient")]
    pub created_at: Option<DateTime<FixedOffset>>,
    /// Updated.
    #[serde(default, deserialize_with = "wire::opt_datetime_lenient")]
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Cancel reason code, as sent.
    #[serde(default)]
    pub reason_code: Option<String>,
    /// Cancel comment.
    #[serde(default)]
    pub cancellation_comment: Option<String>,
}

/// `{ id, name }` of an organization.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Organization {
    /// Supply persona id.
    pub id: SupplyPersonaId,
    /// Name.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub name: String,
}

/// `client` inside a referral answer: ids only (demographics are not read).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReferralClient {
    /// Marketplace client id.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// ACCloud client id as a string \[INF\].
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub outbox_id: Option<String>,
}

/// `service` inside a referral answer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReferralService {
    /// Marketplace service id.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// ACCloud service id as a string \[INF\].
    #[serde(default, deserialize_with = "wire::opt_string_lenient")]
    pub outbox_id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
}

/// `revision` of a referral answer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Revision {
    /// Shared by all revisions.
    pub revision_group_id: RevisionGroupId,
    /// 1, 2, 3, ...
    pub revision_number: u32,
    /// Reasons given on update.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub revision_reasons: Vec<String>,
    /// Comment given on update.
    #[serde(default)]
    pub revision_comment: Option<String>,
    /// Whether this is the latest revision.
    pub is_latest_revision: bool,
}

/// A referral as ACCloud answers create, update, get and list (`ReferralOutboxDetailResponse`
/// and `OutboxReferralCollectionResponse`; the common, non-PHI part). `revision` is absent
/// from the internal spec but required by the Marketplace one (notes 6.11), so optional.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Referral {
    /// The referral proper.
    pub referral: ReferralCore,
    /// The agency.
    #[serde(default)]
    pub supply: Option<Organization>,
    /// Client ids.
    #[serde(default)]
    pub client: Option<ReferralClient>,
    /// Service ids.
    #[serde(default)]
    pub service: Option<ReferralService>,
    /// Revision.
    #[serde(default)]
    pub revision: Option<Revision>,
    /// Case manager.
    #[serde(default)]
    pub case_manager: Option<CaseManager>,
}

impl Referral {
    /// This revision's id.
    pub fn id(&self) -> ReferralId {
        self.referral.id
    }

    /// The revision group, when ACCloud sent one.
    pub fn revision_group_id(&self) -> Option<RevisionGroupId> {
        self.revision.as_ref().map(|r| r.revision_group_id)
    }
}

/// Filters of `GET /api/v1/alayamarket/outbox/referrals`. Only `revision_group_id` and
/// `revisions` are documented for ACCloud; the rest come from the Marketplace list and are
/// \[INF\] (notes 4.10.4): check the answer client-side rather than trusting the filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReferralFilter {
    /// `revision_group_id`.
    pub revision_group_id: Option<RevisionGroupId>,
    /// `revisions` (server default `latest`).
    pub revisions: Option<Revisions>,
    /// `supply_persona_id` \[INF\].
    pub supply_persona_id: Option<SupplyPersonaId>,
    /// `status` \[INF\].
    pub status: Option<ReferralStatus>,
    /// `client_outbox_id` = ACCloud client id as a string \[INF\].
    pub client_outbox_id: Option<String>,
    /// `sequence_id` \[INF\].
    pub sequence_id: Option<SequenceId>,
    /// `care_type` \[INF\].
    pub care_type: Option<CareType>,
    /// `referral_type` \[INF\].
    pub referral_type: Option<ReferralType>,
    /// `sort_by` \[INF\].
    pub sort_by: Option<ReferralSortBy>,
    /// `sort_order` \[INF\].
    pub sort_order: Option<SortOrder>,
    /// `page` and `items_per_page`.
    pub page: Option<PageRequest>,
}

/// Filters of `GET /api/v1/alayamarket/outbox/organizations/trusted_network` (\[INF\] from the
/// Marketplace `demand_persona/trusted_network`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrustedNetworkFilter {
    /// `name`: case-insensitive partial match.
    pub name: Option<String>,
    /// `supply_persona_id`, repeated.
    pub supply_persona_ids: Vec<SupplyPersonaId>,
    /// `page` and `items_per_page`.
    pub page: Option<PageRequest>,
}

// ---------------------------------------------------------------------------------------------
// Attachments and files

/// Largest attachment the guide allows (50 MB = 52,428,800 bytes; notes 10.2).
pub const MAX_ATTACHMENT_BYTES: u64 = 52_428_800;

/// A file to upload to a referral. The content is streamed from `path`, never read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentUpload {
    /// Local file to send.
    pub path: PathBuf,
    /// Name sent in the part's `filename` (deterministic per document; notes 10.3).
    pub file_name: String,
    /// Part content type; `application/octet-stream` when `None`.
    pub content_type: Option<String>,
}

/// Answer of the attachment upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentUploaded {
    /// Where ACCloud stored the file.
    pub filepath: String,
    /// Bytes sent.
    pub size: u64,
}

/// One entry of a Files API folder listing.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FileEntry {
    /// Full path, e.g. `client/1002/picture.jpg`; folders end in `/`.
    pub name: String,
    /// Last modified (ISO 8601 with offset).
    #[serde(default, deserialize_with = "wire::opt_datetime_lenient")]
    pub last_modified: Option<DateTime<FixedOffset>>,
    /// Size in bytes (0 for folders).
    #[serde(default)]
    pub size: Option<u64>,
}

impl FileEntry {
    /// Whether the entry is a folder.
    pub fn is_dir(&self) -> bool {
        self.name.ends_with('/')
    }

    /// The last path segment (without a folder's trailing `/`).
    pub fn basename(&self) -> &str {
        let trimmed = self.name.trim_end_matches('/');
        trimmed.rsplit('/').next().unwrap_or(trimmed)
    }
}
