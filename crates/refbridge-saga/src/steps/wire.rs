//! Our terms as ACCloud's request types, and the reads several steps share.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone as _};
use refbridge_accloud::{
    AcCloud, AcCloudError, AuthorizationCaseManager, AuthorizationId, AuthorizationLimits,
    CaseManager, Demographics, PageRequest, Referral, ReferralFilter, RevisionGroupId, Revisions,
    RuleType,
};
use refbridge_domain::approval::{self, ClientTerms, Limits};
use refbridge_domain::send::{self, ReferralResult, StepResult};
use serde_json::Value;

use super::{Ctx, Done, Input, not_known};

/// The client's demographics as ACCloud keeps them.
pub fn demographics(c: &ClientTerms) -> Demographics {
    let mut demo = Demographics::new(c.first_name.clone(), c.last_name.clone());
    let gender = c
        .gender
        .as_deref()
        .map(|g| match g.to_ascii_uppercase().as_str() {
            "F" | "FEMALE" => "F",
            "M" | "MALE" => "M",
            _ => "O",
        });
    for (k, v) in [
        ("birthday", c.birthday.map(|b| b.to_string())),
        ("gender", gender.map(str::to_owned)),
        ("email", c.email.clone()),
        ("phone_main", c.phone_main.clone()),
        ("address", c.address.clone()),
        ("city", c.city.clone()),
        ("state", c.state.clone()),
        ("zip", c.zip.clone()),
        ("country", c.country.clone()),
    ] {
        if let Some(v) = v {
            demo = demo.with(k, v);
        }
    }
    demo
}

/// The service's profile: the agency it is for.
pub fn service_profile(input: &Input<'_>) -> BTreeMap<String, Value> {
    BTreeMap::from([(
        "target_agency".to_owned(),
        Value::String(input.rec.request.agency.name.clone()),
    )])
}

/// Local midnight of `date` in `tz`, as an instant with its offset.
pub fn local_midnight(date: NaiveDate, tz: chrono_tz::Tz) -> Option<DateTime<FixedOffset>> {
    let naive = date.and_hms_opt(0, 0, 0)?;
    // Midnight can fall in a DST gap in a few zones: take the earliest valid instant.
    let local = tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(local.fixed_offset())
}

/// Our limits as ACCloud's authorization fields.
pub fn limits(l: &Limits) -> AuthorizationLimits {
    AuthorizationLimits {
        daily: l.rule_daily,
        weekly: l.rule_weekly,
        monthly: l.rule_monthly,
        period: l.rule_period,
        monday: l.rule_monday,
        tuesday: l.rule_tuesday,
        wednesday: l.rule_wednesday,
        thursday: l.rule_thursday,
        friday: l.rule_friday,
        saturday: l.rule_saturday,
        sunday: l.rule_sunday,
    }
}

/// Our rule type as ACCloud's.
pub fn rule_type(r: approval::RuleType) -> RuleType {
    match r {
        approval::RuleType::Hours => RuleType::Hours,
        approval::RuleType::Visits => RuleType::Visits,
    }
}

pub fn care_type(c: approval::CareType) -> refbridge_accloud::CareType {
    match c {
        approval::CareType::Nursing => refbridge_accloud::CareType::Nursing,
        approval::CareType::Psw => refbridge_accloud::CareType::Psw,
    }
}

pub fn referral_type(r: approval::ReferralType) -> refbridge_accloud::ReferralType {
    match r {
        approval::ReferralType::Service => refbridge_accloud::ReferralType::Service,
        approval::ReferralType::Visit => refbridge_accloud::ReferralType::Visit,
    }
}

pub fn cancel_reason(r: send::CancelReason) -> refbridge_accloud::CancelReason {
    use refbridge_accloud::CancelReason as Ac;
    use send::CancelReason as Ours;
    match r {
        Ours::DatetimeChange => Ac::DatetimeChange,
        Ours::ClientRequest => Ac::ClientRequest,
        Ours::ClientHospitalization => Ac::ClientHospitalization,
        Ours::ClientPassedAway => Ac::ClientPassedAway,
        Ours::ClientRefusedService => Ac::ClientRefusedService,
        Ours::ProcessingError => Ac::ProcessingError,
        Ours::Other => Ac::Other,
    }
}

