//! The terms of an approval: what is sent to ACCloud as the service, its authorizations and
//! the referral approval.
//!
//! A reviewer (or CPR+) sends an [`ApprovalInput`] in which every field is optional;
//! [`resolve`] fills what is missing from the parsed form and the configured [`Defaults`], and
//! checks the result against ACCloud's rules, reporting every problem at once, before anything
//! is sent.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::Violations;
use crate::form::StructuredReferral;
use crate::intake::ClientMeta;
use crate::person::normalize_name;
use crate::timezone::TimeZone;

/// An ACCloud object named by its id or by its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Ref {
    Id(i64),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RuleType {
    #[serde(rename = "HOURS")]
    Hours,
    #[serde(rename = "VISITS")]
    Visits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CareType {
    Psw,
    Nursing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReferralType {
    Visit,
    Service,
}

impl RuleType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "HOURS" => Some(Self::Hours),
            "VISITS" => Some(Self::Visits),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hours => "HOURS",
            Self::Visits => "VISITS",
        }
    }
}

impl CareType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "psw" => Some(Self::Psw),
            "nursing" => Some(Self::Nursing),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Psw => "psw",
            Self::Nursing => "nursing",
        }
    }
}

impl ReferralType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "visit" => Some(Self::Visit),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visit => "visit",
            Self::Service => "service",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseManager {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub fax: Option<String>,
    pub email: Option<String>,
}

/// Authorization limits, in hours or visits as the rule type says. `None` is "no limit";
/// `Some(0.0)` is a limit of zero (and counts as set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub rule_daily: Option<f64>,
    pub rule_weekly: Option<f64>,
    pub rule_monthly: Option<f64>,
    pub rule_period: Option<f64>,
    pub rule_monday: Option<f64>,
    pub rule_tuesday: Option<f64>,
    pub rule_wednesday: Option<f64>,
    pub rule_thursday: Option<f64>,
    pub rule_friday: Option<f64>,
    pub rule_saturday: Option<f64>,
    pub rule_sunday: Option<f64>,
}

impl Limits {
    fn weekdays(&self) -> [(&'static str, Option<f64>); 7] {
        [
            ("rule_monday", self.rule_monday),
            ("rule_tuesday", self.rule_tuesday),
            ("rule_wednesday", self.rule_wednesday),
            ("rule_thursday", self.rule_thursday),
            ("rule_friday", self.rule_friday),
            ("rule_saturday", self.rule_saturday),
            ("rule_sunday", self.rule_sunday),
        ]
    }

    fn all(&self) -> Vec<(&'static str, Option<f64>)> {
        let mut v = vec![
            ("rule_daily", self.rule_daily),
            ("rule_weekly", self.rule_weekly),
            ("rule_monthly", self.rule_monthly),
            ("rule_period", self.rule_period),
        ];
        v.extend(self.weekdays());
        v
    }
}

// ---- what the caller sends ----

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// Corrections to the client's demographics as the agency sent them.
    pub client: Option<ClientInput>,
    pub service: Option<ServiceInput>,
    /// One or more authorizations; by default one derived from the form's dates, frequency
    /// and authorization text.
    pub authorizations: Option<Vec<AuthorizationInput>>,
    pub referral: Option<ReferralInput>,
    /// With a change of terms (PUT): a comment sent with the referral revision.
    pub revision_comment: Option<String>,
}

/// The client's demographics, each field replacing what the agency sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// YYYY-MM-DD.
    pub birthday: Option<String>,
    pub gender: Option<String>,
    pub email: Option<String>,
    pub phone_main: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    pub name: Option<String>,
    pub service_code_id: Option<i64>,
    pub service_code_name: Option<String>,
    pub funder_id: Option<i64>,
    pub funder_name: Option<String>,
    pub instructions: Option<String>,
    /// Informative only (YYYY-MM-DD).
    pub start_date: Option<String>,
    /// Informative only (YYYY-MM-DD).
    pub end_date: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuthorizationInput {
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// HOURS or VISITS.
    pub rule_type: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    /// 0 = Monday … 6 = Sunday.
    pub first_day_of_week: Option<i64>,
    pub authorization_number: Option<String>,
    pub member_number: Option<String>,
    pub program_id: Option<String>,
    pub notes: Option<String>,
    pub case_manager: Option<CaseManager>,
    /// The patient plan the authorization belongs to (default: the patient's active plan of
    /// order 1). Its member number and payor's funder become the defaults.
    pub plan_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReferralInput {
    /// psw or nursing.
    pub care_type: Option<String>,
    /// visit or service.
    pub referral_type: Option<String>,
    pub comment: Option<String>,
    /// The case manager the agency sees.
    pub case_manager: Option<CaseManager>,
}

// ---- the effective terms ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalTerms {
    pub client: ClientTerms,
    pub service: ServiceTerms,
    pub authorizations: Vec<AuthorizationTerms>,
    pub referral: ReferralTerms,
}

/// The client as ACCloud will know it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientTerms {
    pub first_name: String,
    pub last_name: String,
    pub birthday: Option<NaiveDate>,
    pub gender: Option<String>,
    pub email: Option<String>,
    pub phone_main: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    /// IANA time zone: the referral's dates are local midnights in it.
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceTerms {
    pub name: String,
    pub service_code: Ref,
    pub funder: Ref,
    pub instructions: Option<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthorizationTerms {
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub rule_type: RuleType,
    pub limits: Limits,
    pub first_day_of_week: u8,
    pub authorization_number: Option<String>,
    pub member_number: Option<String>,
    pub program_id: Option<String>,
    pub notes: Option<String>,
    pub case_manager: Option<CaseManager>,
    /// The patient plan it belongs to, when the patient has one.
    #[serde(default)]
    pub plan_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReferralTerms {
    pub care_type: CareType,
    pub referral_type: ReferralType,
    pub comment: Option<String>,
    pub case_manager: Option<CaseManager>,
}

impl ApprovalTerms {
    /// The patient plan of each authorization that has one: (index, plan id).
    pub fn plan_links(&self) -> Vec<(usize, String)> {
        self.authorizations
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.plan_id.clone().map(|p| (i, p)))
            .collect()
    }

    /// The referral's dates: from the earliest authorization start to the latest end.
    pub fn referral_dates(&self) -> Option<(NaiveDate, NaiveDate)> {
        let start = self.authorizations.iter().map(|a| a.start_date).min()?;
        let end = self.authorizations.iter().map(|a| a.end_date).max()?;
        Some((start, end))
    }
}

// ---- defaults ----

/// What the service requested on the form maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMapping {
    /// The ACCloud service name.
    pub name: String,
    /// The service code, by name.
    pub service_code: String,
}

