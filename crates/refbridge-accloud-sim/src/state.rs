//! The in-memory tenant: records, indexes and the duplicates report.
//!
//! Lookups by id and by natural key go through hash or ordered maps; lists
//! scan the (ordered) maps. Objects carry a `visible_at` instant for the
//! indexing-lag fault: read endpoints skip objects not yet visible, writes
//! see everything.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::{SeedData, SeedFunder, SeedGroup, SeedServiceCode};

/// A client (patient) record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClientRecord {
    /// Internal id.
    pub id: i64,
    /// Display id (`AC000001060`).
    pub ac_id: String,
    /// External id.
    pub external_id: Option<String>,
    /// Profile id.
    pub profile_id: i64,
    /// Branch.
    pub branch_id: i64,
    /// Status (`pending` for new clients).
    pub status: String,
    /// Demographics as sent.
    pub demographics: Map<String, Value>,
    /// Language code.
    pub language: Option<String>,
    /// Group ids.
    pub groups: Vec<i64>,
    /// IANA time zone as set (`None` = branch time zone).
    pub timezone: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Not yet visible to lookups until then.
    #[serde(skip)]
    pub visible_at: Option<Instant>,
}

/// One `guid_funder_breakdowns` entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FunderBreakdown {
    /// Funder id.
    pub funder_id: i64,
    /// 1 when primary.
    pub is_primary: i64,
    /// Percentage.
    pub percentage: i64,
}

/// A service record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceRecord {
    /// Internal (AlayaCare) service id.
    pub id: i64,
    /// External service id.
    pub service_id: Option<String>,
    /// Name.
    pub name: String,
    /// Internal client id.
    pub client_id: i64,
    /// Service code.
    pub service_code_id: i64,
    /// Funding methodology.
    pub funding_methodology: String,
    /// Funder breakdowns.
    pub funders: Vec<FunderBreakdown>,
    /// Informative start date.
    pub start_date: Option<String>,
    /// Informative end date.
    pub projected_end_date: Option<String>,
    /// Instructions.
    pub service_instructions: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Use the client's address.
    pub use_client_address: Option<bool>,
    /// Profile attributes.
    pub profile: Map<String, Value>,
    /// Provider details.
    pub provider_details: Map<String, Value>,
    /// Status (`active` for new services).
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Not yet visible to lookups until then.
    #[serde(skip)]
    pub visible_at: Option<Instant>,
}

/// The `rule_*` limits of an authorization.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AuthorizationRules {
    /// `rule_daily`.
    pub daily: Option<f64>,
    /// `rule_weekly`.
    pub weekly: Option<f64>,
    /// `rule_monthly`.
    pub monthly: Option<f64>,
    /// `rule_period`.
    pub period: Option<f64>,
    /// `rule_monday` .. `rule_sunday`, Monday first.
    pub days: [Option<f64>; 7],
    /// `rule_custom`.
    pub custom: Option<f64>,
    /// `custom_number_of_days`.
    pub custom_number_of_days: Option<i64>,
}

/// An authorization record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuthorizationRecord {
    /// Internal id.
    pub id: i64,
    /// Internal client id.
    pub client_id: i64,
    /// Internal service ids.
    pub service_ids: Vec<i64>,
    /// Bill code ids.
    pub billcode_ids: Vec<i64>,
    /// Start date.
    pub start_at: NaiveDate,
    /// End date.
    pub end_at: Option<NaiveDate>,
    /// Methodology.
    pub methodology: String,
    /// `HOURS` or `VISITS`.
    pub rule_type: String,
    /// Limits.
    pub rules: AuthorizationRules,
    /// 0 = Monday .. 6 = Sunday.
    pub first_day_of_week: i64,
    /// Free identifying strings and HQ-only fields.
    pub authorization_number: Option<String>,
    /// Member number.
    pub member_number: Option<String>,
    /// Program id.
    pub program_id: Option<String>,
    /// Case manager name.
    pub case_manager_name: Option<String>,
    /// Case manager phone.
    pub case_manager_phone: Option<String>,
    /// Case manager fax.
    pub case_manager_fax: Option<String>,
    /// Case manager email.
    pub case_manager_email: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Payor id.
    pub payor_id: Option<i64>,
    /// `FUNDER` or `CONTACT`.
    pub payor_id_type: Option<String>,
    /// Include non-visit items.
    pub include_non_visit_items: Option<bool>,
    /// `NEW`, `PENDING` or `PROCESSED`.
    pub authorization_status: String,
    /// Deactivated by DELETE.
    pub deleted: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Not yet visible to lookups until then.
    #[serde(skip)]
    pub visible_at: Option<Instant>,
}

