//! Simulator configuration: credentials, seed data, rule switches and the
//! initial fault configuration. Everything has a default, so
//! `SimConfig::default()` gives a simulator matching the CSI integration
//! guide's examples.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::faults::FaultConfig;

/// The whole simulator configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Basic-auth credentials for the ACCloud API and for `/_sim/`.
    pub credentials: Credentials,
    /// Optional JSON or TOML seed file (by extension; anything else is
    /// read as JSON). When set it replaces `seed`.
    pub seed_file: Option<PathBuf>,
    /// Seed data used when `seed_file` is not set.
    pub seed: SeedData,
    /// Fault injection in force at start (and after a reset).
    pub faults: FaultConfig,
    /// Seed of the random generator that draws faults.
    pub rng_seed: u64,
    /// Lag, in milliseconds, before any newly created object becomes
    /// visible to lookups and lists (0 = immediately). The
    /// `indexing_lag` fault adds a per-request lag on top of this.
    pub indexing_lag_ms: u64,
    /// Pins the simulator's "today" (used by the authorization rule
    /// "`start_at` not more than one year in the past"). Default: the
    /// current date in the HQ branch's time zone.
    pub today: Option<NaiveDate>,
    /// Switches for the behaviours the documentation leaves open.
    pub rules: SimRules,
    /// How many request journal entries are kept (oldest dropped first).
    pub journal_capacity: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            credentials: Credentials::default(),
            seed_file: None,
            seed: SeedData::default(),
            faults: FaultConfig::default(),
            rng_seed: 0x5EED,
            indexing_lag_ms: 0,
            today: None,
            rules: SimRules::default(),
            journal_capacity: 100_000,
        }
    }
}

impl SimConfig {
    /// The seed data in force: the file when `seed_file` is set, else `seed`.
    pub fn resolve_seed(&self) -> Result<SeedData, ConfigError> {
        match &self.seed_file {
            Some(path) => SeedData::from_file(path),
            None => Ok(self.seed.clone()),
        }
    }
}

/// Credentials. The API accepts any of `api`; `/_sim/` accepts only `control`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Credentials {
    /// API keys accepted on every ACCloud route (HTTP Basic `key:secret`).
    pub api: Vec<ApiCredential>,
    /// The credential of the control API under `/_sim/`.
    pub control: BasicCredential,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            api: vec![ApiCredential {
                key: "sim-api-key".to_owned(),
                secret: "sim-api-secret".to_owned(),
                read_only: false,
            }],
            control: BasicCredential {
                username: "sim-admin".to_owned(),
                password: "sim-admin-secret".to_owned(),
            },
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api", &self.api)
            .field("control", &self.control)
            .finish()
    }
}

/// One "External API" key of the tenant.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiCredential {
    /// The API key (Basic user name).
    pub key: String,
    /// The API secret (Basic password).
    pub secret: String,
    /// A read-only key gets 403 on writes to the authorization and outbox
    /// APIs (the documented "You do not have permission" case).
    #[serde(default)]
    pub read_only: bool,
}

impl fmt::Debug for ApiCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredential")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A user name and password for HTTP Basic auth.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    /// Basic user name.
    pub username: String,
    /// Basic password.
    pub password: String,
}

impl fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Switches for behaviour the documentation leaves open ([INF] in the notes).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimRules {
    /// `POST services` with an external `service_id` already in use answers
    /// 409 (default). When false the duplicate is created, as a tenant
    /// that does not enforce uniqueness would, and shows in the duplicates
    /// report.
    pub reject_duplicate_service_id: bool,
    /// Reject an authorization that overlaps another one with the same
    /// payor and a different but intersecting service combination (409,
    /// from the older internal API). Default off: the external API
    /// documents no 409.
    pub reject_overlapping_authorizations: bool,
    /// DELETE of an authorization referenced by the latest revision of a
    /// live referral answers 403 "Authorization can not be deleted.".
    /// Default off.
    pub forbid_deleting_referenced_authorizations: bool,
    /// The tenant's authorizations feature flag. When false every
    /// authorization call answers the documented 403.
    pub authorizations_feature_flag: bool,
}

impl Default for SimRules {
    fn default() -> Self {
        Self {
            reject_duplicate_service_id: true,
            reject_overlapping_authorizations: false,
            forbid_deleting_referenced_authorizations: false,
            authorizations_feature_flag: true,
        }
    }
}