/// Configured defaults for every field an approval may leave out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    /// Form "Service Requested" value → service name and code (keys compared normalised).
    pub services: BTreeMap<String, ServiceMapping>,
    /// Insurance name → ACCloud funder name (keys compared normalised).
    pub funders: BTreeMap<String, String>,
    pub care_type: CareType,
    pub referral_type: ReferralType,
    pub first_day_of_week: u8,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            services: BTreeMap::new(),
            funders: BTreeMap::new(),
            care_type: CareType::Nursing,
            referral_type: ReferralType::Service,
            first_day_of_week: 6,
        }
    }
}

impl Defaults {
    fn service_for(&self, requested: &str) -> Option<&ServiceMapping> {
        let key = normalize_name(requested);
        self.services
            .iter()
            .find(|(k, _)| normalize_name(k) == key)
            .map(|(_, v)| v)
    }

    fn funder_for(&self, insurance: &str) -> Option<&String> {
        let key = normalize_name(insurance);
        self.funders
            .iter()
            .find(|(k, _)| normalize_name(k) == key)
            .map(|(_, v)| v)
    }
}

/// An active plan of the patient, as an approval sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContext {
    pub id: String,
    pub order: i64,
    pub member_number: String,
    /// The ACCloud funder the plan's payor maps to, when mapped.
    pub funder: Option<Ref>,
}

/// ACCloud rejects authorizations that start more than this long ago.
pub const MAX_START_AGE_DAYS: i64 = 365;

