//! Fault injection: what can go wrong on a request, how it is chosen
//! (scripted first, then seeded random draws), and the endpoint names.

use std::collections::BTreeMap;
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Every simulated ACCloud operation, as named in the journal and in the
/// fault configuration (snake_case on the wire, e.g. `client_create`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /ext/api/v2/patients/groups`
    GroupList,
    /// `POST /ext/api/v2/patients/clients`
    ClientCreate,
    /// `GET /ext/api/v2/patients/clients`
    ClientList,
    /// `GET /ext/api/v2/patients/clients/{client_id}`
    ClientGet,
    /// `GET /ext/api/v2/patients/clients/by_id/{external_client_id}`
    ClientGetByExternalId,
    /// `PUT /ext/api/v2/patients/clients/{client_id}` and `.../by_id/{external_client_id}`
    ClientUpdate,
    /// `GET /ext/api/v2/accounting/funders`
    FunderList,
    /// `GET /ext/api/v2/accounting/funders/{funder_id}`
    FunderGet,
    /// `GET /ext/api/v2/scheduler/service_codes`
    ServiceCodeList,
    /// `POST /ext/api/v2/scheduler/services`
    ServiceCreate,
    /// `GET /ext/api/v2/scheduler/services`
    ServiceList,
    /// `GET /ext/api/v2/scheduler/services/{alayacare_service_id}`
    ServiceGet,
    /// `GET /ext/api/v2/scheduler/services/by_id/{service_id}`
    ServiceGetByExternalId,
    /// `PUT /ext/api/v2/scheduler/services/{alayacare_service_id}` and `.../by_id/{service_id}`
    ServiceUpdate,
    /// `POST /ext/api/v2/scheduler/authorizations`
    AuthorizationCreate,
    /// `GET /ext/api/v2/scheduler/authorizations`
    AuthorizationList,
    /// `PUT /ext/api/v2/scheduler/authorizations/{authorization_id}`
    AuthorizationUpdate,
    /// `DELETE /ext/api/v2/scheduler/authorizations/{authorization_id}`
    AuthorizationDelete,
    /// `POST /api/v1/alayamarket/outbox/referrals/from_service/{service_id}`
    ReferralCreate,
    /// `POST /api/v1/alayamarket/outbox/referrals/from_service/{service_id}/update/{referral_id}`
    ReferralUpdate,
    /// `POST /api/v1/alayamarket/outbox/referrals/{referral_id}/cancel`
    ReferralCancel,
    /// `GET /api/v1/alayamarket/outbox/referrals`
    ReferralList,
    /// `GET /api/v1/alayamarket/outbox/referrals/{referral_id}`
    ReferralGet,
    /// `GET /api/v1/alayamarket/outbox/organizations/trusted_network`
    TrustedNetworkList,
    /// `POST /api/v1/alayamarket/outbox/referrals/{referral_id}/client_attachment`
    AttachmentUpload,
    /// `GET /ext/api/v2/files/client/{id}/{path}/`
    FileList,
    /// `GET /ext/api/v2/files/client/{id}/{path}`
    FileDownload,
}

