//! Manual probe: calls a few read endpoints of a real or simulated ACCloud and prints what
//! came back (ids, names and counts only; no client data).
//!
//! ```sh
//! ACCLOUD_URL=https://csi.uat.alayacare.com   # or ACCLOUD_ENV=uat, or a simulator URL
//! ACCLOUD_API_KEY=... ACCLOUD_API_SECRET=... \
//!   cargo run -p refbridge-accloud --example probe -- groups funders service-codes trusted
//! cargo run -p refbridge-accloud --example probe -- client-by-id <external_id>
//! cargo run -p refbridge-accloud --example probe -- service-by-id <request_id>
//! cargo run -p refbridge-accloud --example probe -- referrals <revision_group_id>
//! ```

use std::process::ExitCode;
use std::time::Duration;

use refbridge_accloud::{
    AcCloud, AcCloudConfig, AcCloudEnv, FunderFilter, HttpAcCloud, PageRequest, ReferralFilter,
    RevisionGroupId, Revisions, SecretString, TrustedNetworkFilter,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn run() -> Result<(), String> {
    let base = match std::env::var("ACCLOUD_URL") {
        Ok(url) => url,
        Err(_) => env("ACCLOUD_ENV")?
            .parse::<AcCloudEnv>()
            .map_err(|e| e.to_string())?
            .base_url()
            .to_owned(),
    };
    let mut cfg = AcCloudConfig::new(
        &base,
        SecretString::from(env("ACCLOUD_API_KEY")?),
        SecretString::from(env("ACCLOUD_API_SECRET")?),
    )
    .map_err(|e| e.to_string())?;
    cfg.timeout = Duration::from_secs(20);
    let client = HttpAcCloud::new(cfg).map_err(|e| e.to_string())?;
    println!("ACCloud at {}", client.base_url());

    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_none() {
        return Err(
            "nothing to do: give groups, funders, service-codes, trusted, \
                    client-by-id ID, service-by-id ID or referrals GROUP_ID"
                .to_owned(),
        );
    }
    while let Some(cmd) = args.next() {
        let outcome = match cmd.as_str() {
            "groups" => client
                .list_client_groups(None, PageRequest::default())
                .await
                .map(|p| {
                    for g in &p.items {
                        println!("group {} {:?} disabled={}", g.id, g.name, g.is_disabled);
                    }
                    println!("page {}/{}", p.page, p.total_pages);
                }),
            "funders" => client
                .list_funders(&FunderFilter::default())
                .await
                .map(|p| {
                    for f in &p.items {
                        println!("funder {} {:?} ext={:?}", f.id, f.name, f.external_id);
                    }
                    println!("page {}/{}", p.page, p.total_pages);
                }),
            "service-codes" => client
                .list_service_codes(None, PageRequest::default())
                .await
                .map(|p| {
                    for c in &p.items {
                        println!("service code {} {:?}", c.id, c.name);
                    }
                    println!("page {}/{}", p.page, p.total_pages);
                }),
            "trusted" => client
                .list_trusted_network(&TrustedNetworkFilter::default())
                .await
                .map(|p| {
                    for o in &p.items {
                        println!("supplier {} {:?}", o.id, o.name);
                    }
                    println!("total {:?}", p.total_items);
                }),
            "client-by-id" => {
                let id = args.next().ok_or("client-by-id needs an external id")?;
                client
                    .get_client_by_external_id(&id)
                    .await
                    .map(|c| match c {
                        Some(c) => println!(
                            "client {} status={:?} groups={:?} tz={:?}",
                            c.id,
                            c.status,
                            c.groups.iter().map(|g| g.id.get()).collect::<Vec<_>>(),
                            c.timezone
                        ),
                        None => println!("no client with that external id"),
                    })
            }
            "service-by-id" => {
                let id = args.next().ok_or("service-by-id needs a service_id")?;
                client
                    .get_service_by_external_id(&id)
                    .await
                    .map(|s| match s {
                        Some(s) => println!("service {} status={:?}", s.id, s.status),
                        None => println!("no service with that service_id"),
                    })
            }
            "referrals" => {
                let group = args.next().ok_or("referrals needs a revision_group_id")?;
                let group = RevisionGroupId(group.parse().map_err(|_| "not a UUID")?);
                client
                    .list_referrals(&ReferralFilter {
                        revision_group_id: Some(group),
                        revisions: Some(Revisions::All),
                        ..Default::default()
                    })
                    .await
                    .map(|p| {
                        for r in &p.items {
                            let rev = r.revision.as_ref();
                            println!(
                                "referral {} status={} revision={:?} latest={:?}",
                                r.id(),
                                r.referral.status,
                                rev.map(|v| v.revision_number),
                                rev.map(|v| v.is_latest_revision)
                            );
                        }
                    })
            }
            other => return Err(format!("unknown command {other}")),
        };
        if let Err(e) = outcome {
            // Display only: ACCloud's own message may echo client data.
            println!(
                "{cmd}: {e} (retryable={}, ambiguous={})",
                e.is_retryable(),
                e.is_ambiguous()
            );
        }
    }
    Ok(())
}