/// Fills the gaps of `input` from the parsed form and the defaults, and checks the result.
pub fn resolve(
    input: &ApprovalInput,
    form: &StructuredReferral,
    client: &ClientMeta,
    plans: &[PlanContext],
    defaults: &Defaults,
    today: NaiveDate,
) -> Result<ApprovalTerms, Violations> {
    let primary_plan = plans.iter().find(|p| p.order == 1);
    let mut v = Violations::default();
    let client_terms = resolve_client(input.client.as_ref(), client, &mut v);
    let svc_in = input.service.clone().unwrap_or_default();
    let mapped = form
        .service
        .requested
        .as_deref()
        .and_then(|r| defaults.service_for(r));

    let name = svc_in
        .name
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| mapped.map(|m| m.name.clone()));
    if name.is_none() {
        v.push(
            "service.name",
            "is required: the form's service requested has no configured mapping",
        );
    }
    let service_code = match (svc_in.service_code_id, &svc_in.service_code_name) {
        (Some(_), Some(_)) => {
            v.push(
                "service.service_code_id",
                "give either service_code_id or service_code_name, not both",
            );
            None
        }
        (Some(id), None) if id >= 1 => Some(Ref::Id(id)),
        (Some(_), None) => {
            v.push("service.service_code_id", "must be at least 1");
            None
        }
        (None, Some(n)) if !n.trim().is_empty() => Some(Ref::Name(n.trim().to_owned())),
        _ => match mapped {
            Some(m) => Some(Ref::Name(m.service_code.clone())),
            None => {
                v.push(
                    "service.service_code_name",
                    "is required: the form's service requested has no configured mapping",
                );
                None
            }
        },
    };
    let insurance = form.primary_insurance.as_ref();
    let funder = match (svc_in.funder_id, &svc_in.funder_name) {
        (Some(_), Some(_)) => {
            v.push(
                "service.funder_id",
                "give either funder_id or funder_name, not both",
            );
            None
        }
        (Some(id), None) if id >= 1 => Some(Ref::Id(id)),
        (Some(_), None) => {
            v.push("service.funder_id", "must be at least 1");
            None
        }
        (None, Some(n)) if !n.trim().is_empty() => Some(Ref::Name(n.trim().to_owned())),
        _ => match primary_plan.and_then(|p| p.funder.clone()).or_else(|| {
            insurance
                .and_then(|i| i.name.as_deref())
                .and_then(|n| defaults.funder_for(n))
                .map(|f| Ref::Name(f.clone()))
        }) {
            Some(f) => Some(f),
            None => {
                v.push(
                    "service.funder_name",
                    "is required: the primary insurance has no configured funder mapping",
                );
                None
            }
        },
    };
    let svc_start = opt_date(&mut v, "service.start_date", svc_in.start_date.as_deref())
        .or(form.service.start_date);
    let svc_end =
        opt_date(&mut v, "service.end_date", svc_in.end_date.as_deref()).or(form.service.end_date);

    let auth_inputs: Vec<AuthorizationInput> = match &input.authorizations {
        Some(list) if list.is_empty() => {
            v.push("authorizations", "must list at least one authorization");
            Vec::new()
        }
        Some(list) => list.clone(),
        None => match derive_authorization(form) {
            Some(a) => vec![a],
            None => {
                v.push(
                    "authorizations",
                    "are required: no authorization limits can be derived from the form's frequency and authorization text",
                );
                Vec::new()
            }
        },
    };
    let member_default = insurance.and_then(|i| i.subscriber_id.clone());
    let mut auths = Vec::new();
    for (i, a) in auth_inputs.iter().enumerate() {
        let p = |f: &str| format!("authorizations[{i}].{f}");
        let start =
            opt_date(&mut v, &p("start_date"), a.start_date.as_deref()).or(form.service.start_date);
        let end = opt_date(&mut v, &p("end_date"), a.end_date.as_deref()).or(form.service.end_date);
        if a.start_date.is_none() && start.is_none() {
            v.push(
                p("start_date"),
                "is required (the form has no service start date)",
            );
        }
        if a.end_date.is_none() && end.is_none() {
            v.push(
                p("end_date"),
                "is required (the form has no service end date)",
            );
        }
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                v.push(p("end_date"), "must be on or after start_date");
            }
        }
        if let Some(s) = start {
            if s < today - Duration::days(MAX_START_AGE_DAYS) {
                v.push(p("start_date"), "must not be more than a year in the past");
            }
        }
        let rule_type = match a.rule_type.as_deref() {
            None => None,
            Some(t) => {
                let r = RuleType::parse(t);
                if r.is_none() {
                    v.push(p("rule_type"), "must be HOURS or VISITS");
                }
                r
            }
        };
        if a.rule_type.is_none() {
            v.push(p("rule_type"), "is required (HOURS or VISITS)");
        }
        let l = &a.limits;
        for (name, value) in l.all() {
            if value.is_some_and(|x| !x.is_finite() || x < 0.0) {
                v.push(p(name), "must be a number of at least 0");
            }
        }
        if l.rule_daily.is_some() {
            for (day, value) in l.weekdays() {
                if value.is_some() {
                    v.push(p(day), "cannot be combined with rule_daily");
                }
            }
        }
        if let (Some(d), Some(m)) = (l.rule_daily, l.rule_monthly) {
            if d > m {
                v.push(
                    p("rule_daily"),
                    "must be lower than or equal to rule_monthly",
                );
            }
        }
        let fdow = match a.first_day_of_week {
            None => Some(defaults.first_day_of_week),
            Some(d) if (0..=6).contains(&d) => Some(d as u8),
            Some(_) => {
                v.push(p("first_day_of_week"), "must be 0 (Monday) to 6 (Sunday)");
                None
            }
        };
        let plan = match a.plan_id.as_deref().map(str::trim) {
            None | Some("") => primary_plan,
            Some(id) => {
                let p = plans.iter().find(|p| p.id.eq_ignore_ascii_case(id));
                if p.is_none() {
                    v.push(p_plan(i), "is not an active plan of this patient");
                }
                p
            }
        };
        if let (Some(start_date), Some(end_date), Some(rule_type), Some(first_day_of_week)) =
            (start, end, rule_type, fdow)
        {
            auths.push(AuthorizationTerms {
                start_date,
                end_date,
                rule_type,
                limits: l.clone(),
                first_day_of_week,
                authorization_number: nonblank(&a.authorization_number),
                member_number: nonblank(&a.member_number)
                    .or_else(|| plan.map(|p| p.member_number.clone()))
                    .or_else(|| member_default.clone()),
                program_id: nonblank(&a.program_id),
                notes: nonblank(&a.notes),
                case_manager: a.case_manager.clone(),
                plan_id: plan.map(|p| p.id.clone()),
            });
        }
    }
    // ACCloud requires each authorization of a referral to have the referral's own dates.
    if let Some(first) = auths.first() {
        for (i, a) in auths.iter().enumerate().skip(1) {
            if (a.start_date, a.end_date) != (first.start_date, first.end_date) {
                v.push(
                    format!("authorizations[{i}]"),
                    "must have the same start and end dates as authorizations[0]: ACCloud requires every authorization of a referral to match the referral's dates",
                );
            }
        }
    }
    for i in 0..auths.len() {
        for j in 0..i {
            if crate::send::keys::same_authorization(&auths[i], &auths[j]) {
                v.push(
                    format!("authorizations[{i}]"),
                    format!("has the same dates and limits as authorizations[{j}]"),
                );
            }
        }
    }

    let ref_in = input.referral.clone().unwrap_or_default();
    let care_type = match ref_in.care_type.as_deref() {
        None => Some(defaults.care_type),
        Some(s) => {
            let c = CareType::parse(s);
            if c.is_none() {
                v.push("referral.care_type", "must be psw or nursing");
            }
            c
        }
    };
    let referral_type = match ref_in.referral_type.as_deref() {
        None => Some(defaults.referral_type),
        Some(s) => {
            let r = ReferralType::parse(s);
            if r.is_none() {
                v.push("referral.referral_type", "must be visit or service");
            }
            r
        }
    };

    match (
        name,
        service_code,
        funder,
        care_type,
        referral_type,
        client_terms,
    ) {
        (
            Some(name),
            Some(service_code),
            Some(funder),
            Some(care_type),
            Some(referral_type),
            Some(client),
        ) if v.is_empty() => Ok(ApprovalTerms {
            client,
            service: ServiceTerms {
                name: name.trim().to_owned(),
                service_code,
                funder,
                instructions: nonblank(&svc_in.instructions),
                start_date: svc_start,
                end_date: svc_end,
            },
            authorizations: auths,
            referral: ReferralTerms {
                care_type,
                referral_type,
                comment: nonblank(&ref_in.comment),
                case_manager: ref_in.case_manager,
            },
        }),
        _ => Err(v),
    }
}

fn resolve_client(
    input: Option<&ClientInput>,
    meta: &ClientMeta,
    v: &mut Violations,
) -> Option<ClientTerms> {
    let empty = ClientInput::default();
    let i = input.unwrap_or(&empty);
    let pick = |new: &Option<String>, old: &Option<String>| nonblank(new).or_else(|| old.clone());
    let first_name = nonblank(&i.first_name).unwrap_or_else(|| meta.first_name.clone());
    let last_name = nonblank(&i.last_name).unwrap_or_else(|| meta.last_name.clone());
    let birthday = match i.birthday.as_deref() {
        Some(b) => opt_date(v, "client.birthday", Some(b)),
        None => meta.birthday,
    };
    let timezone = match nonblank(&i.timezone) {
        Some(tz) => match TimeZone::parse(&tz) {
            Ok(tz) => tz.name().to_owned(),
            Err(e) => {
                v.push("client.timezone", e.to_string());
                return None;
            }
        },
        None => meta.timezone.name().to_owned(),
    };
    Some(ClientTerms {
        first_name,
        last_name,
        birthday,
        gender: pick(&i.gender, &meta.gender),
        email: pick(&i.email, &meta.email),
        phone_main: pick(&i.phone_main, &meta.phone_main),
        address: pick(&i.address, &meta.address),
        city: pick(&i.city, &meta.city),
        state: pick(&i.state, &meta.state),
        zip: pick(&i.zip, &meta.zip),
        country: pick(&i.country, &meta.country),
        timezone,
    })
}