/// Reference data the tenant starts with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SeedData {
    /// Branches; the first one is the HQ branch (the API user's branch).
    pub branches: Vec<SeedBranch>,
    /// Client groups.
    pub groups: Vec<SeedGroup>,
    /// Funders (payors).
    pub funders: Vec<SeedFunder>,
    /// Service codes.
    pub service_codes: Vec<SeedServiceCode>,
    /// Bill code ids known to the tenant (for `payor_bill_code` authorizations).
    pub bill_code_ids: Vec<i64>,
    /// The demand organization's trusted suppliers.
    pub trusted_network: Vec<SeedSupplier>,
    /// Clients present at start. Unlike the API, the seed may hold several
    /// clients with the same `external_id` (to reproduce the documented
    /// 409 "Multiple clients found").
    pub clients: Vec<SeedClient>,
    /// First ids handed out by the API, per kind.
    pub first_ids: FirstIds,
    /// Name of the folder under `client/{id}/` where outbox client
    /// attachments are saved.
    pub attachments_folder: String,
}

impl Default for SeedData {
    fn default() -> Self {
        let hq = 1000;
        Self {
            branches: vec![SeedBranch {
                id: hq,
                name: "HQ".to_owned(),
                timezone: "America/Chicago".to_owned(),
            }],
            groups: vec![
                SeedGroup {
                    id: 1008,
                    name: "CSI".to_owned(),
                    description: "Clients coordinated by the CSI HQ branch".to_owned(),
                    is_disabled: false,
                    branch_id: hq,
                },
                SeedGroup {
                    id: 1009,
                    name: "INTAKE".to_owned(),
                    description: "Intake".to_owned(),
                    is_disabled: false,
                    branch_id: hq,
                },
            ],
            funders: vec![
                SeedFunder::new(9, "Medicare", "MCR", Some("medicare")),
                SeedFunder::new(10, "Illinois Medicaid", "IL-MCD", Some("il-medicaid")),
                SeedFunder::new(11, "Blue Cross Blue Shield", "BCBS", None),
                SeedFunder {
                    allowed_rule_types: Some(vec!["VISITS".to_owned()]),
                    ..SeedFunder::new(12, "Visits Only Payor", "VOP", None)
                },
            ],
            service_codes: vec![
                SeedServiceCode {
                    id: 48,
                    name: "Skilled Nursing".to_owned(),
                    branch_id: hq,
                },
                SeedServiceCode {
                    id: 49,
                    name: "Home Health Aide".to_owned(),
                    branch_id: hq,
                },
                SeedServiceCode {
                    id: 50,
                    name: "Physical Therapy".to_owned(),
                    branch_id: hq,
                },
            ],
            bill_code_ids: vec![15, 21],
            trusted_network: vec![
                SeedSupplier {
                    id: Uuid::from_u128(0x91c7_9089_a3ca_4cca_acf4_52fc_1f13_02c6),
                    name: "Gem City Home Care".to_owned(),
                },
                SeedSupplier {
                    id: Uuid::from_u128(0x2b8e_4f3a_6c1d_4e5f_9a0b_1c2d_3e4f_5a6b),
                    name: "Lakeside Home Health".to_owned(),
                },
            ],
            clients: Vec::new(),
            first_ids: FirstIds::default(),
            attachments_folder: "Marketplace Documents".to_owned(),
        }
    }
}

impl SeedData {
    /// Reads seed data from a JSON or TOML file (chosen by extension).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadSeed {
            path: path.to_owned(),
            source,
        })?;
        let is_toml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        if is_toml {
            toml::from_str(&text).map_err(|e| ConfigError::ParseSeed {
                path: path.to_owned(),
                message: e.to_string(),
            })
        } else {
            serde_json::from_str(&text).map_err(|e| ConfigError::ParseSeed {
                path: path.to_owned(),
                message: e.to_string(),
            })
        }
    }

    /// Checks the cross references (branch ids, time zones, non-empty).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(hq) = self.branches.first() else {
            return Err(ConfigError::InvalidSeed(
                "at least one branch is required".into(),
            ));
        };
        let _ = hq;
        let branch_ids: Vec<i64> = self.branches.iter().map(|b| b.id).collect();
        for b in &self.branches {
            if b.timezone.parse::<chrono_tz::Tz>().is_err() {
                return Err(ConfigError::InvalidSeed(format!(
                    "branch {} has an unknown time zone {:?}",
                    b.id, b.timezone
                )));
            }
        }
        let check_branch = |what: &str, id: i64, branch: i64| {
            if branch_ids.contains(&branch) {
                Ok(())
            } else {
                Err(ConfigError::InvalidSeed(format!(
                    "{what} {id} refers to unknown branch {branch}"
                )))
            }
        };
        for g in &self.groups {
            check_branch("group", g.id, g.branch_id)?;
        }
        for f in &self.funders {
            check_branch("funder", f.id, f.branch_id)?;
        }
        for s in &self.service_codes {
            check_branch("service code", s.id, s.branch_id)?;
        }
        for c in &self.clients {
            check_branch("client", c.id, c.branch_id.unwrap_or(hq.id))?;
        }
        if self.attachments_folder.is_empty() || self.attachments_folder.contains('/') {
            return Err(ConfigError::InvalidSeed(
                "attachments_folder must be a single non-empty folder name".into(),
            ));
        }
        Ok(())
    }
}

