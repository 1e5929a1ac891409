use std::time::Duration;

use serde_json::json;

use crate::helpers::{PAYLOAD, sample_terms, spawn_app, sql};

const ID: &str = "0e1d5e34-63d7-4bb2-8e22-9376943ab56f";

#[tokio::test]
async fn an_approved_referral_reaches_accloud_once_with_every_object() {
    let app = spawn_app().await;
    let payload: serde_json::Value = serde_json::from_str(PAYLOAD).unwrap();
    app.post_referral(&payload).await;
    let (status, body) = app.approve(ID, &sample_terms()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["terms"]["service"]["name"], "Physical Therapy");
    assert_eq!(
        body["terms"]["service"]["funder"],
        json!({"name": "Blue Cross Blue Shield"})
    );
    assert_eq!(
        body["terms"]["authorizations"][0]["member_number"],
        "1111111"
    );

    let d = app
        .wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    let steps: Vec<(&str, &str)> = d["send"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("client", "done"),
            ("service", "done"),
            ("authorization", "done"),
            ("referral", "done"),
            ("attachment", "done")
        ]
    );
    let history: Vec<&str> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec!["received", "approved", "sending", "sent"]);

    let s = app.sim().state();
    assert_eq!(s.clients.len(), 1);
    let client = &s.clients[0];
    assert_eq!(client.branch_id, 1000);
    assert_eq!(client.groups, vec![1008], "the CSI group");
    assert_eq!(client.external_id.as_deref(), d["patient"]["id"].as_str());
    assert_eq!(client.timezone.as_deref(), Some("America/Denver"));
    assert_eq!(client.demographics["first_name"], "Jane");

    assert_eq!(s.services.len(), 1);
    let svc = &s.services[0];
    assert_eq!(svc.service_id.as_deref(), Some(ID));
    assert_eq!(svc.client_id, client.id);
    assert_eq!(svc.profile["target_agency"], "Gem City Home Care");
    assert_eq!(svc.funding_methodology, "single_funder");
    assert_eq!(svc.funders.len(), 1);

    assert_eq!(s.authorizations.len(), 1);
    let auth = &s.authorizations[0];
    assert_eq!(auth.service_ids, vec![svc.id]);
    assert_eq!(auth.methodology, "service");
    assert_eq!(auth.rule_type, "VISITS");
    assert_eq!(auth.authorization_number.as_deref(), Some("A-1"));

    assert_eq!(s.referrals.len(), 1);
    let r = &s.referrals[0];
    assert_eq!(r.status, "assigned");
    assert_eq!(r.authorization_ids, vec![auth.id]);
    assert_eq!(
        r.supply_persona_id.to_string(),
        "91c79089-a3ca-4cca-acf4-52fc1f1302c6"
    );
    // Local midnight in the client's zone (America/Denver) of the authorization dates.
    let tz: chrono_tz::Tz = "America/Denver".parse().unwrap();
    assert_eq!(r.start_at.with_timezone(&tz).date_naive(), auth.start_at);
    assert_eq!(r.start_at.with_timezone(&tz).time(), chrono::NaiveTime::MIN);
    assert_eq!(Some(r.end_at.with_timezone(&tz).date_naive()), auth.end_at);
    assert_eq!(
        d["send"]["steps"][3]["result"]["revision_group_id"],
        r.revision_group_id.to_string()
    );

    assert_eq!(s.attachments.len(), 1);
    assert_eq!(s.attachments[0].referral_id, r.id);
    assert_eq!(
        s.attachments[0].sha256,
        d["files"][0]["sha256"].as_str().unwrap()
    );
    assert!(app.sim().duplicates().is_empty());
}