/// An authorization's case manager (all fields empty when it has none).
pub fn authorization_case_manager(c: &Option<approval::CaseManager>) -> AuthorizationCaseManager {
    let c = c.clone().unwrap_or_default();
    AuthorizationCaseManager {
        name: c.name,
        phone: c.phone,
        fax: c.fax,
        email: c.email,
    }
}

/// What a referral (or a revision, or its cancellation) keeps of ACCloud's answer.
pub(super) fn referral_result(r: &Referral) -> ReferralResult {
    ReferralResult {
        referral_id: r.id().to_string(),
        revision_group_id: r.revision_group_id().map(|g| g.to_string()),
        revision_number: r.revision.as_ref().map(|v| v.revision_number),
        sequence_id: r.referral.sequence_id.map(|s| s.to_string()),
        status: r.referral.status.as_str().to_owned(),
        base_status: None,
        reasons: None,
        reason_code: None,
    }
}

pub(super) fn referral_done(r: &Referral) -> Done {
    Done::new(r.id().to_string(), StepResult::Referral(referral_result(r)))
}

/// A referral step's answer read back: the latest revision and its group.
pub(super) fn absorb_referral(ctx: &mut Ctx, result: &StepResult) {
    let Some(r) = result.referral() else {
        return;
    };
    ctx.referral = r
        .referral_id
        .parse()
        .ok()
        .map(refbridge_accloud::ReferralId);
    if let Some(g) = r.revision_group_id.as_deref().and_then(|g| g.parse().ok()) {
        ctx.revision_group = Some(RevisionGroupId(g));
    }
}

/// The revisions of a group: all of them, or the latest only.
pub(super) async fn revisions(
    ac: &dyn AcCloud,
    group: RevisionGroupId,
    which: Revisions,
) -> Result<Vec<Referral>, AcCloudError> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let filter = ReferralFilter {
            revision_group_id: Some(group),
            revisions: Some(which),
            page: Some(page),
            ..ReferralFilter::default()
        };
        let list = ac.list_referrals(&filter).await?;
        let more = list.has_next();
        out.extend(list.items);
        if !more {
            return Ok(out);
        }
        page = page.next();
    }
}

/// The latest revision of a referral's revision group: what the agency sees.
pub async fn latest_revision(
    ac: &dyn AcCloud,
    group: RevisionGroupId,
) -> Result<Option<Referral>, AcCloudError> {
    Ok(revisions(ac, group, Revisions::Latest)
        .await?
        .into_iter()
        .next())
}

/// What the referral and each revision send: the dates, the live authorizations and the case
/// manager from the current terms.
pub(super) struct ReferralParts {
    pub start_at: DateTime<FixedOffset>,
    pub end_at: DateTime<FixedOffset>,
    pub authorization_ids: Vec<AuthorizationId>,
    pub case_manager: Option<CaseManager>,
}

/// `Err`: why the referral cannot be sent (for a person).
pub(super) fn referral_parts(input: &Input<'_>, ctx: &Ctx) -> Result<ReferralParts, String> {
    let t = input.terms;
    let ids: Vec<AuthorizationId> = (0..t.authorizations.len())
        .filter_map(|i| ctx.authorizations.get(&i).copied())
        .collect();
    if ids.len() != t.authorizations.len() {
        return Err(not_known("an authorization"));
    }
    let Some((start, end)) = t.referral_dates() else {
        return Err(not_known("the authorization dates"));
    };
    let (Some(start_at), Some(end_at)) = (
        local_midnight(start, input.tz()),
        local_midnight(end, input.tz()),
    ) else {
        return Err("the referral dates do not exist in the client's time zone".into());
    };
    let case_manager = t.referral.case_manager.clone().map(|c| CaseManager {
        name: c.name,
        phone_number: c.phone,
        fax_number: c.fax,
        email: c.email,
    });
    Ok(ReferralParts {
        start_at,
        end_at,
        authorization_ids: ids,
        case_manager,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_midnight_carries_the_zone_offset() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let t = local_midnight(d, chrono_tz::America::Denver).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T00:00:00-07:00");
        let summer = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        assert_eq!(
            local_midnight(summer, chrono_tz::America::Denver)
                .unwrap()
                .to_rfc3339(),
            "2026-07-01T00:00:00-06:00"
        );
    }
}
