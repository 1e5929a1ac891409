//! `refbridge accloud check`: before the first approval, whether the configured ACCloud tenant
//! has what a send needs. One pass or fail line per prerequisite; exit code 1 when any fails.
//! Reads only (lists and lookups): nothing is created.

use clap::Subcommand;
use refbridge_accloud::{AcCloud, BranchId, PageRequest, lookup};

use crate::config::Config;
use crate::runtime;

#[derive(Debug, Subcommand)]
pub enum AcCloudCommand {
    /// Check the configured tenant: credentials, the HQ branch's CSI group, funders, service
    /// codes, the trusted network, and that the configured mappings name what ACCloud lists.
    #[command(
        after_help = "Examples:\n  REFBRIDGE_ACCLOUD__TARGET=simulator refbridge accloud check\n  \
        refbridge --config prod.toml accloud check"
    )]
    Check,
}

/// One prerequisite: its name, and what was found or why it fails.
struct Check {
    name: String,
    outcome: Result<String, String>,
}

pub async fn run(cfg: Config, cmd: AcCloudCommand) -> anyhow::Result<()> {
    let AcCloudCommand::Check = cmd;
    cfg.accloud.chosen_target()?;
    let link = runtime::connect_accloud(&cfg).await?;
    println!("ACCloud: {}", runtime::describe_target(&cfg));
    let checks = checks(&cfg, link.client.as_ref()).await;
    let failed = checks.iter().filter(|c| c.outcome.is_err()).count();
    for c in &checks {
        match &c.outcome {
            Ok(found) => println!("PASS  {}: {found}", c.name),
            Err(why) => println!("FAIL  {}: {why}", c.name),
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", checks.len());
    }
    println!("all {} checks passed", checks.len());
    Ok(())
}

async fn checks(cfg: &Config, ac: &dyn AcCloud) -> Vec<Check> {
    let a = &cfg.accloud;
    let hq = Some(BranchId(a.hq_branch_id));
    let mut out = Vec::new();
    let mut check = |name: String, outcome: Result<String, String>| {
        out.push(Check { name, outcome });
    };
    let credentials = ac
        .list_client_groups(None, PageRequest::default())
        .await
        .map(|_| "the API key and secret are accepted".to_owned())
        .map_err(|e| e.to_string());
    let reachable = credentials.is_ok();
    check("credentials".into(), credentials);
    if !reachable {
        return out;
    }
    check(
        format!(
            "client group {:?} in HQ branch {}",
            a.csi_group, a.hq_branch_id
        ),
        match lookup::find_client_group(ac, &a.csi_group, hq).await {
            Ok(Some(g)) => Ok(format!("group {}", g.id)),
            Ok(None) => Err("no enabled group of that name in the branch".into()),
            Err(e) => Err(e.to_string()),
        },
    );
    let funders = lookup::funders(ac, hq).await;
    check(
        "funders".into(),
        match &funders {
            Ok(f) if !f.is_empty() => Ok(format!("{} listed", f.len())),
            Ok(_) => Err("none listed for the HQ branch".into()),
            Err(e) => Err(e.to_string()),
        },
    );
    let codes = lookup::service_codes(ac, hq).await;
    check(
        "service codes".into(),
        match &codes {
            Ok(c) if !c.is_empty() => Ok(format!("{} listed", c.len())),
            Ok(_) => Err("none listed for the HQ branch".into()),
            Err(e) => Err(e.to_string()),
        },
    );
    check(
        "trusted network".into(),
        match lookup::trusted_network(ac).await {
            Ok(n) if !n.is_empty() => Ok(format!("{} agencies", n.len())),
            Ok(_) => Err("CSI's trusted network lists no agency".into()),
            Err(e) => Err(e.to_string()),
        },
    );
    let same = |x: &str, y: &str| x.trim().eq_ignore_ascii_case(y.trim());
    if let Ok(codes) = &codes {
        for (requested, mapping) in &cfg.approval.services {
            check(
                format!("service mapping {requested:?}"),
                if codes.iter().any(|c| same(&c.name, &mapping.service_code)) {
                    Ok(format!("service code {:?} listed", mapping.service_code))
                } else {
                    Err(format!(
                        "service code {:?} is not listed",
                        mapping.service_code
                    ))
                },
            );
        }
    }
    if let Ok(funders) = &funders {
        for (insurance, funder) in &cfg.approval.funders {
            check(
                format!("funder mapping {insurance:?}"),
                if funders.iter().any(|f| same(&f.name, funder)) {
                    Ok(format!("funder {funder:?} listed"))
                } else {
                    Err(format!("funder {funder:?} is not listed"))
                },
            );
        }
    }
    out
}