impl Endpoint {
    /// All endpoints.
    pub const ALL: [Endpoint; 27] = [
        Endpoint::GroupList,
        Endpoint::ClientCreate,
        Endpoint::ClientList,
        Endpoint::ClientGet,
        Endpoint::ClientGetByExternalId,
        Endpoint::ClientUpdate,
        Endpoint::FunderList,
        Endpoint::FunderGet,
        Endpoint::ServiceCodeList,
        Endpoint::ServiceCreate,
        Endpoint::ServiceList,
        Endpoint::ServiceGet,
        Endpoint::ServiceGetByExternalId,
        Endpoint::ServiceUpdate,
        Endpoint::AuthorizationCreate,
        Endpoint::AuthorizationList,
        Endpoint::AuthorizationUpdate,
        Endpoint::AuthorizationDelete,
        Endpoint::ReferralCreate,
        Endpoint::ReferralUpdate,
        Endpoint::ReferralCancel,
        Endpoint::ReferralList,
        Endpoint::ReferralGet,
        Endpoint::TrustedNetworkList,
        Endpoint::AttachmentUpload,
        Endpoint::FileList,
        Endpoint::FileDownload,
    ];

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::GroupList => "group_list",
            Endpoint::ClientCreate => "client_create",
            Endpoint::ClientList => "client_list",
            Endpoint::ClientGet => "client_get",
            Endpoint::ClientGetByExternalId => "client_get_by_external_id",
            Endpoint::ClientUpdate => "client_update",
            Endpoint::FunderList => "funder_list",
            Endpoint::FunderGet => "funder_get",
            Endpoint::ServiceCodeList => "service_code_list",
            Endpoint::ServiceCreate => "service_create",
            Endpoint::ServiceList => "service_list",
            Endpoint::ServiceGet => "service_get",
            Endpoint::ServiceGetByExternalId => "service_get_by_external_id",
            Endpoint::ServiceUpdate => "service_update",
            Endpoint::AuthorizationCreate => "authorization_create",
            Endpoint::AuthorizationList => "authorization_list",
            Endpoint::AuthorizationUpdate => "authorization_update",
            Endpoint::AuthorizationDelete => "authorization_delete",
            Endpoint::ReferralCreate => "referral_create",
            Endpoint::ReferralUpdate => "referral_update",
            Endpoint::ReferralCancel => "referral_cancel",
            Endpoint::ReferralList => "referral_list",
            Endpoint::ReferralGet => "referral_get",
            Endpoint::TrustedNetworkList => "trusted_network_list",
            Endpoint::AttachmentUpload => "attachment_upload",
            Endpoint::FileList => "file_list",
            Endpoint::FileDownload => "file_download",
        }
    }

    /// The API family, which decides the error body shape.
    pub(crate) fn family(self) -> Family {
        use Endpoint::*;
        match self {
            AuthorizationCreate | AuthorizationList | AuthorizationUpdate | AuthorizationDelete => {
                Family::Authorizations
            }
            ReferralCreate | ReferralUpdate | ReferralCancel | ReferralList | ReferralGet
            | TrustedNetworkList | AttachmentUpload => Family::Outbox,
            _ => Family::Ext,
        }
    }

    /// Whether the operation changes state.
    pub(crate) fn is_write(self) -> bool {
        use Endpoint::*;
        matches!(
            self,
            ClientCreate
                | ClientUpdate
                | ServiceCreate
                | ServiceUpdate
                | AuthorizationCreate
                | AuthorizationUpdate
                | AuthorizationDelete
                | ReferralCreate
                | ReferralUpdate
                | ReferralCancel
                | AttachmentUpload
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// API families: each has its own error body shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// Clients, groups, services, service codes, funders, files:
    /// `{"code": <int>, "message": "..."}`.
    Ext,
    /// Authorizations: `{"code": "<string>", "message": "..."}`.
    Authorizations,
    /// ACCloud alayamarket outbox (connexion app): `application/problem+json`
    /// `{"type", "title", "status", "detail"}`.
    Outbox,
}

/// One fault applied to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Sleep `ms` before handling; the request then proceeds normally.
    Latency {
        /// Added delay.
        ms: u64,
    },
    /// Answer `status` (5xx) without doing anything: nothing is committed.
    ErrorBeforeCommit {
        /// HTTP status sent.
        status: u16,
    },
    /// Do the work (commit), then answer `status` (5xx) instead of the result.
    ErrorAfterCommit {
        /// HTTP status sent.
        status: u16,
    },
    /// Do the work (commit), then close the connection without answering.
    DropAfterCommit,
    /// Do the work (commit), then wait `ms` before answering (past the
    /// caller's timeout).
    HangAfterCommit {
        /// How long to wait before answering.
        ms: u64,
    },
    /// Answer 429 with `Retry-After: retry_after_secs`; nothing is committed.
    RateLimited {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Do the work; objects created by the request stay invisible to
    /// lookups and lists for `ms`.
    IndexingLag {
        /// How long the new object stays invisible.
        ms: u64,
    },
}

impl FaultKind {
    /// Whether a request given this fault commits its effect.
    pub fn commits(self) -> bool {
        !matches!(
            self,
            FaultKind::ErrorBeforeCommit { .. } | FaultKind::RateLimited { .. }
        )
    }
}

/// Probabilities (0..=1) of each fault for one endpoint, plus the
/// parameters of the faults drawn. The outcome faults (everything except
/// latency) are mutually exclusive: their probabilities must add up to at
/// most 1. Latency is drawn independently and combines with any of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultProbabilities {
    /// Probability of added latency.
    pub latency: f64,
    /// Minimum added latency.
    pub latency_min_ms: u64,
    /// Maximum added latency.
    pub latency_max_ms: u64,
    /// Probability of a 5xx before committing.
    pub error_before_commit: f64,
    /// Probability of a 5xx after committing.
    pub error_after_commit: f64,
    /// Status used for both 5xx faults.
    pub error_status: u16,
    /// Probability of committing then dropping the connection.
    pub drop_after_commit: f64,
    /// Probability of committing then hanging.
    pub hang_after_commit: f64,
    /// How long a hang lasts.
    pub hang_ms: u64,
    /// Probability of a 429.
    pub rate_limited: f64,
    /// `Retry-After` of a 429, in seconds.
    pub retry_after_secs: u64,
    /// Probability that a created object is not visible to lookups at once.
    pub indexing_lag: f64,
    /// How long such an object stays invisible.
    pub indexing_lag_ms: u64,
}

