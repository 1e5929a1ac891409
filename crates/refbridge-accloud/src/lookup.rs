//! Resolve-by-name helpers over the paged lists: the `CSI` group, funders, service codes and
//! the trusted network are resolved by name, then cached by the caller.
//!
//! Names match exactly after trimming, ignoring ASCII case. Filters that are only inferred
//! (\[INF\], e.g. the trusted network's `supply_persona_id`) are sent but never trusted: every
//! helper checks the items itself and reads on to the last page.

use crate::ids::{BranchId, SupplyPersonaId};
use crate::types::{
    ClientGroup, Funder, FunderFilter, Organization, Page, PageRequest, ServiceCode,
    TrustedNetworkFilter,
};
use crate::{AcCloud, Result};

/// Most pages a helper reads (a guard against a server that never reports its last page).
pub const MAX_PAGES: u32 = 1000;

fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Reads pages from `page` on until `pick` finds an item or the last page is read.
async fn scan<T, F, Fut>(
    mut page: PageRequest,
    mut fetch: F,
    pick: impl Fn(&T) -> bool,
) -> Result<Option<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    for _ in 0..MAX_PAGES {
        let p = fetch(page).await?;
        let more = p.has_next() && !p.items.is_empty();
        if let Some(found) = p.items.into_iter().find(|t| pick(t)) {
            return Ok(Some(found));
        }
        if !more {
            break;
        }
        page = page.next();
    }
    Ok(None)
}

/// The enabled client group named `name` (the CSI group: `"CSI"`), if any.
pub async fn find_client_group(
    ac: &dyn AcCloud,
    name: &str,
    branch_id: Option<BranchId>,
) -> Result<Option<ClientGroup>> {
    scan(
        PageRequest::default(),
        |page| ac.list_client_groups(branch_id, page),
        |g: &ClientGroup| !g.is_disabled && same_name(&g.name, name),
    )
    .await
}

/// The funder named `name` that is not disabled, if any (`funder_name` narrows the search
/// server-side; it is a substring match, so the exact name is checked here).
pub async fn find_funder(
    ac: &dyn AcCloud,
    name: &str,
    branch_id: Option<BranchId>,
) -> Result<Option<Funder>> {
    scan(
        PageRequest::default(),
        |page| {
            let filter = FunderFilter {
                name: Some(name.trim().to_owned()),
                branch_id,
                page,
                ..Default::default()
            };
            async move { ac.list_funders(&filter).await }
        },
        |f: &Funder| f.status.as_deref() != Some("disabled") && same_name(&f.name, name),
    )
    .await
}

/// The service code named `name`, if any.
pub async fn find_service_code(
    ac: &dyn AcCloud,
    name: &str,
    branch_id: Option<BranchId>,
) -> Result<Option<ServiceCode>> {
    scan(
        PageRequest::default(),
        |page| ac.list_service_codes(branch_id, page),
        |c: &ServiceCode| same_name(&c.name, name),
    )
    .await
}

/// The trusted supplier with this id, if it is in the trusted network.
pub async fn find_trusted_supplier(
    ac: &dyn AcCloud,
    id: SupplyPersonaId,
) -> Result<Option<Organization>> {
    scan(
        PageRequest::default(),
        |page| {
            let filter = TrustedNetworkFilter {
                supply_persona_ids: vec![id],
                page: Some(page),
                ..Default::default()
            };
            async move { ac.list_trusted_network(&filter).await }
        },
        |o: &Organization| o.id == id,
    )
    .await
}

/// Every item of a paged list, page after page (at most [`MAX_PAGES`]).
async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    let mut page = PageRequest::default();
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let p = fetch(page).await?;
        let more = p.has_next() && !p.items.is_empty();
        out.extend(p.items);
        if !more {
            break;
        }
        page = page.next();
    }
    Ok(out)
}

/// Every member of CSI's trusted network (the demand organization's trusted suppliers).
pub async fn trusted_network(ac: &dyn AcCloud) -> Result<Vec<Organization>> {
    all_pages(|page| {
        let filter = TrustedNetworkFilter {
            page: Some(page),
            ..Default::default()
        };
        async move { ac.list_trusted_network(&filter).await }
    })
    .await
}

/// Every funder (of `branch_id`, when given).
pub async fn funders(ac: &dyn AcCloud, branch_id: Option<BranchId>) -> Result<Vec<Funder>> {
    all_pages(|page| {
        let filter = FunderFilter {
            branch_id,
            page,
            ..FunderFilter::default()
        };
        async move { ac.list_funders(&filter).await }
    })
    .await
}

/// Every service code (of `branch_id`, when given).
pub async fn service_codes(
    ac: &dyn AcCloud,
    branch_id: Option<BranchId>,
) -> Result<Vec<ServiceCode>> {
    all_pages(|page| ac.list_service_codes(branch_id, page)).await
}
