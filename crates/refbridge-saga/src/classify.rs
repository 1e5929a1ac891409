//! What a failed call means for its step: wait and try again (and whether something may have
//! been created), or stop for a person.

use refbridge_accloud::AcCloudError;
use refbridge_domain::send::StepState;

use crate::retry::RetryPolicy;
use crate::steps::Outcome;

/// A lookup (or a reference-data read) failed: nothing was created by it.
pub(crate) fn lookup_failed(retry: &RetryPolicy, e: &AcCloudError, attempt: u32) -> Outcome {
    match e {
        AcCloudError::RateLimited { retry_after, .. } => Outcome::Retry {
            state: StepState::Unknown,
            after: retry.wait(attempt, *retry_after),
            error: e.to_string(),
            count: false,
        },
        e if e.is_retryable() || e.is_ambiguous() => Outcome::Retry {
            state: StepState::Unknown,
            after: retry.backoff(attempt),
            error: e.to_string(),
            count: true,
        },
        // A lookup that ACCloud refuses (403, 409 "Multiple clients found") is for a human.
        _ => Outcome::Fail(describe(e, "looking it up")),
    }
}

/// The step's own call failed. `retry_rejection`: a definite rejection is worth another try
/// at this attempt (see `SendStep::retries_rejection`); `what`: the step in plain words.
pub(crate) fn create_failed(
    retry: &RetryPolicy,
    e: &AcCloudError,
    attempt: u32,
    retry_rejection: bool,
    what: &str,
) -> Outcome {
    match e {
        AcCloudError::RateLimited { retry_after, .. } => Outcome::Retry {
            state: StepState::Pending,
            after: retry.wait(attempt, *retry_after),
            error: e.to_string(),
            count: false,
        },
        AcCloudError::Unavailable { .. } => Outcome::Retry {
            state: StepState::Pending,
            after: retry.backoff(attempt),
            error: e.to_string(),
            count: false,
        },
        e if e.is_ambiguous() => Outcome::Retry {
            state: StepState::Unknown,
            // Look soon: most ambiguous failures landed and are found at once.
            after: retry.backoff(1),
            error: e.to_string(),
            count: false,
        },
        AcCloudError::Rejected { .. } | AcCloudError::Conflict { .. } if retry_rejection => {
            Outcome::Retry {
                state: StepState::Pending,
                after: retry.backoff(attempt),
                error: e.to_string(),
                count: false,
            }
        }
        _ => Outcome::Fail(describe(e, &format!("sending the {what}"))),
    }
}

/// What a reviewer reads: the status and ACCloud's own message.
fn describe(e: &AcCloudError, doing: &str) -> String {
    match e.message() {
        Some(m) => format!("ACCloud refused {doing}: {e}: {m}"),
        None => format!("ACCloud refused {doing}: {e}"),
    }
}
