#![doc = include_str!("../README.md")]

mod client;
mod enums;
mod error;
mod ids;
pub mod lookup;
#[cfg(test)]
mod spec_tests;
mod types;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use client::{
    AcCloudConfig, AcCloudEnv, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpAcCloud,
};
pub use enums::{
    AuthorizationMethodology, AuthorizationStatus, CancelReason, CareType, ClientStatus,
    FundingMethodology, ReferralSortBy, ReferralStatus, ReferralType, Revisions, RuleType,
    ServiceStatus, SortOrder,
};
pub use error::{AcCloudError, AmbiguousReason, MAX_ERROR_BODY_BYTES};
pub use ids::{
    AuthorizationId, BranchId, ClientId, FunderId, GroupId, ReferralId, RevisionGroupId,
    SequenceId, ServiceCodeId, ServiceId, SupplyPersonaId,
};
pub use secrecy::SecretString;
pub use types::{
    AttachmentUpload, AttachmentUploaded, Authorization, AuthorizationCaseManager,
    AuthorizationFilter, AuthorizationLimits, AuthorizationUpdate, BranchRef, CancelReferral,
    CaseManager, ClientDetails, ClientGroup, ClientRef, ClientUpdate, Demographics, FileEntry,
    Funder, FunderFilter, FunderShare, GroupRef, MAX_ATTACHMENT_BYTES, MAX_CANCEL_COMMENT_CHARS,
    NewAuthorization, NewClient, NewReferral, NewService, Organization, Page, PageRequest,
    Referral, ReferralClient, ReferralCore, ReferralFilter, ReferralService, ReferralUpdate,
    Revision, RevisionRequest, ServiceClientRef, ServiceCode, ServiceCodeRef, ServiceDetails,
    ServiceFilter, ServiceFunder, ServicePatient, ServiceRef, ServiceSummary, ServiceUpdate,
    TrustedNetworkFilter,
};

/// Result of every ACCloud call.
pub type Result<T, E = AcCloudError> = std::result::Result<T, E>;

/// What refbridge needs from ACCloud: one method per call, no retries, no caching, no
/// reconciliation (those belong to the workers, which hold an `Arc<dyn AcCloud>`).
///
/// Uses `async_trait` so the trait stays object-safe (`impl Future` returns are not).
///
/// Conventions:
/// - Every method makes exactly one HTTP request (none when the input is refused up front
///   with [`AcCloudError::InvalidRequest`]).
/// - Lookups by id answer `Ok(None)` on 404; other calls give [`AcCloudError::NotFound`].
/// - Any 2xx is success, whatever the documented code (services create answers 200, clients
///   and authorizations 201, DELETE 204, cancel 204 or 200).
/// - Errors are classified for the send protocol; see [`AcCloudError`].
#[async_trait]
pub trait AcCloud: Send + Sync {
    /// A handle whose calls time out after `timeout` (from connect to the end of the answer).
    /// Workers call this with a deadline shorter than what is left of their lease.
    fn with_timeout(&self, timeout: Duration) -> Arc<dyn AcCloud>;

    /// `GET /ext/api/v2/patients/groups`. No name filter exists: page through and match
    /// `name == "CSI"`.
    async fn list_client_groups(
        &self,
        branch_id: Option<BranchId>,
        page: PageRequest,
    ) -> Result<Page<ClientGroup>>;

    /// `POST /ext/api/v2/patients/clients` (201). A duplicate `external_id` gives
    /// [`AcCloudError::Conflict`]: look it up with [`AcCloud::get_client_by_external_id`].
    async fn create_client(&self, client: &NewClient) -> Result<ClientRef>;

    /// `GET /ext/api/v2/patients/clients/{id}`; `None` on 404.
    async fn get_client(&self, id: ClientId) -> Result<Option<ClientDetails>>;

    /// `GET /ext/api/v2/patients/clients/by_id/{external_id}`; `None` on 404. Several
    /// clients sharing the id give [`AcCloudError::Conflict`] ("Multiple clients found").
    async fn get_client_by_external_id(&self, external_id: &str) -> Result<Option<ClientDetails>>;

    /// `PUT /ext/api/v2/patients/clients/{id}`.
    async fn update_client(&self, id: ClientId, update: &ClientUpdate) -> Result<ClientRef>;

    /// `GET /ext/api/v2/accounting/funders` (name filter `funder_name` is a substring match).
    async fn list_funders(&self, filter: &FunderFilter) -> Result<Page<Funder>>;

    /// `GET /ext/api/v2/scheduler/service_codes`.
    async fn list_service_codes(
        &self,
        branch_id: Option<BranchId>,
        page: PageRequest,
    ) -> Result<Page<ServiceCode>>;