#[tokio::test]
async fn the_happy_path_costs_one_call_per_object_after_the_first_lookups() {
    let app = spawn_app().await;
    for (i, id) in [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
    ]
    .iter()
    .enumerate()
    {
        let mut p = app.payload(id, 5000 + i as i64);
        p["client"]["last_name"] = json!(format!("Other{i}"));
        app.post_referral(&p).await;
    }
    app.approve("00000000-0000-4000-8000-000000000001", &sample_terms())
        .await;
    app.wait_status(
        "00000000-0000-4000-8000-000000000001",
        &["sent"],
        Duration::from_secs(20),
    )
    .await;
    app.sim().clear_journal();
    app.approve("00000000-0000-4000-8000-000000000002", &sample_terms())
        .await;
    app.wait_status(
        "00000000-0000-4000-8000-000000000002",
        &["sent"],
        Duration::from_secs(20),
    )
    .await;
    let calls: Vec<String> = app
        .sim()
        .journal()
        .iter()
        .map(|j| format!("{} {:?}", j.method, j.endpoint))
        .collect();
    // Reference data is cached: a second referral is exactly its five creates.
    assert_eq!(
        calls,
        vec![
            "POST Some(ClientCreate)",
            "POST Some(ServiceCreate)",
            "POST Some(AuthorizationCreate)",
            "POST Some(ReferralCreate)",
            "POST Some(AttachmentUpload)",
        ]
    );
}

#[tokio::test]
async fn approving_twice_with_the_same_terms_is_a_no_op_and_other_terms_are_409() {
    let app = spawn_app().await;
    app.post_referral(&app.payload(ID, 1094)).await;
    let (s1, _) = app.approve(ID, &sample_terms()).await;
    let (s2, b2) = app.approve(ID, &sample_terms()).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(b2["changed"], false);
    let mut other = sample_terms();
    other["authorizations"][0]["rule_weekly"] = json!(3);
    let (s3, b3) = app.approve(ID, &other).await;
    assert_eq!(s3, 409);
    assert!(
        b3["message"]
            .as_str()
            .unwrap()
            .contains("approved with other terms"),
        "{b3}"
    );
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(app.sim().state().authorizations.len(), 1);
}

#[tokio::test]
async fn invalid_terms_are_400_with_every_problem_and_nothing_is_sent() {
    let app = spawn_app().await;
    app.post_referral(&app.payload(ID, 1094)).await;
    let terms = json!({
        "service": {"service_code_name": "Nope", "service_code_id": 48},
        "authorizations": [{
            "start_date": "2020-01-01", "end_date": "2019-01-01", "rule_type": "MINUTES",
            "rule_daily": 5, "rule_monday": 1, "rule_monthly": 2
        }],
        "referral": {"care_type": "spa"}
    });
    let (status, body) = app.approve(ID, &terms).await;
    assert_eq!(status, 400);
    let paths: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "service.service_code_id",
            "authorizations[0].end_date",
            "authorizations[0].start_date",
            "authorizations[0].rule_type",
            "authorizations[0].rule_monday",
            "authorizations[0].rule_daily",
            "referral.care_type",
        ]
    );
    let (status, body) = app.approve(ID, &json!({"servicee": {}})).await;
    assert_eq!(status, 400, "{body}");
    // A field-level problem, named like the others.
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["message"], "servicee is not a known field");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.sim().journal().is_empty(), "nothing reached ACCloud");
    assert_eq!(app.detail(ID).await["status"], "received");
}