/// One revision of an outbox referral.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReferralRecord {
    /// Referral id (new for each revision).
    pub id: Uuid,
    /// Sequence (client, service, supplier).
    pub sequence_id: Uuid,
    /// Revision group (shared by all revisions).
    pub revision_group_id: Uuid,
    /// Revision number, from 1.
    pub revision_number: u32,
    /// Whether this is the latest revision of its group.
    pub is_latest_revision: bool,
    /// Revision reasons (updates only).
    pub revision_reasons: Option<Vec<String>>,
    /// Revision comment (updates only).
    pub revision_comment: Option<String>,
    /// Internal service id.
    pub service_id: i64,
    /// Internal client id.
    pub client_id: i64,
    /// Supplier.
    pub supply_persona_id: Uuid,
    /// `psw` or `nursing`.
    pub care_type: String,
    /// `visit` or `service`.
    pub referral_type: String,
    /// `assigned`, `processed` or `cancelled`.
    pub status: String,
    /// Start, as an instant.
    pub start_at: DateTime<Utc>,
    /// End, as an instant.
    pub end_at: DateTime<Utc>,
    /// Comment.
    pub comment: Option<String>,
    /// Case manager sent to the agency.
    pub case_manager: Option<Value>,
    /// Authorization ids.
    pub authorization_ids: Vec<i64>,
    /// Cancellation reason.
    pub reason_code: Option<String>,
    /// Cancellation comment.
    pub cancellation_comment: Option<String>,
    /// Snapshot of the client, service and authorizations as aggregated
    /// when the revision was made (`client`, `service`, `alayacare`).
    pub snapshot: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: Option<DateTime<Utc>>,
    /// Not yet visible to lookups until then.
    #[serde(skip)]
    pub visible_at: Option<Instant>,
}

impl ReferralRecord {
    /// `updated_at`, else `created_at` (the `last_modified` sort key).
    pub fn last_modified(&self) -> DateTime<Utc> {
        self.updated_at.unwrap_or(self.created_at)
    }
}

/// One client attachment upload (the bytes live in the files tree).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AttachmentRecord {
    /// Upload number, from 1.
    pub id: u64,
    /// Referral the upload was posted to.
    pub referral_id: Uuid,
    /// Its revision group.
    pub revision_group_id: Uuid,
    /// Its sequence.
    pub sequence_id: Uuid,
    /// Internal client id.
    pub client_id: i64,
    /// File name sent in the multipart part.
    pub filename: String,
    /// Where it was saved (`client/{id}/<folder>/<name>`), the `filepath` answered.
    pub filepath: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Upload time.
    pub uploaded_at: DateTime<Utc>,
}

/// A file in a client's attachments tree.
#[derive(Clone, Debug)]
pub(crate) struct StoredFile {
    pub bytes: Bytes,
    pub last_modified: DateTime<Utc>,
    pub visible_at: Option<Instant>,
}

/// A snapshot of the whole tenant, as served by `GET /_sim/state`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StateSnapshot {
    /// Clients by id.
    pub clients: Vec<ClientRecord>,
    /// Services by id.
    pub services: Vec<ServiceRecord>,
    /// Authorizations by id (deleted ones included, flagged).
    pub authorizations: Vec<AuthorizationRecord>,
    /// All referral revisions, in creation order.
    pub referrals: Vec<ReferralRecord>,
    /// All attachment uploads, in order.
    pub attachments: Vec<AttachmentRecord>,
}

/// One natural key held by more than one object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DuplicateEntry {
    /// The natural key, rendered as text.
    pub key: String,
    /// How many objects share it.
    pub count: usize,
    /// Their ids.
    pub ids: Vec<String>,
}

/// Natural keys held by more than one object. A correct bridge keeps every
/// list empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DuplicatesReport {
    /// Clients per `external_id`.
    pub clients: Vec<DuplicateEntry>,
    /// Services per external `service_id`.
    pub services: Vec<DuplicateEntry>,
    /// Live authorizations per (client, services, dates, methodology,
    /// number, rule type and limits).
    pub authorizations: Vec<DuplicateEntry>,
    /// Live revision groups (latest revision not cancelled) per (service,
    /// supplier).
    pub referral_sequences: Vec<DuplicateEntry>,
    /// Attachment uploads per (revision group, content SHA-256).
    pub attachments: Vec<DuplicateEntry>,
}

impl DuplicatesReport {
    /// True when no natural key is held twice.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
            && self.services.is_empty()
            && self.authorizations.is_empty()
            && self.referral_sequences.is_empty()
            && self.attachments.is_empty()
    }
}

pub(crate) fn is_visible(visible_at: Option<Instant>, now: Instant) -> bool {
    visible_at.is_none_or(|t| t <= now)
}