// ---- changes after the send ----

impl ApprovalInput {
    /// The terms in force as an input: resolving it gives the same terms back.
    pub fn from_terms(t: &ApprovalTerms) -> Self {
        let c = &t.client;
        let refs = |r: &Ref| match r {
            Ref::Id(id) => (Some(*id), None),
            Ref::Name(n) => (None, Some(n.clone())),
        };
        let (service_code_id, service_code_name) = refs(&t.service.service_code);
        let (funder_id, funder_name) = refs(&t.service.funder);
        Self {
            client: Some(ClientInput {
                first_name: Some(c.first_name.clone()),
                last_name: Some(c.last_name.clone()),
                birthday: c.birthday.map(|b| b.to_string()),
                gender: c.gender.clone(),
                email: c.email.clone(),
                phone_main: c.phone_main.clone(),
                address: c.address.clone(),
                city: c.city.clone(),
                state: c.state.clone(),
                zip: c.zip.clone(),
                country: c.country.clone(),
                timezone: Some(c.timezone.clone()),
            }),
            service: Some(ServiceInput {
                name: Some(t.service.name.clone()),
                service_code_id,
                service_code_name,
                funder_id,
                funder_name,
                instructions: t.service.instructions.clone(),
                start_date: t.service.start_date.map(|d| d.to_string()),
                end_date: t.service.end_date.map(|d| d.to_string()),
            }),
            authorizations: Some(
                t.authorizations
                    .iter()
                    .map(|a| AuthorizationInput {
                        start_date: Some(a.start_date.to_string()),
                        end_date: Some(a.end_date.to_string()),
                        rule_type: Some(a.rule_type.as_str().to_owned()),
                        limits: a.limits.clone(),
                        first_day_of_week: Some(i64::from(a.first_day_of_week)),
                        authorization_number: a.authorization_number.clone(),
                        member_number: a.member_number.clone(),
                        program_id: a.program_id.clone(),
                        notes: a.notes.clone(),
                        case_manager: a.case_manager.clone(),
                        plan_id: a.plan_id.clone(),
                    })
                    .collect(),
            ),
            referral: Some(ReferralInput {
                care_type: Some(t.referral.care_type.as_str().to_owned()),
                referral_type: Some(t.referral.referral_type.as_str().to_owned()),
                comment: t.referral.comment.clone(),
                case_manager: t.referral.case_manager.clone(),
            }),
            revision_comment: None,
        }
    }

    /// A change of terms as asked, over the terms in force: every field it names replaces
    /// the one in force, every other is kept. Authorizations are matched by index (a longer
    /// list adds, a shorter one removes); an authorization's limits are one term (naming any
    /// limit replaces them all), and so is a case manager.
    pub fn over_terms(&self, t: &ApprovalTerms) -> Self {
        let base = Self::from_terms(t);
        let authorizations = match (&self.authorizations, base.authorizations) {
            (None, kept) => kept,
            (Some(asked), kept) => {
                let kept = kept.unwrap_or_default();
                Some(
                    asked
                        .iter()
                        .enumerate()
                        .map(|(i, a)| match kept.get(i) {
                            Some(k) => a.over(k),
                            None => a.clone(),
                        })
                        .collect(),
                )
            }
        };
        Self {
            client: over_opt(&self.client, base.client, ClientInput::over),
            service: over_opt(&self.service, base.service, ServiceInput::over),
            authorizations,
            referral: over_opt(&self.referral, base.referral, ReferralInput::over),
            revision_comment: self.revision_comment.clone(),
        }
    }
}

fn over_opt<T: Clone>(asked: &Option<T>, kept: Option<T>, over: fn(&T, &T) -> T) -> Option<T> {
    match (asked, kept) {
        (Some(a), Some(k)) => Some(over(a, &k)),
        (Some(a), None) => Some(a.clone()),
        (None, k) => k,
    }
}

/// `asked` where it names a value, else `kept`.
fn or<T: Clone>(asked: &Option<T>, kept: &Option<T>) -> Option<T> {
    asked.clone().or_else(|| kept.clone())
}

/// A pair of fields of which one names the object (by id or by name): asked if it names it.
fn or_pair<A: Clone, B: Clone>(
    asked: (&Option<A>, &Option<B>),
    kept: (&Option<A>, &Option<B>),
) -> (Option<A>, Option<B>) {
    if asked.0.is_some() || asked.1.is_some() {
        (asked.0.clone(), asked.1.clone())
    } else {
        (kept.0.clone(), kept.1.clone())
    }
}

impl ClientInput {
    fn over(&self, k: &Self) -> Self {
        Self {
            first_name: or(&self.first_name, &k.first_name),
            last_name: or(&self.last_name, &k.last_name),
            birthday: or(&self.birthday, &k.birthday),
            gender: or(&self.gender, &k.gender),
            email: or(&self.email, &k.email),
            phone_main: or(&self.phone_main, &k.phone_main),
            address: or(&self.address, &k.address),
            city: or(&self.city, &k.city),
            state: or(&self.state, &k.state),
            zip: or(&self.zip, &k.zip),
            country: or(&self.country, &k.country),
            timezone: or(&self.timezone, &k.timezone),
        }
    }
}

impl ServiceInput {
    fn over(&self, k: &Self) -> Self {
        let (service_code_id, service_code_name) = or_pair(
            (&self.service_code_id, &self.service_code_name),
            (&k.service_code_id, &k.service_code_name),
        );
        let (funder_id, funder_name) = or_pair(
            (&self.funder_id, &self.funder_name),
            (&k.funder_id, &k.funder_name),
        );
        Self {
            name: or(&self.name, &k.name),
            service_code_id,
            service_code_name,
            funder_id,
            funder_name,
            instructions: or(&self.instructions, &k.instructions),
            start_date: or(&self.start_date, &k.start_date),
            end_date: or(&self.end_date, &k.end_date),
        }
    }
}