#[tokio::test]
async fn a_denied_referral_cannot_be_approved() {
    let app = spawn_app().await;
    app.post_referral(&app.payload(ID, 1094)).await;
    let (s, _) = app
        .post(
            &format!("/v1/referral-requests/{ID}/deny"),
            Some(&json!({"reason": "no"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, body) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 409);
    assert_eq!(
        body["message"],
        format!("referral request {ID} is denied and cannot be approved")
    );
}

#[tokio::test]
async fn a_definite_rejection_pauses_for_attention_and_a_corrected_resume_finishes() {
    let app = spawn_app().await;
    app.post_referral(&app.payload(ID, 1094)).await;
    // A service code id ACCloud does not have: it answers 400.
    let mut terms = sample_terms();
    terms["service"] = json!({"service_code_id": 999});
    assert_eq!(app.approve(ID, &terms).await.0, 202);
    let d = app
        .wait_status(ID, &["needs_attention"], Duration::from_secs(20))
        .await;
    let step = &d["send"]["steps"][1];
    assert_eq!(step["state"], "failed");
    let err = step["last_error"].as_str().unwrap();
    assert!(
        err.contains("HTTP 400") && err.contains("Service code 999 not found."),
        "{err}"
    );
    assert_eq!(d["send"]["state"], "paused");
    assert_eq!(d["send"]["pause_reason"], err);
    // Ready since its approval, until the pause; the resume makes it ready anew.
    let db = sql(&app).await;
    let ready_since = || async {
        let since: Option<String> =
            sqlx::query_scalar("SELECT ready_since FROM send_jobs WHERE request_id = $1")
                .bind(ID)
                .fetch_one(&db)
                .await
                .unwrap();
        since.expect("set when the send became ready")
    };
    let approved_since = ready_since().await;

    terms["service"] = json!({"service_code_id": 50});
    let (s, body) = app
        .post(
            &format!("/v1/referral-requests/{ID}/approval/resume"),
            Some(&terms),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let d = app
        .wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(
        d["send"]["terms"]["service"]["service_code"],
        json!({"id": 50})
    );
    assert!(ready_since().await > approved_since, "the resume's time");
    let state = app.sim().state();
    assert_eq!(
        state.clients.len(),
        1,
        "the client made before the pause is reused"
    );
    assert_eq!(state.services.len(), 1);
    assert_eq!(state.services[0].service_code_id, 50);
    assert_eq!(state.authorizations.len(), 1);
    assert!(app.sim().duplicates().is_empty());
    let actions: Vec<&str> = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "referral_request.received",
            "referral_request.approved",
            "send.needs_attention",
            "send.resumed",
            "send.completed"
        ]
    );
    // The same story in the events, the reason named without ACCloud's words.
    let events = app.events(ID).await;
    let types: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(types, actions, "one event per change, as audited");
    assert_eq!(
        events[2].1,
        json!({"status": "needs_attention", "reason": "rejected", "step": 1, "step_kind": "service"})
    );
    assert_eq!(events[3].1["terms_corrected"], true);

    let (s, _) = app
        .post(&format!("/v1/referral-requests/{ID}/approval/resume"), None)
        .await;
    assert_eq!(s, 409, "nothing left to resume");
}

const UNTRUSTED: &str = "6f1c7a52-0000-4000-8000-000000000000";

/// An agency outside CSI's trusted network stops the send before anything is created; once
/// the network has it, a resume sends the referral.
#[tokio::test]
async fn an_agency_outside_the_trusted_network_stops_the_send_before_anything_is_created() {
    let app = spawn_app().await;
    let mut p = app.payload(ID, 1094);
    p["agency"]["alayamarket_org_id"] = json!(UNTRUSTED);
    app.post_referral(&p).await;
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "never read the network: the send checks it: {b}");
    let d = app
        .wait_status(ID, &["needs_attention"], Duration::from_secs(20))
        .await;
    assert_eq!(d["send"]["steps"][0]["kind"], "client");
    let error = d["send"]["steps"][0]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "the agency {} ({UNTRUSTED}) is not in CSI's trusted network",
            p["agency"]["name"].as_str().unwrap()
        )),
        "{error}"
    );
    let held = app.sim().state();
    assert!(held.clients.is_empty() && held.services.is_empty());
    assert!(held.authorizations.is_empty() && held.referrals.is_empty());

    app.sim()
        .trust_supplier(UNTRUSTED.parse().unwrap(), "Newly Trusted Home Care");
    let (s, b) = app
        .post(&format!("/v1/referral-requests/{ID}/approval/resume"), None)
        .await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    let held = app.sim().state();
    assert_eq!(
        (
            held.clients.len(),
            held.services.len(),
            held.referrals.len()
        ),
        (1, 1, 1)
    );
    assert!(app.sim().duplicates().is_empty());
}

