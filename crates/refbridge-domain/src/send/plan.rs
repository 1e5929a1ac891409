//! The planners: what each thing asked of a send becomes, as steps. Pure functions: the API
//! calls them to record (or show, in a dry run) a plan, storage calls them inside its
//! transactions, and tests call them directly.

use std::collections::BTreeSet;

use super::{Cancellation, JobState, Step, StepKind, StepState};
use crate::approval::{ApprovalTerms, AuthorizationChange, ChangePlan};
use crate::{FileId, Violations};

/// The first send of an approval, in order: client, service, each authorization, the
/// referral, then each file.
pub fn first_send(authorizations: usize, files: impl IntoIterator<Item = FileId>) -> Vec<Step> {
    let mut steps = vec![Step::Client, Step::Service];
    steps.extend((0..authorizations).map(Step::Authorization));
    steps.push(Step::Referral);
    steps.extend(documents(files));
    steps
}

/// A change of terms after the send, from the difference of the terms
/// ([`crate::approval::diff`], which also words the revision's reasons): the client, the
/// service, each authorization (updated in place, or deleted and created again), then the
/// referral revision.
pub fn change_of_terms(diff: &ChangePlan) -> Vec<Step> {
    let mut steps = Vec::new();
    if diff.client {
        steps.push(Step::ClientUpdate);
    }
    if diff.service {
        steps.push(Step::ServiceUpdate);
    }
    for op in &diff.authorizations {
        match *op {
            AuthorizationChange::Update(i) => steps.push(Step::AuthorizationUpdate(i)),
            AuthorizationChange::Replace(i) => {
                steps.push(Step::AuthorizationDelete(i));
                steps.push(Step::Authorization(i));
            }
            AuthorizationChange::Create(i) => steps.push(Step::Authorization(i)),
            AuthorizationChange::Delete(i) => steps.push(Step::AuthorizationDelete(i)),
        }
    }
    if diff.revision {
        steps.push(Step::ReferralUpdate);
    }
    steps
}

/// Cancelling the referral: one call on its latest revision.
pub fn cancellation(c: &Cancellation) -> Vec<Step> {
    vec![Step::ReferralCancel(c.reason)]
}

/// More documents: one upload each.
pub fn documents(files: impl IntoIterator<Item = FileId>) -> Vec<Step> {
    files.into_iter().map(Step::Attachment).collect()
}

/// The reason recorded with new documents.
pub fn documents_reason(count: usize) -> String {
    format!("{count} document(s) added")
}

/// A resume with corrected terms corrects the first send's steps, which are planned per
/// authorization: it neither adds nor removes one.
pub fn check_resume_terms(
    approved: &ApprovalTerms,
    corrected: &ApprovalTerms,
) -> Result<(), Violations> {
    let count = approved.authorizations.len();
    let mut v = Violations::default();
    if corrected.authorizations.len() != count {
        v.push(
            "authorizations",
            format!(
                "a resume keeps the approved number of authorizations ({count}); add or remove \
                 them with a change once the referral is sent"
            ),
        );
    }
    v.into_result(())
}

/// What withdrawing authorizations from a first send under way does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// The deletes to send: one per withdrawn authorization that may exist in ACCloud.
    pub steps: Vec<Step>,
    /// The send job afterwards: ready to run the deletes, or paused when there are none.
    pub job: JobState,
}

/// Withdraws the authorizations at `indexes` (their plan was archived) from a send whose
/// steps are `existing`, in order: each one whose latest creation may have reached ACCloud is
/// deleted. Every step not settled is to be skipped ([`StepState::SETTLED`]).
pub fn withdrawal(existing: &[(Step, StepState)], indexes: &[usize]) -> Withdrawal {
    let steps: Vec<Step> = indexes
        .iter()
        .filter(|&&i| {
            existing
                .iter()
                .rev()
                .find(|(s, _)| *s == Step::Authorization(i))
                .is_some_and(|(_, state)| state.may_exist())
        })
        .map(|&i| Step::AuthorizationWithdraw(i))
        .collect();
    let job = if steps.is_empty() {
        JobState::Paused
    } else {
        JobState::Ready
    };
    Withdrawal { steps, job }
}