/// A branch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedBranch {
    /// Branch id.
    pub id: i64,
    /// Branch name.
    pub name: String,
    /// IANA time zone of the branch (clients without one inherit it).
    pub timezone: String,
}

/// A client group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// Group id.
    pub id: i64,
    /// Group name (the CSI group is named `CSI`).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Disabled groups are still listed.
    #[serde(default)]
    pub is_disabled: bool,
    /// Branch of the group.
    pub branch_id: i64,
}

/// A funder (payor).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedFunder {
    /// Funder id.
    pub id: i64,
    /// External funder id.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Name.
    pub name: String,
    /// Code.
    pub code: String,
    /// `type` in the API (`funder_individual`, `client_individual`, ...).
    #[serde(default = "default_funder_type")]
    pub funder_type: String,
    /// `enabled` or `disabled`.
    #[serde(default = "default_enabled")]
    pub status: String,
    /// Organization name.
    #[serde(default)]
    pub organization: String,
    /// Organization code.
    #[serde(default)]
    pub organization_code: String,
    /// Invoicing model (list filter `invoicing_model`).
    #[serde(default = "default_invoicing_model")]
    pub invoicing_model: String,
    /// Branch.
    #[serde(default = "default_branch")]
    pub branch_id: i64,
    /// Authorization rule types this payor allows (`None` = any). Used for
    /// the documented 400 "Rule Type HOURS is not possible for Payor 12.".
    #[serde(default)]
    pub allowed_rule_types: Option<Vec<String>>,
}

impl SeedFunder {
    fn new(id: i64, name: &str, code: &str, external_id: Option<&str>) -> Self {
        Self {
            id,
            external_id: external_id.map(str::to_owned),
            name: name.to_owned(),
            code: code.to_owned(),
            funder_type: default_funder_type(),
            status: default_enabled(),
            organization: name.to_owned(),
            organization_code: code.to_owned(),
            invoicing_model: default_invoicing_model(),
            branch_id: default_branch(),
            allowed_rule_types: None,
        }
    }
}

fn default_funder_type() -> String {
    "funder_batched".to_owned()
}
fn default_enabled() -> String {
    "enabled".to_owned()
}
fn default_invoicing_model() -> String {
    "batched".to_owned()
}
fn default_branch() -> i64 {
    1000
}

/// A service code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedServiceCode {
    /// Service code id.
    pub id: i64,
    /// Service code name.
    pub name: String,
    /// Branch.
    #[serde(default = "default_branch")]
    pub branch_id: i64,
}

/// A trusted supplier (supply organization persona).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedSupplier {
    /// Supply persona id.
    pub id: Uuid,
    /// Name.
    pub name: String,
}

/// A client present at start.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedClient {
    /// Internal client id.
    pub id: i64,
    /// External id (may repeat across seed clients).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Demographics (`first_name` and `last_name` at least).
    #[serde(default)]
    pub demographics: serde_json::Map<String, serde_json::Value>,
    /// Branch (default: HQ).
    #[serde(default)]
    pub branch_id: Option<i64>,
    /// Group ids.
    #[serde(default)]
    pub groups: Vec<i64>,
    /// IANA time zone (default: the branch's).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Status (default `active`).
    #[serde(default)]
    pub status: Option<String>,
}

/// First ids handed out by the API. The defaults make the guide's example
/// ids line up: client 1060, service 21, authorization 8.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FirstIds {
    /// First client id.
    pub client: i64,
    /// First service id.
    pub service: i64,
    /// First authorization id.
    pub authorization: i64,
}

impl Default for FirstIds {
    fn default() -> Self {
        Self {
            client: 1060,
            service: 21,
            authorization: 8,
        }
    }
}

/// Errors raised while loading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The seed file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    ReadSeed {
        /// File path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The seed file is not valid JSON/TOML for [`SeedData`].
    #[error("cannot parse seed file {path}: {message}")]
    ParseSeed {
        /// File path.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// The seed data is inconsistent.
    #[error("invalid seed data: {0}")]
    InvalidSeed(String),
    /// The fault configuration is inconsistent.
    #[error("invalid fault configuration: {0}")]
    InvalidFaults(String),
}