/// Once the workers have read the trusted network, an approval for an agency outside it is
/// refused at once, and accepted after the network has it and was read again.
#[tokio::test]
async fn an_approval_for_an_agency_outside_the_trusted_network_is_refused() {
    let app = spawn_app().await;
    let mut cfg = app.engine_cfg.clone();
    cfg.trusted_network_every = Some(Duration::ZERO);
    let reader = refbridge_saga::Engine::new(
        app.state.store.clone(),
        app.state.files.clone(),
        app.accloud.clone(),
        cfg,
    );
    assert!(reader.refresh_trusted_network_once().await.unwrap());
    // The same read keeps ACCloud's funders and service codes for the console to offer.
    let funders = app
        .state
        .store
        .accloud_names(refbridge_storage::FUNDERS)
        .await
        .unwrap();
    assert!(
        funders.iter().any(|(_, n)| n == "Blue Cross Blue Shield"),
        "{funders:?}"
    );
    let codes = app
        .state
        .store
        .accloud_names(refbridge_storage::SERVICE_CODES)
        .await
        .unwrap();
    assert!(
        codes.iter().any(|(_, n)| n == "Physical Therapy"),
        "{codes:?}"
    );
    let mut p = app.payload(ID, 1094);
    p["agency"]["alayamarket_org_id"] = json!(UNTRUSTED);
    app.post_referral(&p).await;
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 409, "{b}");
    let said = b.to_string();
    assert!(
        said.contains(UNTRUSTED) && said.contains("not in CSI's trusted network"),
        "{b}"
    );
    assert_eq!(
        app.detail(ID).await["status"],
        "received",
        "nothing recorded"
    );

    app.sim()
        .trust_supplier(UNTRUSTED.parse().unwrap(), "Newly Trusted Home Care");
    assert!(reader.refresh_trusted_network_once().await.unwrap());
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;

    // A trusted agency is approved as before.
    let other = "00000000-0000-4000-8000-000000000031";
    app.post_referral(&app.payload(other, 1095)).await;
    assert_eq!(app.approve(other, &sample_terms()).await.0, 202);
}

#[tokio::test]
async fn an_existing_client_is_reused_and_given_the_csi_group() {
    let app = spawn_app().await;
    // Two referrals of one patient: one client in ACCloud.
    app.post_referral(&app.payload(ID, 1094)).await;
    app.post_referral(&app.payload("00000000-0000-4000-8000-000000000009", 1094))
        .await;
    app.approve(ID, &sample_terms()).await;
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    app.approve("00000000-0000-4000-8000-000000000009", &sample_terms())
        .await;
    let d = app
        .wait_status(
            "00000000-0000-4000-8000-000000000009",
            &["sent"],
            Duration::from_secs(20),
        )
        .await;
    let s = app.sim().state();
    assert_eq!(s.clients.len(), 1);
    assert_eq!(s.services.len(), 2);
    assert_eq!(d["send"]["steps"][0]["result"]["reused"], true);
    assert!(app.sim().duplicates().is_empty());
}

/// A form that carries the same file twice delivers it once; both stay on the referral.
#[tokio::test]
async fn a_file_the_form_carries_twice_is_delivered_once() {
    let app = spawn_app().await;
    let mut p = app.payload(ID, 1094);
    let mut again = p["files"][0].clone();
    again["file_name"] = json!("the same order.pdf");
    p["files"].as_array_mut().unwrap().push(again);
    app.post_referral(&p).await;
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    let d = app
        .wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(d["files"].as_array().unwrap().len(), 2);
    let uploads = d["send"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "attachment")
        .count();
    assert_eq!(uploads, 1);
    assert_eq!(app.sim().state().attachments.len(), 1);
    assert!(app.sim().duplicates().is_empty());
}

/// A name intake accepts is sent: path separators, `..`, NUL, control characters and 300
/// characters reach ACCloud as a safe name (the last segment, at most 120 characters, its
/// extension kept), at intake and in a later documents upload; the send never pauses for it.
#[tokio::test]
async fn a_hostile_file_name_accepted_at_intake_is_sent_under_a_safe_name() {
    let app = spawn_app().await;
    let hostile = format!("../..\\etc/pa\0ss\u{7}wd\r\n{}.pdf", "é".repeat(280));
    let mut p = app.payload(ID, 1094);
    p["files"] = json!([{"file_name": hostile, "file_value": "JVBERi0xLjQgeA=="}]);
    app.post_referral(&p).await;
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    // A multipart header cannot carry NUL or line breaks: the rest of the name can.
    let upload = format!("../..\\etc/pass\twd{}.pdf", "é".repeat(280));
    let (s, b) = app
        .post_documents(ID, &[(upload.as_str(), b"%PDF-1.4 another".to_vec())])
        .await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    let sent = app.sim().state().attachments;
    assert_eq!(sent.len(), 2);
    for a in &sent {
        assert!(
            !a.filename
                .contains(['/', '\\', '\0', '\r', '\n', '\t', '\u{7}']),
            "{a:?}"
        );
        assert!(a.filename.ends_with(".pdf"), "{a:?}");
        assert!(a.filename.chars().count() <= 120, "{a:?}");
    }
    assert!(app.sim().duplicates().is_empty());
}