/// After a withdrawal, what the first send still has to do, in order: the withdrawn
/// authorizations created anew, then every step the withdrawal skipped (which the resume
/// marks [`StepState::Replanned`]). Empty when nothing was skipped.
pub fn replan_after_withdrawal(existing: &[(Step, StepState)]) -> Vec<Step> {
    let mut withdrawn = BTreeSet::new();
    let mut skipped = Vec::new();
    for (step, state) in existing {
        match (step, state) {
            (_, StepState::Skipped) => skipped.push(step.clone()),
            (_, StepState::Replanned) => {}
            (Step::AuthorizationWithdraw(i), _) => {
                withdrawn.insert(*i);
            }
            (Step::Authorization(i), _) => {
                withdrawn.remove(i);
            }
            _ => {}
        }
    }
    if skipped.is_empty() {
        return Vec::new();
    }
    let mut steps: Vec<Step> = withdrawn.into_iter().map(Step::Authorization).collect();
    for step in skipped {
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    steps
}

/// One call of a plan, as a person reads it (a dry run, the answer to a change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub kind: StepKind,
    pub item: String,
    pub call: &'static str,
}

/// The ACCloud calls of `steps`.
pub fn calls(steps: &[Step]) -> Vec<Call> {
    steps
        .iter()
        .map(|s| Call {
            kind: s.kind(),
            item: s.item(),
            call: s.kind().call(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::CancelReason;

    #[test]
    fn a_first_send_creates_everything_in_order() {
        let f = FileId::new();
        assert_eq!(
            first_send(2, [f]),
            vec![
                Step::Client,
                Step::Service,
                Step::Authorization(0),
                Step::Authorization(1),
                Step::Referral,
                Step::Attachment(f),
            ]
        );
    }

    #[test]
    fn a_change_replaces_what_cannot_be_updated() {
        let diff = ChangePlan {
            client: true,
            service: false,
            authorizations: vec![
                AuthorizationChange::Update(0),
                AuthorizationChange::Replace(1),
                AuthorizationChange::Create(2),
                AuthorizationChange::Delete(3),
            ],
            revision: true,
            reasons: vec!["x".into()],
        };
        assert_eq!(
            change_of_terms(&diff),
            vec![
                Step::ClientUpdate,
                Step::AuthorizationUpdate(0),
                Step::AuthorizationDelete(1),
                Step::Authorization(1),
                Step::Authorization(2),
                Step::AuthorizationDelete(3),
                Step::ReferralUpdate,
            ]
        );
        assert!(change_of_terms(&ChangePlan::default()).is_empty());
        let c = Cancellation {
            reason: CancelReason::Other,
            comment: None,
        };
        assert_eq!(
            calls(&cancellation(&c))[0].call,
            StepKind::ReferralCancel.call()
        );
    }

    #[test]
    fn a_withdrawal_deletes_only_what_may_exist() {
        use StepState::*;
        let existing = [
            (Step::Client, Done),
            (Step::Service, Done),
            (Step::Authorization(0), Done),
            (Step::Authorization(1), InFlight),
            (Step::Authorization(2), Pending),
            (Step::Referral, Pending),
        ];
        let w = withdrawal(&existing, &[0, 1, 2]);
        assert_eq!(
            w.steps,
            vec![
                Step::AuthorizationWithdraw(0),
                Step::AuthorizationWithdraw(1)
            ]
        );
        assert_eq!(w.job, JobState::Ready);
        let none = withdrawal(&existing, &[2]);
        assert_eq!((none.steps.len(), none.job), (0, JobState::Paused));
    }

    #[test]
    fn the_replan_recreates_the_withdrawn_then_what_was_skipped() {
        use StepState::*;
        let existing = [
            (Step::Client, Done),
            (Step::Service, Done),
            (Step::Authorization(0), Done),
            (Step::Authorization(1), Skipped),
            (Step::Referral, Skipped),
            (Step::AuthorizationWithdraw(0), Done),
        ];
        assert_eq!(
            replan_after_withdrawal(&existing),
            vec![
                Step::Authorization(0),
                Step::Authorization(1),
                Step::Referral
            ]
        );
        // Nothing skipped (already replanned): nothing to plan.
        let replanned = [
            (Step::Authorization(0), Replanned),
            (Step::AuthorizationWithdraw(0), Done),
        ];
        assert!(replan_after_withdrawal(&replanned).is_empty());
        // An authorization created again after its withdrawal is not withdrawn any more.
        let again = [
            (Step::AuthorizationWithdraw(0), Done),
            (Step::Authorization(0), Done),
            (Step::Referral, Skipped),
        ];
        assert_eq!(replan_after_withdrawal(&again), vec![Step::Referral]);
    }
}
