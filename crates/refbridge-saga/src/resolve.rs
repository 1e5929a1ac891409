//! ACCloud's reference data (the CSI group, funders, service codes, the trusted network),
//! resolved by name once and cached, so the happy path costs no lookups after the first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use refbridge_accloud::{AcCloud, AcCloudError, BranchId, SupplyPersonaId, lookup};
use refbridge_domain::approval::Ref;

/// How long a resolved id is trusted.
const TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Resolver {
    cache: Mutex<HashMap<String, (i64, Instant)>>,
}

/// A name that ACCloud does not know: a definite problem for a human.
#[derive(Debug)]
pub enum Resolved {
    Found(i64),
    Missing(String),
}

impl Resolver {
    fn get(&self, key: &str) -> Option<i64> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(id, _)| *id)
    }

    fn put(&self, key: String, id: i64) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (id, Instant::now()));
        }
    }

    /// Forgets everything (after ACCloud rejected an id we resolved, say).
    pub fn clear(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    pub async fn group(
        &self,
        ac: &dyn AcCloud,
        name: &str,
        branch: BranchId,
    ) -> Result<Resolved, AcCloudError> {
        let key = format!("group:{name}");
        if let Some(id) = self.get(&key) {
            return Ok(Resolved::Found(id));
        }
        Ok(
            match lookup::find_client_group(ac, name, Some(branch)).await? {
                Some(g) => {
                    self.put(key, g.id.get());
                    Resolved::Found(g.id.get())
                }
                None => {
                    Resolved::Missing(format!("ACCloud has no enabled client group named {name}"))
                }
            },
        )
    }

    pub async fn funder(&self, ac: &dyn AcCloud, r: &Ref) -> Result<Resolved, AcCloudError> {
        let name = match r {
            Ref::Id(id) => return Ok(Resolved::Found(*id)),
            Ref::Name(n) => n,
        };
        let key = format!("funder:{name}");
        if let Some(id) = self.get(&key) {
            return Ok(Resolved::Found(id));
        }
        Ok(match lookup::find_funder(ac, name, None).await? {
            Some(f) => {
                self.put(key, f.id.get());
                Resolved::Found(f.id.get())
            }
            None => Resolved::Missing(format!("ACCloud has no funder named {name}")),
        })
    }

    pub async fn service_code(&self, ac: &dyn AcCloud, r: &Ref) -> Result<Resolved, AcCloudError> {
        let name = match r {
            Ref::Id(id) => return Ok(Resolved::Found(*id)),
            Ref::Name(n) => n,
        };
        let key = format!("code:{name}");
        if let Some(id) = self.get(&key) {
            return Ok(Resolved::Found(id));
        }
        Ok(match lookup::find_service_code(ac, name, None).await? {
            Some(c) => {
                self.put(key, c.id.get());
                Resolved::Found(c.id.get())
            }
            None => Resolved::Missing(format!("ACCloud has no service code named {name}")),
        })
    }

    /// Whether the agency is in CSI's trusted network.
    pub async fn trusted(
        &self,
        ac: &dyn AcCloud,
        supplier: SupplyPersonaId,
    ) -> Result<bool, AcCloudError> {
        let key = format!("trusted:{supplier}");
        if self.get(&key).is_some() {
            return Ok(true);
        }
        let found = lookup::find_trusted_supplier(ac, supplier).await?.is_some();
        if found {
            self.put(key, 1);
        }
        Ok(found)
    }
}
