//! `refbridge demo`: the whole flow on a throwaway embedded store against the built-in
//! simulator: a Referral Request in, approved, sent to ACCloud, and what ACCloud now holds.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use refbridge_domain::Role;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::{AcCloudTarget, Config};
use crate::runtime;

const PAYLOAD: &str = include_str!("../../assets/example_referral_request.json");

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// After the flow, keep the server up (until Ctrl-C) with a second referral waiting for
    /// review, and print the console's address and a sign-in.
    #[arg(long)]
    pub serve: bool,
    /// Where the API and console listen with --serve.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

pub async fn run(mut cfg: Config, args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    cfg.database_url = crate::config::DatabaseUrl::new(format!(
        "sqlite://{}",
        dir.path().join("demo.db").display()
    ));
    cfg.files_dir = dir.path().join("files");
    cfg.accloud.target = Some(AcCloudTarget::Simulator);
    cfg.accloud.simulator_listen = "127.0.0.1:0".into();
    cfg.worker.poll_interval_ms = 100;

    let state = crate::open_state(&cfg).await?;
    let link = runtime::connect_accloud(&cfg).await?;
    let sim = link.simulator.as_ref().context("no simulator")?.handle();
    let engine = runtime::engine(&state, link.client.clone(), runtime::engine_config(&cfg));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut rx = stop_rx.clone();
    let worker = tokio::spawn(async move {
        engine
            .run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
    });

    let mut tokens = Vec::new();
    for (name, role) in [
        ("alayaconnector", Role::Intake),
        ("reviewer", Role::Reviewer),
    ] {
        let token = refbridge_api::new_token().context("the operating system's random source")?;
        state
            .store
            .create_token(name, role, &refbridge_api::hash_token(&token))
            .await?;
        tokens.push(token);
    }
    let listen = if args.serve {
        args.listen.as_str()
    } else {
        "127.0.0.1:0"
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let store = state.store.clone();
    let base = format!("http://{}", listener.local_addr()?);
    let mut rx = stop_rx.clone();
    let api = tokio::spawn(crate::serve(state, listener, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let http = reqwest::Client::new();

    println!(
        "refbridge demo: API on {base}, ACCloud simulator on {}",
        link.base_url
    );
    let payload: Value = serde_json::from_str(PAYLOAD)?;
    let id = payload["request_id"]
        .as_str()
        .context("payload has a request_id")?
        .to_owned();
    let res = http
        .post(format!("{base}/referral_request"))
        .bearer_auth(&tokens[0])
        .json(&payload)
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await?;
    println!(
        "\n1. Referral Request {id} received: HTTP {status}, warnings: {}",
        body["warnings"]
    );

    let today = chrono::Utc::now().date_naive();
    let terms = json!({
        "service": { "funder_name": "Blue Cross Blue Shield", "instructions": "Ring the bell twice" },
        "authorizations": [{
            "start_date": (today + chrono::Duration::days(7)).to_string(),
            "end_date": (today + chrono::Duration::days(67)).to_string(),
            "rule_type": "VISITS", "rule_weekly": 2, "rule_period": 10,
            "authorization_number": "DEMO-0001"
        }],
        "referral": { "comment": "Approved by the refbridge demo",
                      "case_manager": { "name": "Case Manager", "phone": "555-000-0000" } }
    });
    let res = http
        .post(format!("{base}/v1/referral-requests/{id}/approval"))
        .bearer_auth(&tokens[1])
        .json(&terms)
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await?;
    if !status.is_success() {
        bail!("approval refused: HTTP {status}: {body}");
    }
    println!(
        "2. Approved: HTTP {status}; effective terms:\n{}",
        serde_json::to_string_pretty(&body["terms"])?
    );

    let started = Instant::now();
    let detail = loop {
        let d: Value = http
            .get(format!("{base}/v1/referral-requests/{id}"))
            .bearer_auth(&tokens[1])
            .send()
            .await?
            .json()
            .await?;
        let st = d["status"].as_str().unwrap_or_default().to_owned();
        if st == "sent" || st == "needs_attention" || started.elapsed() > Duration::from_secs(60) {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("\n3. Send timeline (status {}):", detail["status"]);
    for s in detail["send"]["steps"].as_array().into_iter().flatten() {
        println!(
            "   {:<13} {:<6} {:<7} attempts {}  ACCloud id {}{}",
            s["kind"].as_str().unwrap_or_default(),
            s["item"]
                .as_str()
                .map(|i| if i.len() > 6 { &i[..6] } else { i })
                .unwrap_or_default(),
            s["state"].as_str().unwrap_or_default(),
            s["attempts"],
            s["accloud_id"],
            s["last_error"]
                .as_str()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default(),
        );
    }

    let snap = sim.state();
    let dups = sim.duplicates();
    println!("\n4. What the ACCloud simulator holds:");
    for c in &snap.clients {
        println!(
            "   client {} external_id {:?} branch {}",
            c.id, c.external_id, c.branch_id
        );
    }
    for s in &snap.services {
        println!(
            "   service {} service_id {:?} name {:?}",
            s.id, s.service_id, s.name
        );
    }
    for a in &snap.authorizations {
        println!("   authorization {} {}..{:?}", a.id, a.start_at, a.end_at);
    }
    for r in &snap.referrals {
        println!(
            "   referral {} revision {} group {}",
            r.id, r.revision_number, r.revision_group_id
        );
    }
    for a in &snap.attachments {
        println!("   attachment {} on referral {}", a.filename, a.referral_id);
    }
    println!(
        "   duplicates report: {}",
        if dups.is_empty() {
            "empty"
        } else {
            "NOT EMPTY"
        }
    );

    if args.serve {
        // A second referral, waiting for a reviewer in the console.
        let mut second = payload.clone();
        second["request_id"] = json!("5b8e3c1a-2d4f-4e6a-9b7c-0d1e2f3a4b5c");
        second["client"]["id"] = json!(2201);
        second["client"]["first_name"] = json!("Robin");
        second["client"]["last_name"] = json!("Alvarez");
        http.post(format!("{base}/referral_request"))
            .bearer_auth(&tokens[0])
            .json(&second)
            .send()
            .await?
            .error_for_status()?;
        let password = refbridge_api::console::session::generate_password()?;
        store
            .create_user(
                "demo",
                Role::Admin,
                &refbridge_api::console::session::hash_password(&password)?,
            )
            .await?;
        println!("\nThe console: {base}/console");
        println!("   sign in as demo, password {password}");
        println!("   (a second referral is waiting for review; Ctrl-C stops the demo)");
        tokio::signal::ctrl_c().await?;
    }
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = api.await;
    if let Some(s) = link.simulator {
        s.shutdown().await;
    }
    if detail["status"] != "sent" || !dups.is_empty() {
        bail!("the demo did not end with the referral sent exactly once");
    }
    println!("\nThe referral reached ACCloud exactly once.");
    Ok(())
}