impl Default for FaultProbabilities {
    fn default() -> Self {
        Self {
            latency: 0.0,
            latency_min_ms: 10,
            latency_max_ms: 100,
            error_before_commit: 0.0,
            error_after_commit: 0.0,
            error_status: 503,
            drop_after_commit: 0.0,
            hang_after_commit: 0.0,
            hang_ms: 30_000,
            rate_limited: 0.0,
            retry_after_secs: 1,
            indexing_lag: 0.0,
            indexing_lag_ms: 500,
        }
    }
}

impl FaultProbabilities {
    fn validate(&self, what: &str) -> Result<(), ConfigError> {
        let outcome = [
            self.error_before_commit,
            self.error_after_commit,
            self.drop_after_commit,
            self.hang_after_commit,
            self.rate_limited,
            self.indexing_lag,
        ];
        for p in outcome.iter().chain(std::iter::once(&self.latency)) {
            if !(0.0..=1.0).contains(p) {
                return Err(ConfigError::InvalidFaults(format!(
                    "{what}: probabilities must be within 0..=1"
                )));
            }
        }
        if outcome.iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err(ConfigError::InvalidFaults(format!(
                "{what}: outcome fault probabilities add up to more than 1"
            )));
        }
        if self.latency_min_ms > self.latency_max_ms {
            return Err(ConfigError::InvalidFaults(format!(
                "{what}: latency_min_ms > latency_max_ms"
            )));
        }
        if !(500..=599).contains(&self.error_status) {
            return Err(ConfigError::InvalidFaults(format!(
                "{what}: error_status must be a 5xx status"
            )));
        }
        Ok(())
    }

    fn is_quiet(&self) -> bool {
        self.latency == 0.0
            && self.error_before_commit == 0.0
            && self.error_after_commit == 0.0
            && self.drop_after_commit == 0.0
            && self.hang_after_commit == 0.0
            && self.rate_limited == 0.0
            && self.indexing_lag == 0.0
    }
}

/// "The next `count` calls to `endpoint` (any endpoint when `None`) get `fault`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    /// Endpoint the fault applies to; `None` = any endpoint.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// The fault.
    pub fault: FaultKind,
    /// How many calls still get it.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl ScriptedFault {
    /// The next `count` calls to `endpoint` get `fault`.
    pub fn new(endpoint: Endpoint, fault: FaultKind, count: u32) -> Self {
        Self {
            endpoint: Some(endpoint),
            fault,
            count,
        }
    }
}

/// The complete fault configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Probabilities for endpoints without their own entry.
    pub default: FaultProbabilities,
    /// Per-endpoint probabilities (replace `default` for that endpoint).
    pub endpoints: BTreeMap<Endpoint, FaultProbabilities>,
    /// Scripted faults, consumed in order; they take precedence over the
    /// probabilities.
    pub scripted: Vec<ScriptedFault>,
}

impl FaultConfig {
    /// No faults at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Checks probabilities and parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default.validate("default")?;
        for (e, p) in &self.endpoints {
            p.validate(e.as_str())?;
        }
        Ok(())
    }
}

/// What the engine decided for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Added latency, if any.
    pub latency_ms: Option<u64>,
    /// Outcome fault, if any.
    pub fault: Option<FaultKind>,
}

/// Holds the configuration and the seeded generator.
pub(crate) struct FaultEngine {
    config: FaultConfig,
    rng: StdRng,
    quiet: bool,
}