/// The tenant.
pub(crate) struct Store {
    pub seed: SeedData,
    pub groups: Vec<SeedGroup>,
    pub funders: BTreeMap<i64, SeedFunder>,
    pub service_codes: BTreeMap<i64, SeedServiceCode>,
    pub clients: BTreeMap<i64, ClientRecord>,
    pub clients_by_ext: HashMap<String, Vec<i64>>,
    pub services: BTreeMap<i64, ServiceRecord>,
    pub services_by_ext: HashMap<String, Vec<i64>>,
    pub authorizations: BTreeMap<i64, AuthorizationRecord>,
    pub authorizations_by_client: HashMap<i64, Vec<i64>>,
    pub referrals: HashMap<Uuid, ReferralRecord>,
    pub referral_order: Vec<Uuid>,
    pub revision_groups: HashMap<Uuid, Vec<Uuid>>,
    pub sequences: HashMap<(i64, i64, Uuid), Uuid>,
    pub marketplace_ids: HashMap<(char, i64), Uuid>,
    pub attachments: Vec<AttachmentRecord>,
    pub files: HashMap<i64, BTreeMap<String, StoredFile>>,
    pub next_client: i64,
    pub next_service: i64,
    pub next_authorization: i64,
    rng: StdRng,
}

impl Store {
    pub(crate) fn new(seed: SeedData, rng_seed: u64) -> Self {
        let mut store = Self {
            groups: seed.groups.clone(),
            funders: seed.funders.iter().map(|f| (f.id, f.clone())).collect(),
            service_codes: seed
                .service_codes
                .iter()
                .map(|s| (s.id, s.clone()))
                .collect(),
            clients: BTreeMap::new(),
            clients_by_ext: HashMap::new(),
            services: BTreeMap::new(),
            services_by_ext: HashMap::new(),
            authorizations: BTreeMap::new(),
            authorizations_by_client: HashMap::new(),
            referrals: HashMap::new(),
            referral_order: Vec::new(),
            revision_groups: HashMap::new(),
            sequences: HashMap::new(),
            marketplace_ids: HashMap::new(),
            attachments: Vec::new(),
            files: HashMap::new(),
            next_client: seed.first_ids.client,
            next_service: seed.first_ids.service,
            next_authorization: seed.first_ids.authorization,
            rng: StdRng::seed_from_u64(rng_seed ^ 0xA11A_CA4E),
            seed,
        };
        let hq = store.hq_branch_id();
        for c in store.seed.clients.clone() {
            let record = ClientRecord {
                id: c.id,
                ac_id: format!("AC{:09}", c.id),
                external_id: c.external_id.clone(),
                profile_id: c.id + 6000,
                branch_id: c.branch_id.unwrap_or(hq),
                status: c.status.clone().unwrap_or_else(|| "active".to_owned()),
                demographics: c.demographics.clone(),
                language: None,
                groups: c.groups.clone(),
                timezone: c.timezone.clone(),
                created_at: Utc::now(),
                visible_at: None,
            };
            store.insert_client(record);
            store.next_client = store.next_client.max(c.id + 1);
        }
        store
    }

    pub(crate) fn hq_branch_id(&self) -> i64 {
        self.seed.branches.first().map_or(1000, |b| b.id)
    }

    pub(crate) fn branch_name(&self, id: i64) -> String {
        self.seed
            .branches
            .iter()
            .find(|b| b.id == id)
            .map_or_else(String::new, |b| b.name.clone())
    }

    pub(crate) fn branch_exists(&self, id: i64) -> bool {
        self.seed.branches.iter().any(|b| b.id == id)
    }