impl AuthorizationInput {
    fn over(&self, k: &Self) -> Self {
        Self {
            start_date: or(&self.start_date, &k.start_date),
            end_date: or(&self.end_date, &k.end_date),
            rule_type: or(&self.rule_type, &k.rule_type),
            limits: if self.limits == Limits::default() {
                k.limits.clone()
            } else {
                self.limits.clone()
            },
            first_day_of_week: or(&self.first_day_of_week, &k.first_day_of_week),
            authorization_number: or(&self.authorization_number, &k.authorization_number),
            member_number: or(&self.member_number, &k.member_number),
            program_id: or(&self.program_id, &k.program_id),
            notes: or(&self.notes, &k.notes),
            case_manager: or(&self.case_manager, &k.case_manager),
            plan_id: or(&self.plan_id, &k.plan_id),
        }
    }
}

impl ReferralInput {
    fn over(&self, k: &Self) -> Self {
        Self {
            care_type: or(&self.care_type, &k.care_type),
            referral_type: or(&self.referral_type, &k.referral_type),
            comment: or(&self.comment, &k.comment),
            case_manager: or(&self.case_manager, &k.case_manager),
        }
    }
}

/// The authorization as the agency receives it: its case manager is kept on the HQ branch
/// only, and the plan it belongs to is ours alone.
fn as_agency_sees(a: &AuthorizationTerms) -> AuthorizationTerms {
    AuthorizationTerms {
        case_manager: None,
        plan_id: None,
        ..a.clone()
    }
}

/// What a change to one authorization takes in ACCloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "op", content = "index", rename_all = "snake_case")]
pub enum AuthorizationChange {
    /// Only fields ACCloud lets us update changed (end date, numbers, notes, case manager).
    Update(usize),
    /// The start date, rule type, a limit or the first day of the week changed: delete the
    /// old one and create a new one.
    Replace(usize),
    Create(usize),
    Delete(usize),
}

/// The calls a change of terms needs, in order, and its reasons in plain words.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChangePlan {
    pub client: bool,
    pub service: bool,
    pub authorizations: Vec<AuthorizationChange>,
    /// Whether a referral revision is needed: whenever something the agency receives
    /// changed.
    pub revision: bool,
    pub reasons: Vec<String>,
}

impl ChangePlan {
    /// No call to make at all.
    pub fn is_empty(&self) -> bool {
        !self.revision && !self.client && !self.service && self.authorizations.is_empty()
    }
}

fn describe_date(d: Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "none".into())
}

/// The difference between the terms in force and new ones. Fields ACCloud cannot change on
/// an existing service or referral are violations.
pub fn diff(old: &ApprovalTerms, new: &ApprovalTerms) -> Result<ChangePlan, Violations> {
    let mut v = Violations::default();
    let mut plan = ChangePlan::default();
    let (os, ns) = (&old.service, &new.service);
    if os.name != ns.name {
        v.push(
            "service.name",
            "cannot change once the service exists in ACCloud",
        );
    }
    if os.service_code != ns.service_code {
        v.push(
            "service.service_code",
            "cannot change once the service exists in ACCloud",
        );
    }
    if os.funder != ns.funder {
        v.push(
            "service.funder",
            "cannot change once the service exists in ACCloud",
        );
    }
    if (os.start_date, os.end_date) != (ns.start_date, ns.end_date) {
        v.push("service.start_date", "the service's dates cannot change once it exists in ACCloud (the authorizations' dates can)");
    }
    if old.referral.care_type != new.referral.care_type {
        v.push(
            "referral.care_type",
            "cannot change once the referral is sent",
        );
    }
    if old.referral.referral_type != new.referral.referral_type {
        v.push(
            "referral.referral_type",
            "cannot change once the referral is sent",
        );
    }
    if old.client != new.client {
        plan.client = true;
        if old.client.timezone != new.client.timezone {
            plan.reasons.push(format!(
                "Client time zone changed from {} to {}",
                old.client.timezone, new.client.timezone
            ));
        } else {
            plan.reasons.push("Client demographics changed".into());
        }
    }
    if os.instructions != ns.instructions {
        plan.service = true;
        plan.reasons.push("Service instructions changed".into());
    }
    let n = old.authorizations.len().max(new.authorizations.len());
    let mut agency_sees = false;
    for i in 0..n {
        let label = if n > 1 {
            format!("Authorization {}", i + 1)
        } else {
            "Authorization".into()
        };
        match (old.authorizations.get(i), new.authorizations.get(i)) {
            (Some(a), Some(b)) => {
                let immutable = a.start_date != b.start_date
                    || a.rule_type != b.rule_type
                    || a.limits != b.limits
                    || a.first_day_of_week != b.first_day_of_week;
                if immutable {
                    plan.authorizations.push(AuthorizationChange::Replace(i));
                    if a.start_date != b.start_date {
                        plan.reasons.push(format!(
                            "{label} start date changed from {} to {}",
                            a.start_date, b.start_date
                        ));
                    }
                    if a.rule_type != b.rule_type {
                        plan.reasons.push(format!(
                            "{label} rule type changed from {} to {}",
                            a.rule_type.as_str(),
                            b.rule_type.as_str()
                        ));
                    }
                    if a.limits != b.limits || a.first_day_of_week != b.first_day_of_week {
                        plan.reasons.push(format!("{label} frequency changed"));
                    }
                } else if a != b {
                    plan.authorizations.push(AuthorizationChange::Update(i));
                    agency_sees |= as_agency_sees(a) != as_agency_sees(b);
                }
                if a.end_date != b.end_date {
                    plan.reasons.push(format!(
                        "{label} end date changed from {} to {}",
                        a.end_date, b.end_date
                    ));
                }
                if !immutable && as_agency_sees(a) != as_agency_sees(b) && a.end_date == b.end_date
                {
                    plan.reasons.push(format!("{label} details changed"));
                }
            }
            (None, Some(b)) => {
                plan.authorizations.push(AuthorizationChange::Create(i));
                plan.reasons.push(format!(
                    "{label} added ({} to {})",
                    b.start_date, b.end_date
                ));
            }
            (Some(a), None) => {
                plan.authorizations.push(AuthorizationChange::Delete(i));
                plan.reasons.push(format!(
                    "{label} removed ({} to {})",
                    a.start_date, a.end_date
                ));
            }
            (None, None) => {}
        }
    }
    let (od, nd) = (old.referral_dates(), new.referral_dates());
    if od != nd {
        plan.reasons.push(format!(
            "Referral dates changed from {} – {} to {} – {}",
            describe_date(od.map(|d| d.0)),
            describe_date(od.map(|d| d.1)),
            describe_date(nd.map(|d| d.0)),
            describe_date(nd.map(|d| d.1)),
        ));
    }
    if old.referral.case_manager != new.referral.case_manager {
        plan.reasons.push("Case manager changed".into());
    }
    if old.referral.comment != new.referral.comment {
        plan.reasons.push("Referral comment changed".into());
    }
    // A revision only when something the agency receives changed: an authorization's case
    // manager alone is updated on the HQ branch without one.
    let agency_sees = agency_sees
        || plan
            .authorizations
            .iter()
            .any(|op| !matches!(op, AuthorizationChange::Update(_)));
    plan.revision = plan.client || plan.service || agency_sees || !plan.reasons.is_empty();
    v.into_result(plan)
}