impl FaultEngine {
    pub(crate) fn new(config: FaultConfig, seed: u64) -> Self {
        let quiet = Self::compute_quiet(&config);
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            quiet,
        }
    }

    fn compute_quiet(config: &FaultConfig) -> bool {
        config.scripted.is_empty()
            && config.default.is_quiet()
            && config.endpoints.values().all(FaultProbabilities::is_quiet)
    }

    pub(crate) fn config(&self) -> &FaultConfig {
        &self.config
    }

    pub(crate) fn set(&mut self, config: FaultConfig) {
        self.quiet = Self::compute_quiet(&config);
        self.config = config;
    }

    pub(crate) fn push_scripted(&mut self, fault: ScriptedFault) {
        if fault.count > 0 {
            self.config.scripted.push(fault);
        }
        self.quiet = Self::compute_quiet(&self.config);
    }

    pub(crate) fn decide(&mut self, endpoint: Endpoint) -> Decision {
        if self.quiet {
            return Decision::default();
        }
        if let Some(pos) = self
            .config
            .scripted
            .iter()
            .position(|s| s.count > 0 && s.endpoint.is_none_or(|e| e == endpoint))
        {
            let fault = self.config.scripted[pos].fault;
            self.config.scripted[pos].count -= 1;
            if self.config.scripted[pos].count == 0 {
                self.config.scripted.remove(pos);
                self.quiet = Self::compute_quiet(&self.config);
            }
            return match fault {
                FaultKind::Latency { ms } => Decision {
                    latency_ms: Some(ms),
                    fault: None,
                },
                other => Decision {
                    latency_ms: None,
                    fault: Some(other),
                },
            };
        }
        let p = self
            .config
            .endpoints
            .get(&endpoint)
            .unwrap_or(&self.config.default)
            .clone();
        let mut decision = Decision::default();
        if p.latency > 0.0 && self.rng.random::<f64>() < p.latency {
            decision.latency_ms = Some(self.rng.random_range(p.latency_min_ms..=p.latency_max_ms));
        }
        let roll: f64 = self.rng.random();
        let table = [
            (
                p.error_before_commit,
                FaultKind::ErrorBeforeCommit {
                    status: p.error_status,
                },
            ),
            (
                p.rate_limited,
                FaultKind::RateLimited {
                    retry_after_secs: p.retry_after_secs,
                },
            ),
            (
                p.error_after_commit,
                FaultKind::ErrorAfterCommit {
                    status: p.error_status,
                },
            ),
            (p.drop_after_commit, FaultKind::DropAfterCommit),
            (
                p.hang_after_commit,
                FaultKind::HangAfterCommit { ms: p.hang_ms },
            ),
            (
                p.indexing_lag,
                FaultKind::IndexingLag {
                    ms: p.indexing_lag_ms,
                },
            ),
        ];
        let mut acc = 0.0;
        for (prob, kind) in table {
            acc += prob;
            if prob > 0.0 && roll < acc {
                decision.fault = Some(kind);
                break;
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_fault_applies_to_exactly_the_next_n_matching_calls() {
        let mut engine = FaultEngine::new(FaultConfig::none(), 1);
        engine.push_scripted(ScriptedFault::new(
            Endpoint::ClientCreate,
            FaultKind::DropAfterCommit,
            2,
        ));
        assert_eq!(engine.decide(Endpoint::ClientGet).fault, None);
        assert_eq!(
            engine.decide(Endpoint::ClientCreate).fault,
            Some(FaultKind::DropAfterCommit)
        );
        assert_eq!(
            engine.decide(Endpoint::ClientCreate).fault,
            Some(FaultKind::DropAfterCommit)
        );
        assert_eq!(engine.decide(Endpoint::ClientCreate).fault, None);
    }

    #[test]
    fn same_seed_gives_same_fault_sequence() {
        let config = FaultConfig {
            default: FaultProbabilities {
                error_before_commit: 0.3,
                drop_after_commit: 0.3,
                latency: 0.5,
                ..FaultProbabilities::default()
            },
            ..FaultConfig::default()
        };
        let run = |seed| {
            let mut e = FaultEngine::new(config.clone(), seed);
            (0..200)
                .map(|_| e.decide(Endpoint::ServiceCreate))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let drawn = run(7).iter().filter(|d| d.fault.is_some()).count();
        assert!((80..160).contains(&drawn), "drawn {drawn} of 200 at p=0.6");
    }

    #[test]
    fn probabilities_adding_up_past_one_are_rejected() {
        let config = FaultConfig {
            default: FaultProbabilities {
                error_before_commit: 0.6,
                error_after_commit: 0.6,
                ..FaultProbabilities::default()
            },
            ..FaultConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