    /// `POST /ext/api/v2/scheduler/services` (200). A duplicate `service_id` answer is
    /// undocumented: always look up with [`AcCloud::get_service_by_external_id`] first.
    async fn create_service(&self, service: &NewService) -> Result<ServiceRef>;

    /// `GET /ext/api/v2/scheduler/services/{id}`; `None` on 404.
    async fn get_service(&self, id: ServiceId) -> Result<Option<ServiceDetails>>;

    /// `GET /ext/api/v2/scheduler/services/by_id/{service_id}`; `None` on 404.
    async fn get_service_by_external_id(&self, service_id: &str) -> Result<Option<ServiceDetails>>;

    /// `PUT /ext/api/v2/scheduler/services/{id}`.
    async fn update_service(&self, id: ServiceId, update: &ServiceUpdate) -> Result<ServiceRef>;

    /// `GET /ext/api/v2/scheduler/services` (status defaults to `active` server-side).
    async fn list_services(&self, filter: &ServiceFilter) -> Result<Page<ServiceSummary>>;

    /// `POST /ext/api/v2/scheduler/authorizations` (201). The answer has no `service_ids`.
    async fn create_authorization(&self, authorization: &NewAuthorization)
    -> Result<Authorization>;

    /// `GET /ext/api/v2/scheduler/authorizations` (the only read path; no GET by id).
    async fn list_authorizations(
        &self,
        filter: &AuthorizationFilter,
    ) -> Result<Page<Authorization>>;

    /// `PUT /ext/api/v2/scheduler/authorizations/{id}` (mutable fields only).
    async fn update_authorization(
        &self,
        id: AuthorizationId,
        update: &AuthorizationUpdate,
    ) -> Result<Authorization>;

    /// `DELETE /ext/api/v2/scheduler/authorizations/{id}` (204). 404 is
    /// [`AcCloudError::NotFound`]; after an ambiguous first try it means "already deleted".
    async fn delete_authorization(&self, id: AuthorizationId) -> Result<()>;

    /// `POST /api/v1/alayamarket/outbox/referrals/from_service/{service_id}` (201), with the
    /// ACCloud (internal) service id.
    async fn create_referral(
        &self,
        service_id: ServiceId,
        referral: &NewReferral,
    ) -> Result<Referral>;

    /// `POST .../from_service/{service_id}/update/{referral_id}` (201): a new revision.
    /// `referral_id` must be the latest revision. Refused up front without a reason.
    async fn update_referral(
        &self,
        service_id: ServiceId,
        referral_id: ReferralId,
        update: &ReferralUpdate,
    ) -> Result<Referral>;

    /// `POST /api/v1/alayamarket/outbox/referrals/{referral_id}/cancel` (any 2xx). Refused
    /// up front when the comment is over 1,000 characters.
    async fn cancel_referral(&self, referral_id: ReferralId, cancel: &CancelReferral)
    -> Result<()>;

    /// `GET /api/v1/alayamarket/outbox/referrals`.
    async fn list_referrals(&self, filter: &ReferralFilter) -> Result<Page<Referral>>;

    /// `GET /api/v1/alayamarket/outbox/referrals/{referral_id}` (\[INF\]); `None` on 404.
    async fn get_referral(&self, referral_id: ReferralId) -> Result<Option<Referral>>;

    /// `GET /api/v1/alayamarket/outbox/organizations/trusted_network`.
    async fn list_trusted_network(
        &self,
        filter: &TrustedNetworkFilter,
    ) -> Result<Page<Organization>>;

    /// `POST /api/v1/alayamarket/outbox/referrals/{referral_id}/client_attachment` (201):
    /// multipart, one part `file` with the file name, streamed from disk with a known length.
    /// Files over [`MAX_ATTACHMENT_BYTES`] are refused up front.
    async fn upload_client_attachment(
        &self,
        referral_id: ReferralId,
        upload: &AttachmentUpload,
    ) -> Result<AttachmentUploaded>;

    /// `GET /ext/api/v2/files/client/{id}/{folder}/`: the folder's entries; `None` when the
    /// folder does not exist (404).
    async fn list_client_files(
        &self,
        client_id: ClientId,
        folder: &str,
    ) -> Result<Option<Vec<FileEntry>>>;

    /// `GET /ext/api/v2/files/client/{id}/{path}`: the file's bytes (at most 50 MB for
    /// attachments); `None` when not found (404, or the documented 400 with code 404).
    async fn download_client_file(&self, client_id: ClientId, path: &str) -> Result<Option<Bytes>>;
}