    pub(crate) fn branch_timezone(&self, id: i64) -> chrono_tz::Tz {
        self.seed
            .branches
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.timezone.parse().ok())
            .unwrap_or(chrono_tz::America::Chicago)
    }

    /// The client's time zone, else its branch's.
    pub(crate) fn client_timezone(&self, client: &ClientRecord) -> chrono_tz::Tz {
        client
            .timezone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| self.branch_timezone(client.branch_id))
    }

    pub(crate) fn new_uuid(&mut self) -> Uuid {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// Marketplace's own UUID for an ACCloud client (`'c'`) or service (`'s'`).
    pub(crate) fn marketplace_id(&mut self, kind: char, id: i64) -> Uuid {
        if let Some(u) = self.marketplace_ids.get(&(kind, id)) {
            return *u;
        }
        let u = self.new_uuid();
        self.marketplace_ids.insert((kind, id), u);
        u
    }

    pub(crate) fn insert_client(&mut self, client: ClientRecord) {
        if let Some(ext) = &client.external_id {
            self.clients_by_ext
                .entry(ext.clone())
                .or_default()
                .push(client.id);
        }
        self.clients.insert(client.id, client);
    }

    pub(crate) fn set_client_external_id(&mut self, id: i64, new: Option<String>) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut client.external_id, new.clone());
        if let Some(old) = old {
            if let Some(ids) = self.clients_by_ext.get_mut(&old) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.clients_by_ext.remove(&old);
                }
            }
        }
        if let Some(new) = new {
            self.clients_by_ext.entry(new).or_default().push(id);
        }
    }

    pub(crate) fn insert_service(&mut self, service: ServiceRecord) {
        if let Some(ext) = &service.service_id {
            self.services_by_ext
                .entry(ext.clone())
                .or_default()
                .push(service.id);
        }
        self.services.insert(service.id, service);
    }

    pub(crate) fn set_service_external_id(&mut self, id: i64, new: Option<String>) {
        let Some(service) = self.services.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut service.service_id, new.clone());
        if let Some(old) = old {
            if let Some(ids) = self.services_by_ext.get_mut(&old) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.services_by_ext.remove(&old);
                }
            }
        }
        if let Some(new) = new {
            self.services_by_ext.entry(new).or_default().push(id);
        }
    }

    pub(crate) fn insert_authorization(&mut self, auth: AuthorizationRecord) {
        self.authorizations_by_client
            .entry(auth.client_id)
            .or_default()
            .push(auth.id);
        self.authorizations.insert(auth.id, auth);
    }

    pub(crate) fn insert_referral(&mut self, referral: ReferralRecord) {
        self.revision_groups
            .entry(referral.revision_group_id)
            .or_default()
            .push(referral.id);
        self.referral_order.push(referral.id);
        self.referrals.insert(referral.id, referral);
    }

    pub(crate) fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            clients: self.clients.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            authorizations: self.authorizations.values().cloned().collect(),
            referrals: self
                .referral_order
                .iter()
                .filter_map(|id| self.referrals.get(id).cloned())
                .collect(),
            attachments: self.attachments.clone(),
        }
    }

    pub(crate) fn duplicates(&self) -> DuplicatesReport {
        fn collect<K: Ord + ToString>(groups: BTreeMap<K, Vec<String>>) -> Vec<DuplicateEntry> {
            groups
                .into_iter()
                .filter(|(_, ids)| ids.len() > 1)
                .map(|(k, ids)| DuplicateEntry {
                    key: k.to_string(),
                    count: ids.len(),
                    ids,
                })
                .collect()
        }

        let mut clients: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.clients.values() {
            if let Some(ext) = &c.external_id {
                clients
                    .entry(ext.clone())
                    .or_default()
                    .push(c.id.to_string());
            }
        }

        let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in self.services.values() {
            if let Some(ext) = &s.service_id {
                services
                    .entry(ext.clone())
                    .or_default()
                    .push(s.id.to_string());
            }
        }

        let mut authorizations: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in self.authorizations.values().filter(|a| !a.deleted) {
            authorizations
                .entry(authorization_key(a))
                .or_default()
                .push(a.id.to_string());
        }

        let mut sequences: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, ids) in &self.revision_groups {
            let Some(latest) = ids.last().and_then(|id| self.referrals.get(id)) else {
                continue;
            };
            if latest.status == "cancelled" {
                continue;
            }
            sequences
                .entry(format!(
                    "service={} supplier={}",
                    latest.service_id, latest.supply_persona_id
                ))
                .or_default()
                .push(group.to_string());
        }
        for ids in sequences.values_mut() {
            ids.sort();
        }

        let mut attachments: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in &self.attachments {
            attachments
                .entry(format!("group={} sha256={}", a.revision_group_id, a.sha256))
                .or_default()
                .push(a.filepath.clone());
        }

        DuplicatesReport {
            clients: collect(clients),
            services: collect(services),
            authorizations: collect(authorizations),
            referral_sequences: collect(sequences),
            attachments: collect(attachments),
        }
    }
}

/// The natural key of an authorization: everything the bridge sends that
/// defines the grant.
fn authorization_key(a: &AuthorizationRecord) -> String {
    let mut services = a.service_ids.clone();
    services.sort_unstable();
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| x.to_string());
    let days: Vec<String> = a.rules.days.iter().map(|d| fmt(*d)).collect();
    format!(
        "client={} services={:?} start={} end={} methodology={} number={} rule_type={} daily={} weekly={} monthly={} period={} days={}",
        a.client_id,
        services,
        a.start_at,
        a.end_at.map_or_else(|| "-".to_owned(), |d| d.to_string()),
        a.methodology,
        a.authorization_number.as_deref().unwrap_or("-"),
        a.rule_type,
        fmt(a.rules.daily),
        fmt(a.rules.weekly),
        fmt(a.rules.monthly),
        fmt(a.rules.period),
        days.join(","),
    )
}