fn p_plan(i: usize) -> String {
    format!("authorizations[{i}].plan_id")
}

fn nonblank(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn opt_date(v: &mut Violations, path: &str, s: Option<&str>) -> Option<NaiveDate> {
    let s = s?;
    match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            v.push(path, "must be a date in the form YYYY-MM-DD");
            None
        }
    }
}

/// One authorization from the form: "N visits total" becomes a VISITS authorization with a
/// period limit; "twice a week" style frequency a weekly limit.
fn derive_authorization(form: &StructuredReferral) -> Option<AuthorizationInput> {
    let total = form.service.authorizations.as_deref().and_then(parse_total);
    let freq = form.service.frequency.as_deref().and_then(parse_frequency);
    if total.is_none() && freq.is_none() {
        return None;
    }
    let rule_type = total.map(|t| t.1).unwrap_or(RuleType::Visits);
    let mut limits = Limits {
        rule_period: total.map(|t| t.0),
        ..Limits::default()
    };
    if let Some((n, per)) = freq {
        match per {
            Per::Day => limits.rule_daily = Some(n),
            Per::Week => limits.rule_weekly = Some(n),
            Per::Month => limits.rule_monthly = Some(n),
        }
    }
    Some(AuthorizationInput {
        rule_type: Some(rule_type.as_str().to_owned()),
        limits,
        ..AuthorizationInput::default()
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Per {
    Day,
    Week,
    Month,
}

/// "10 visits total", "20 hours".
fn parse_total(s: &str) -> Option<(f64, RuleType)> {
    let words: Vec<String> = s.split_whitespace().map(str::to_lowercase).collect();
    let n: f64 = words.first()?.parse().ok()?;
    let unit = words.get(1)?;
    let rt = if unit.starts_with("visit") {
        RuleType::Visits
    } else if unit.starts_with("hour") {
        RuleType::Hours
    } else {
        return None;
    };
    Some((n, rt))
}

/// "Twice a week", "3 times per week", "once a day", "daily", "weekly".
fn parse_frequency(s: &str) -> Option<(f64, Per)> {
    let s = s.to_lowercase();
    let words: Vec<&str> = s.split_whitespace().collect();
    let per = |w: &str| match w.trim_end_matches(['.', ',']) {
        "day" | "daily" => Some(Per::Day),
        "week" | "weekly" => Some(Per::Week),
        "month" | "monthly" => Some(Per::Month),
        _ => None,
    };
    if words.len() == 1 {
        return per(words[0]).map(|p| (1.0, p));
    }
    let (count, rest) = match words.as_slice() {
        ["once", rest @ ..] => (1.0, rest),
        ["twice", rest @ ..] => (2.0, rest),
        [n, "times" | "time" | "visits" | "x", rest @ ..] => (n.parse().ok()?, rest),
        _ => return None,
    };
    match rest {
        ["a" | "per" | "each" | "every", unit] => per(unit).map(|p| (count, p)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::{Insurance, ServiceRequest};

    fn form() -> StructuredReferral {
        StructuredReferral {
            service: ServiceRequest {
                requested: Some("PT".into()),
                start_date: NaiveDate::from_ymd_opt(2026, 12, 1),
                end_date: NaiveDate::from_ymd_opt(2027, 1, 31),
                frequency: Some("Twice a week".into()),
                authorizations: Some("10 visits total".into()),
            },
            primary_insurance: Some(Insurance {
                name: Some("ABC Insurers".into()),
                subscriber_id: Some("1111111".into()),
                ..Insurance::default()
            }),
            ..StructuredReferral::default()
        }
    }

    fn defaults() -> Defaults {
        Defaults {
            services: [(
                "pt".to_owned(),
                ServiceMapping {
                    name: "Physical Therapy".into(),
                    service_code: "Physical Therapy".into(),
                },
            )]
            .into(),
            funders: [(
                "ABC insurers".to_owned(),
                "Blue Cross Blue Shield".to_owned(),
            )]
            .into(),
            ..Defaults::default()
        }
    }

    fn meta() -> ClientMeta {
        ClientMeta {
            id: 1094,
            first_name: "Jane".into(),
            last_name: "Smithers".into(),
            email: None,
            phone_main: None,
            birthday: NaiveDate::from_ymd_opt(1998, 5, 7),
            gender: Some("F".into()),
            address: None,
            city: Some("Dayton".into()),
            state: None,
            zip: None,
            country: None,
            timezone: TimeZone::parse("America/Denver").unwrap(),
        }
    }

    fn terms() -> ApprovalTerms {
        resolve(
            &ApprovalInput::default(),
            &form(),
            &meta(),
            &[],
            &defaults(),
            today(),
        )
        .unwrap()
    }

    #[test]
    fn terms_resolve_back_from_themselves() {
        let t = terms();
        let again = resolve(
            &ApprovalInput::from_terms(&t),
            &form(),
            &meta(),
            &[],
            &defaults(),
            today(),
        )
        .unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn a_change_keeps_every_term_it_does_not_name() {
        let mut t = terms();
        t.client.email = Some("corrected@example.com".into());
        t.referral.comment = Some("Ring twice".into());
        let weekly = Limits {
            rule_weekly: Some(3.0),
            ..Limits::default()
        };
        let asked = ApprovalInput {
            authorizations: Some(vec![AuthorizationInput {
                limits: weekly.clone(),
                ..AuthorizationInput::default()
            }]),
            ..ApprovalInput::default()
        };
        // On its own the input lacks a rule type; over the terms in force it keeps it.
        let alone = resolve(&asked, &form(), &meta(), &[], &defaults(), today()).unwrap_err();
        assert_eq!(alone.0[0].path, "authorizations[0].rule_type");
        let changed = resolve(
            &asked.over_terms(&t),
            &form(),
            &meta(),
            &[],
            &defaults(),
            today(),
        )
        .unwrap();
        let (a, b) = (&t.authorizations[0], &changed.authorizations[0]);
        assert_eq!(b.limits, weekly, "naming a limit replaces the limits");
        assert_eq!(
            (b.rule_type, b.start_date, b.end_date, &b.member_number),
            (a.rule_type, a.start_date, a.end_date, &a.member_number)
        );
        assert_eq!(changed.client, t.client, "a corrected client is kept");
        assert_eq!(changed.referral, t.referral);
        assert_eq!(changed.service, t.service);

        // Naming only the end date keeps the limits too.
        let asked = ApprovalInput {
            authorizations: Some(vec![AuthorizationInput {
                end_date: Some("2027-01-20".into()),
                ..AuthorizationInput::default()
            }]),
            ..ApprovalInput::default()
        };
        let changed = resolve(
            &asked.over_terms(&t),
            &form(),
            &meta(),
            &[],
            &defaults(),
            today(),
        )
        .unwrap();
        assert_eq!(changed.authorizations[0].limits, a.limits);
        assert_eq!(
            changed.authorizations[0].end_date,
            NaiveDate::from_ymd_opt(2027, 1, 20).unwrap()
        );
        // Nothing named: nothing changes.
        let same = ApprovalInput::default().over_terms(&t);
        let same = resolve(&same, &form(), &meta(), &[], &defaults(), today()).unwrap();
        assert!(diff(&t, &same).unwrap().is_empty());
    }

    #[test]
    fn an_authorizations_case_manager_alone_is_updated_without_a_revision() {
        let old = terms();
        let cm = CaseManager {
            name: Some("Dana".into()),
            ..CaseManager::default()
        };
        let mut new = old.clone();
        new.authorizations[0].case_manager = Some(cm.clone());
        let plan = diff(&old, &new).unwrap();
        assert_eq!(plan.authorizations, vec![AuthorizationChange::Update(0)]);
        assert!(!plan.revision, "the agency does not receive it");
        assert!(plan.reasons.is_empty());
        assert!(!plan.is_empty(), "the HQ branch still gets the update");

        // The referral's case manager is what the agency sees.
        let mut new = old.clone();
        new.referral.case_manager = Some(cm);
        let plan = diff(&old, &new).unwrap();
        assert!(plan.revision);
        assert_eq!(plan.reasons, vec!["Case manager changed".to_owned()]);

        // The plan an authorization belongs to is not sent to the agency either.
        let mut new = old.clone();
        new.authorizations[0].plan_id = Some("another plan".into());
        let plan = diff(&old, &new).unwrap();
        assert_eq!(plan.authorizations, vec![AuthorizationChange::Update(0)]);
        assert!(!plan.revision);
    }

    #[test]
    fn unchanged_terms_plan_nothing() {
        let plan = diff(&terms(), &terms()).unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan, ChangePlan::default());
    }

    #[test]
    fn an_end_date_change_is_an_update_with_a_plain_reason() {
        let old = terms();
        let mut new = old.clone();
        new.authorizations[0].end_date = NaiveDate::from_ymd_opt(2027, 2, 28).unwrap();
        let plan = diff(&old, &new).unwrap();
        assert_eq!(plan.authorizations, vec![AuthorizationChange::Update(0)]);
        assert_eq!(
            plan.reasons,
            vec![
                "Authorization end date changed from 2027-01-31 to 2027-02-28",
                "Referral dates changed from 2026-12-01 – 2027-01-31 to 2026-12-01 – 2027-02-28",
            ]
        );
        assert!(plan.revision && !plan.client && !plan.service);
    }

    #[test]
    fn start_rule_type_and_frequency_changes_replace_the_authorization() {
        let old = terms();
        for change in 0..3 {
            let mut new = old.clone();
            match change {
                0 => {
                    new.authorizations[0].start_date = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
                }
                1 => new.authorizations[0].rule_type = RuleType::Hours,
                _ => new.authorizations[0].limits.rule_weekly = Some(3.0),
            }
            let plan = diff(&old, &new).unwrap();
            assert_eq!(
                plan.authorizations,
                vec![AuthorizationChange::Replace(0)],
                "{change}"
            );
        }
    }

    #[test]
    fn added_and_removed_authorizations_and_client_changes() {
        let old = terms();
        let mut new = old.clone();
        let mut extra = old.authorizations[0].clone();
        extra.start_date = NaiveDate::from_ymd_opt(2027, 2, 1).unwrap();
        extra.end_date = NaiveDate::from_ymd_opt(2027, 3, 1).unwrap();
        new.authorizations.push(extra);
        new.client.city = Some("Kettering".into());
        let plan = diff(&old, &new).unwrap();
        assert!(plan.client);
        assert_eq!(plan.authorizations, vec![AuthorizationChange::Create(1)]);
        assert_eq!(plan.reasons[0], "Client demographics changed");
        assert_eq!(
            plan.reasons[1],
            "Authorization 2 added (2027-02-01 to 2027-03-01)"
        );

        let back = diff(&new, &old).unwrap();
        assert_eq!(back.authorizations, vec![AuthorizationChange::Delete(1)]);
    }

    #[test]
    fn fields_acloud_cannot_change_are_refused() {
        let old = terms();
        let mut new = old.clone();
        new.service.funder = Ref::Id(9);
        new.referral.care_type = CareType::Psw;
        let err = diff(&old, &new).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, vec!["service.funder", "referral.care_type"]);
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn everything_derivable_is_derived_from_the_form_and_defaults() {
        let t = resolve(
            &ApprovalInput::default(),
            &form(),
            &meta(),
            &[],
            &defaults(),
            today(),
        )
        .unwrap();
        assert_eq!(t.service.name, "Physical Therapy");
        assert_eq!(t.service.service_code, Ref::Name("Physical Therapy".into()));
        assert_eq!(t.service.funder, Ref::Name("Blue Cross Blue Shield".into()));
        assert_eq!(t.authorizations.len(), 1);
        let a = &t.authorizations[0];
        assert_eq!(a.rule_type, RuleType::Visits);
        assert_eq!(a.limits.rule_period, Some(10.0));
        assert_eq!(a.limits.rule_weekly, Some(2.0));
        assert_eq!(a.member_number.as_deref(), Some("1111111"));
        assert_eq!(a.first_day_of_week, 6);
        assert_eq!(t.referral.care_type, CareType::Nursing);
        assert_eq!(t.referral.referral_type, ReferralType::Service);
        assert_eq!(
            t.referral_dates(),
            Some((
                NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                NaiveDate::from_ymd_opt(2027, 1, 31).unwrap()
            ))
        );
    }

    #[test]
    fn every_rule_violation_is_listed_at_once() {
        let input = ApprovalInput {
            service: Some(ServiceInput {
                service_code_id: Some(48),
                service_code_name: Some("X".into()),
                ..ServiceInput::default()
            }),
            authorizations: Some(vec![AuthorizationInput {
                start_date: Some("2020-01-01".into()),
                end_date: Some("2019-12-31".into()),
                rule_type: Some("MINUTES".into()),
                limits: Limits {
                    rule_daily: Some(5.0),
                    rule_monthly: Some(4.0),
                    rule_monday: Some(1.0),
                    ..Limits::default()
                },
                first_day_of_week: Some(7),
                ..AuthorizationInput::default()
            }]),
            referral: Some(ReferralInput {
                care_type: Some("babysitting".into()),
                referral_type: Some("offer".into()),
                ..ReferralInput::default()
            }),
            client: None,
            revision_comment: None,
        };
        let err =
            resolve(&input, &form(), &meta(), &[], &Defaults::default(), today()).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "service.name",
                "service.service_code_id",
                "service.funder_name",
                "authorizations[0].end_date",
                "authorizations[0].start_date",
                "authorizations[0].rule_type",
                "authorizations[0].rule_monday",
                "authorizations[0].rule_daily",
                "authorizations[0].first_day_of_week",
                "referral.care_type",
                "referral.referral_type",
            ]
        );
    }

    #[test]
    fn the_primary_plan_supplies_member_number_and_funder() {
        let plans = [PlanContext {
            id: "7d3c0f1e-0000-4000-8000-000000000001".into(),
            order: 1,
            member_number: "M-77".into(),
            funder: Some(Ref::Id(9)),
        }];
        let t = resolve(
            &ApprovalInput::default(),
            &form(),
            &meta(),
            &plans,
            &defaults(),
            today(),
        )
        .unwrap();
        assert_eq!(t.service.funder, Ref::Id(9));
        assert_eq!(t.authorizations[0].member_number.as_deref(), Some("M-77"));
        assert_eq!(
            t.authorizations[0].plan_id.as_deref(),
            Some(plans[0].id.as_str())
        );

        let input = ApprovalInput {
            authorizations: Some(vec![AuthorizationInput {
                plan_id: Some("00000000-0000-4000-8000-00000000dead".into()),
                rule_type: Some("VISITS".into()),
                ..AuthorizationInput::default()
            }]),
            ..ApprovalInput::default()
        };
        let err = resolve(&input, &form(), &meta(), &plans, &defaults(), today()).unwrap_err();
        assert_eq!(err.0[0].path, "authorizations[0].plan_id");
    }

    #[test]
    fn authorizations_of_one_referral_share_its_dates() {
        let a = AuthorizationInput {
            rule_type: Some("HOURS".into()),
            limits: Limits {
                rule_weekly: Some(3.0),
                ..Limits::default()
            },
            ..AuthorizationInput::default()
        };
        let b = AuthorizationInput {
            end_date: Some("2027-01-15".into()),
            rule_type: Some("VISITS".into()),
            ..a.clone()
        };
        let input = ApprovalInput {
            authorizations: Some(vec![a, b]),
            ..ApprovalInput::default()
        };
        let err = resolve(&input, &form(), &meta(), &[], &defaults(), today()).unwrap_err();
        assert_eq!(err.0[0].path, "authorizations[1]");
        assert!(err.0[0].problem.contains("same start and end dates"));
    }

    #[test]
    fn identical_authorizations_are_rejected() {
        let a = AuthorizationInput {
            rule_type: Some("HOURS".into()),
            limits: Limits {
                rule_weekly: Some(3.0),
                ..Limits::default()
            },
            ..AuthorizationInput::default()
        };
        let input = ApprovalInput {
            authorizations: Some(vec![a.clone(), a]),
            ..ApprovalInput::default()
        };
        let err = resolve(&input, &form(), &meta(), &[], &defaults(), today()).unwrap_err();
        assert_eq!(err.0[0].path, "authorizations[1]");
    }

    #[test]
    fn frequencies_and_totals() {
        assert_eq!(parse_frequency("Twice a week"), Some((2.0, Per::Week)));
        assert_eq!(parse_frequency("3 times per week"), Some((3.0, Per::Week)));
        assert_eq!(parse_frequency("once a day"), Some((1.0, Per::Day)));
        assert_eq!(parse_frequency("Daily"), Some((1.0, Per::Day)));
        assert_eq!(parse_frequency("when needed"), None);
        assert_eq!(
            parse_total("10 visits total"),
            Some((10.0, RuleType::Visits))
        );
        assert_eq!(parse_total("20 hours"), Some((20.0, RuleType::Hours)));
        assert_eq!(parse_total("ten visits"), None);
    }

    #[test]
    fn no_derivable_authorization_is_a_violation() {
        let mut f = form();
        f.service.frequency = Some("as needed".into());
        f.service.authorizations = None;
        let err = resolve(
            &ApprovalInput::default(),
            &f,
            &meta(),
            &[],
            &defaults(),
            today(),
        )
        .unwrap_err();
        assert_eq!(err.0[0].path, "authorizations");
    }
}
