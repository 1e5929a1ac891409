//! The console over HTTP: sign-in, sessions, CSRF, the inbox, the referral page and its
//! approve form. (A real browser drives it in refbridge-cli's e2e tests.)

use std::time::Duration;

use refbridge_api::ApiConfig;
use refbridge_api::console::session::{ConsoleSettings, hash_password};
use refbridge_domain::Role;
use refbridge_storage::SessionLimits;

use crate::helpers::{EXAMPLE_ID, TestApp, example, spawn_app, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

/// A browser: follows no redirect, keeps the session cookie.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> (u16, String, Option<String>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        read(req.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        read(req.send().await.unwrap()).await
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> (u16, String, Option<String>) {
        let res = self
            .http
            .post(format!("{}/console/login", self.base))
            .form(&[("username", name), ("password", password)])
            .send()
            .await
            .unwrap();
        if let Some(set) = res.headers().get("set-cookie") {
            let set = set.to_str().unwrap();
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        read(res).await
    }

    /// The CSRF token of the forms on `path`.
    async fn csrf(&self, path: &str) -> String {
        let (_, html, _) = self.get(path).await;
        let at = html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        html[at..].split('"').next().unwrap().to_owned()
    }
}

/// (status, body, Location).
async fn read(res: reqwest::Response) -> (u16, String, Option<String>) {
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, res.text().await.unwrap(), location)
}

async fn with_user(app: &TestApp, name: &str, role: Role) {
    app.store
        .create_user(name, role, &hash_password(PASSWORD).unwrap())
        .await
        .unwrap();
}

async fn signed_in(app: &TestApp) -> Browser {
    with_user(app, "dana", Role::Reviewer).await;
    let mut b = Browser::new(app);
    let (s, _, to) = b.sign_in("dana", PASSWORD).await;
    assert_eq!((s, to.as_deref()), (303, Some("/console")));
    b
}

#[tokio::test]
async fn a_signed_out_browser_is_sent_to_the_sign_in_page() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    assert_eq!(b.get("/").await.2.as_deref(), Some("/console"));
    for path in ["/console", &format!("/console/referrals/{EXAMPLE_ID}")] {
        let (s, _, to) = b.get(path).await;
        assert_eq!((s, to.as_deref()), (303, Some("/console/login")), "{path}");
    }
    let (s, html, _) = b.get("/console/login").await;
    assert_eq!(s, 200);
    assert!(html.contains(r#"name="username""#) && html.contains(r#"name="password""#));
    let (s, _, to) = b.post("/console/logout", &[("csrf", "x")]).await;
    assert_eq!((s, to.as_deref()), (303, Some("/console/login")));
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_a_wrong_password_is_refused() {
    let app = spawn_app().await;
    with_user(&app, "dana", Role::Reviewer).await;
    let mut b = Browser::new(&app);
    let (s, html, _) = b.sign_in("dana", "not the password").await;
    assert_eq!(s, 401);
    assert!(html.contains("Wrong user name or password"));
    assert!(b.cookie.is_none());
    let (s, html, _) = b.sign_in("nobody", PASSWORD).await;
    assert_eq!(s, 401, "an unknown name is refused the same way");
    assert!(html.contains("Wrong user name or password"));

    let res = b
        .http
        .post(format!("{}/console/login", app.base))
        .form(&[("username", "dana"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("refbridge_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    // Behind a proxy that terminates TLS, the cookie is Secure and __Host- bound.
    let res = b
        .http
        .post(format!("{}/console/login", app.base))
        .header("x-forwarded-proto", "https")
        .form(&[("username", "dana"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-refbridge_session=") && cookie.contains("; Secure"));
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_user() {
    let app = spawn_app().await;
    with_user(&app, "dana", Role::Reviewer).await;
    let mut b = Browser::new(&app);
    for _ in 0..5 {
        assert_eq!(b.sign_in("dana", "guess").await.0, 401);
    }
    let (s, html, _) = b.sign_in("dana", PASSWORD).await;
    assert_eq!(s, 429, "even the right password, until the window passes");
    assert!(html.contains("Too many failed sign-ins"));
    assert!(b.cookie.is_none());
}

#[tokio::test]
async fn the_inbox_lists_referrals_and_the_referral_page_shows_the_form_and_its_warnings() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let b = signed_in(&app).await;
    let (s, html, _) = b.get("/console").await;
    assert_eq!(s, 200);
    assert!(html.contains("Smithers, Jane"), "the patient's name");
    assert!(html.contains("Gem City Home Care"));
    assert!(html.contains(&format!("/console/referrals/{EXAMPLE_ID}")));
    let (_, empty, _) = b.get("/console?status=denied").await;
    assert!(empty.contains("No referral requests."));

    let (s, html, _) = b.get(&format!("/console/referrals/{EXAMPLE_ID}")).await;
    assert_eq!(s, 200);
    assert!(html.contains("The form as the agency filled it"));
    assert!(html.contains("Physician NPI"), "a field with its warning");
    assert!(html.contains("Approve and send"));
    assert!(
        html.contains(r#"for="authorizations-0--start_date""#),
        "labelled inputs"
    );
}

#[tokio::test]
async fn an_approval_with_a_problem_shows_it_at_its_field_then_goes_through_corrected() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    let b = signed_in(&app).await;
    let page = format!("/console/referrals/{EXAMPLE_ID}");
    let csrf = b.csrf(&page).await;
    let start = (chrono::Utc::now().date_naive() + chrono::Duration::days(3)).to_string();
    let end = (chrono::Utc::now().date_naive() + chrono::Duration::days(60)).to_string();
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("service.name", "Physical Therapy"),
        ("service.service_code", "Physical Therapy"),
        ("service.funder", "Blue Cross Blue Shield"),
        ("authorizations[0].start_date", &start),
        ("authorizations[0].end_date", &end),
        ("authorizations[0].rule_type", "MINUTES"),
        ("authorizations[0].rule_weekly", "2"),
        ("referral.care_type", "nursing"),
        ("referral.referral_type", "service"),
    ];
    let (s, html, _) = b.post(&format!("{page}/approve"), &form).await;
    assert_eq!(s, 400);
    assert!(html.contains("The approval was not recorded"));
    let at = html
        .find(r#"id="authorizations-0--rule_type-error""#)
        .expect("the problem at its field");
    assert!(html[at..].contains("must be HOURS or VISITS"));
    assert!(
        html.contains(r#"value="Physical Therapy""#),
        "what was typed is kept"
    );
    let status = app
        .store
        .get_referral(refbridge_domain::RequestId::parse(EXAMPLE_ID).unwrap())
        .await
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(status.as_str(), "received", "nothing recorded");

    form[6] = ("authorizations[0].rule_type", "VISITS");
    let (s, _, to) = b.post(&format!("{page}/approve"), &form).await;
    assert_eq!((s, to.as_deref()), (303, Some(page.as_str())));
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(d["status"], "approved");
    assert_eq!(
        d["send"]["terms"]["authorizations"][0]["rule_type"],
        "VISITS"
    );
    assert_eq!(d["send"]["approved_by"], "dana", "the person is the actor");
}

#[tokio::test]
async fn a_form_posted_without_its_csrf_token_is_refused() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    let b = signed_in(&app).await;
    let page = format!("/console/referrals/{EXAMPLE_ID}");
    for token in [None, Some("forged")] {
        let mut form = vec![("reason", "duplicate referral")];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        let (s, html, _) = b.post(&format!("{page}/deny"), &form).await;
        assert_eq!(s, 403, "{token:?}");
        assert!(html.contains("did not come from this console"));
    }
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(d["status"], "received");

    let csrf = b.csrf(&page).await;
    let (s, _, _) = b
        .post(
            &format!("{page}/deny"),
            &[("csrf", &csrf), ("reason", "duplicate referral")],
        )
        .await;
    assert_eq!(s, 303);
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(d["status"], "denied");
}

#[tokio::test]
async fn a_session_ends_after_the_idle_timeout_and_on_sign_out() {
    let app = spawn_app_with(ApiConfig {
        console: ConsoleSettings {
            limits: SessionLimits {
                idle: Duration::from_millis(1500),
                absolute: Duration::from_secs(3600),
            },
            secure_cookies: false,
        },
        ..ApiConfig::default()
    })
    .await;
    let b = signed_in(&app).await;
    assert_eq!(b.get("/console").await.0, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(b.get("/console").await.0, 200, "activity keeps it alive");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(b.get("/console").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (s, _, to) = b.get("/console").await;
    assert_eq!(
        (s, to.as_deref()),
        (303, Some("/console/login")),
        "idle too long"
    );

    let mut b = Browser::new(&app);
    b.sign_in("dana", PASSWORD).await;
    let csrf = b.csrf("/console").await;
    let (s, _, to) = b.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!((s, to.as_deref()), (303, Some("/console/login")));
    assert_eq!(
        b.get("/console").await.0,
        303,
        "the old cookie no longer works"
    );
}

#[tokio::test]
async fn a_disabled_user_is_signed_out_and_an_operator_does_not_see_referrals() {
    let app = spawn_app().await;
    let b = signed_in(&app).await;
    app.store.disable_user("dana").await.unwrap();
    assert_eq!(b.get("/console").await.0, 303);
    let mut again = Browser::new(&app);
    assert_eq!(again.sign_in("dana", PASSWORD).await.0, 401);

    with_user(&app, "oncall", Role::Operator).await;
    let mut ops = Browser::new(&app);
    assert_eq!(ops.sign_in("oncall", PASSWORD).await.0, 303);
    let (s, html, _) = ops.get("/console").await;
    assert_eq!(s, 403);
    assert!(html.contains("Not for your role"));
}

/// Approves referral `id` through the API and stops its send at its first step, as a worker
/// would after `reason`.
async fn paused(app: &TestApp, id: &str, client_id: i64, reason: &str) {
    let mut p = example();
    p["request_id"] = serde_json::json!(id);
    p["client"]["id"] = serde_json::json!(client_id);
    p["client"]["last_name"] = serde_json::json!(format!("Patient{client_id}"));
    assert_eq!(app.post_referral(&p).await.status(), 200);
    let today = chrono::Utc::now().date_naive();
    let terms = serde_json::json!({
        "service": { "name": "Physical Therapy", "service_code_name": "PT", "funder_name": "BCBS" },
        "authorizations": [{ "start_date": (today + chrono::Duration::days(3)).to_string(),
            "end_date": (today + chrono::Duration::days(60)).to_string(),
            "rule_type": "VISITS", "rule_weekly": 2 }]
    });
    let res = app
        .client
        .post(format!("{}/v1/referral-requests/{id}/approval", app.base))
        .bearer_auth(&app.reviewer_token)
        .json(&terms)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let lease = app
        .store
        .claim_send_job("worker", Duration::from_secs(30), "worker")
        .await
        .unwrap()
        .expect("the send is due");
    app.store
        .step_failed(
            &lease,
            0,
            reason,
            refbridge_domain::event::AttentionReason::Rejected,
            "worker",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn needs_attention_lists_paused_sends_by_cause_without_personal_data_and_resumes_a_cause() {
    let app = spawn_app().await;
    let storm = "gave up after 12 attempts; last error: ACCloud is unavailable (503)";
    paused(&app, "00000000-0000-4000-8000-000000000101", 3101, storm).await;
    paused(&app, "00000000-0000-4000-8000-000000000102", 3102, storm).await;
    paused(
        &app,
        "00000000-0000-4000-8000-000000000103",
        3103,
        "ACCloud has no funder named BCBS",
    )
    .await;

    with_user(&app, "oncall", Role::Operator).await;
    let mut b = Browser::new(&app);
    assert_eq!(b.sign_in("oncall", PASSWORD).await.0, 303);
    let (s, html, _) = b.get("/console/attention").await;
    assert_eq!(s, 200);
    assert!(
        html.contains(&format!("2 paused: {storm}")),
        "grouped by cause"
    );
    assert!(html.contains("1 paused: ACCloud has no funder named BCBS"));
    assert!(html.contains("00000000-0000-4000-8000-000000000101"));
    assert!(
        !html.contains("Patient3101") && !html.contains("Jane"),
        "no personal data"
    );
    assert!(
        !html.contains("/console/referrals/"),
        "an operator gets no link to the referral"
    );

    let csrf = b.csrf("/console/attention").await;
    let (s, _, _) = b
        .post(
            "/console/attention/resume",
            &[("csrf", &csrf), ("cause", storm)],
        )
        .await;
    assert_eq!(s, 400, "unconfirmed");
    let (s, html, _) = b
        .post(
            "/console/attention/resume",
            &[("csrf", &csrf), ("cause", storm), ("confirm", "yes")],
        )
        .await;
    assert_eq!(s, 200);
    assert!(html.contains("2 of 2 sends resumed"), "{html}");
    for (id, status) in [
        ("101", "sending"),
        ("102", "sending"),
        ("103", "needs_attention"),
    ] {
        let d = app
            .get_json(&format!(
                "/v1/referral-requests/00000000-0000-4000-8000-000000000{id}"
            ))
            .await;
        assert_eq!(d["status"], status, "{id}");
    }
    let (_, html, _) = b.get("/console/attention").await;
    assert!(!html.contains(storm) && html.contains("no funder named BCBS"));
}

#[tokio::test]
async fn every_read_of_personal_data_is_logged_and_admins_see_it() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    assert_eq!(
        app.get(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
            .await
            .status(),
        200
    );
    let b = signed_in(&app).await;
    assert_eq!(
        b.get(&format!("/console/referrals/{EXAMPLE_ID}")).await.0,
        200
    );

    let (s, _) = crate::helpers::status_json(app.get("/v1/audit/access").await).await;
    assert_eq!(s, 403, "for admins only");
    let admin = |path: String| {
        let app = &app;
        async move {
            app.client
                .get(format!("{}{path}", app.base))
                .bearer_auth(&app.admin_token)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let log = admin(format!("/v1/audit/access?request_id={EXAMPLE_ID}")).await;
    let seen: Vec<(String, String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["via"].as_str().unwrap().to_owned(),
                e["what"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "dana".to_owned(),
                "console".to_owned(),
                "referral".to_owned()
            ),
            (
                "reviewer-1".to_owned(),
                "api".to_owned(),
                "referral".to_owned()
            ),
        ],
        "newest first"
    );
    assert!(log["items"][0]["patient_id"].is_string());
    let first = admin("/v1/audit/access?limit=1".into()).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().expect("more to page");
    let second = admin(format!("/v1/audit/access?limit=1&cursor={cursor}")).await;
    assert_ne!(second["items"][0]["at"], first["items"][0]["at"]);

    with_user(&app, "lee", Role::Admin).await;
    let mut lee = Browser::new(&app);
    lee.sign_in("lee", PASSWORD).await;
    let (_, html, _) = lee.get(&format!("/console/referrals/{EXAMPLE_ID}")).await;
    let at = html.find("Viewed by").expect("admins see who viewed it");
    assert!(html[at..].contains("dana") && html[at..].contains("reviewer-1"));
    let (_, html, _) = b.get(&format!("/console/referrals/{EXAMPLE_ID}")).await;
    assert!(!html.contains("Viewed by"), "reviewers do not");
}

#[tokio::test]
async fn the_inbox_finds_a_referral_by_name_request_id_client_id_or_member_number() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    let mut other = example();
    other["request_id"] = serde_json::json!("00000000-0000-4000-8000-000000000201");
    other["client"]["id"] = serde_json::json!(4201);
    other["client"]["first_name"] = serde_json::json!("Robin");
    other["client"]["last_name"] = serde_json::json!("Alvarez");
    app.post_referral(&other).await;
    let b = signed_in(&app).await;
    let client_id = example()["client"]["id"].to_string();
    for (q, smithers, alvarez) in [
        ("smithers", true, false),
        ("Smithers, Jane", true, false),
        ("jan smi", true, false),
        ("ALVAREZ", false, true),
        (EXAMPLE_ID, true, false),
        ("00000000-0000-4000-8000-000000000201", false, true),
        (client_id.as_str(), true, false),
        ("4201", false, true),
        ("nobody", false, false),
        ("50%_", false, false),
    ] {
        let (s, html, _) = b
            .get(&format!(
                "/console?q={}",
                q.replace(' ', "+").replace('%', "%25").replace(',', "%2C")
            ))
            .await;
        assert_eq!(s, 200, "{q}");
        assert_eq!(html.contains("Smithers, Jane"), smithers, "{q}");
        assert_eq!(html.contains("Alvarez, Robin"), alvarez, "{q}");
    }
    // The plans intake made from the form's insurances: by member (subscriber) number.
    // The fixture's "Primary subscriber ID".
    let member = "1111111";
    let (_, html, _) = b.get(&format!("/console?q={member}")).await;
    assert!(
        html.contains("Smithers, Jane") && html.contains("Alvarez, Robin"),
        "both share it"
    );
}

#[tokio::test]
async fn the_operations_page_shows_the_queue_and_the_day_to_operators_not_reviewers() {
    let app = spawn_app_with(ApiConfig {
        simulated_accloud: true,
        accloud_target: "the built-in simulator".into(),
        ..ApiConfig::default()
    })
    .await;
    paused(
        &app,
        "00000000-0000-4000-8000-000000000301",
        3301,
        "ACCloud has no funder named X",
    )
    .await;
    let reviewer = signed_in(&app).await;
    let (s, html, _) = reviewer.get("/console/ops").await;
    assert_eq!(s, 403, "reviewers are refused the operations page");
    assert!(html.contains("Not for your role"));
    assert!(
        html.contains("nothing reaches ACCloud"),
        "the simulator banner on every page"
    );

    with_user(&app, "oncall", Role::Operator).await;
    let mut ops = Browser::new(&app);
    ops.sign_in("oncall", PASSWORD).await;
    let (s, html, _) = ops.get("/console/ops").await;
    assert_eq!(s, 200);
    assert!(html.contains("Sends waiting"));
    assert!(
        html.contains("Sends that stopped for attention: 1 in the last 24 hours"),
        "{html}"
    );
    assert!(html.contains("Referrals sent: 0 in the last 24 hours"));
    assert!(html.contains("the built-in simulator"));
    assert!(html.contains("SQLite") || html.contains("PostgreSQL"));
    assert!(
        !html.contains("Patient3301") && !html.contains("Jane"),
        "no personal data"
    );
}

#[tokio::test]
async fn the_inbox_filters_by_agency_and_received_day() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    let mut other = example();
    other["request_id"] = serde_json::json!("00000000-0000-4000-8000-000000000401");
    other["client"]["id"] = serde_json::json!(4401);
    other["client"]["last_name"] = serde_json::json!("Okafor");
    other["agency"]["name"] = serde_json::json!("River Valley Nursing");
    other["agency"]["alayamarket_org_id"] =
        serde_json::json!("11111111-2222-4333-8444-555555555555");
    assert_eq!(app.post_referral(&other).await.status(), 200);
    let b = signed_in(&app).await;
    let (_, html, _) = b.get("/console").await;
    assert!(
        html.contains(">River Valley Nursing</option>"),
        "agencies to choose from"
    );
    let (_, html, _) = b
        .get("/console?agency=11111111-2222-4333-8444-555555555555")
        .await;
    assert!(html.contains("Okafor") && !html.contains("Smithers"));
    let today = chrono::Utc::now().date_naive();
    let (_, html, _) = b.get(&format!("/console?from={today}&to={today}")).await;
    assert!(html.contains("Okafor") && html.contains("Smithers"));
    let yesterday = today.pred_opt().unwrap();
    let (_, html, _) = b.get(&format!("/console?to={yesterday}")).await;
    assert!(html.contains("No referral requests."));
}

#[tokio::test]
async fn a_patients_page_shows_their_plans_and_payors_are_mapped_unmapped_first() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    let b = signed_in(&app).await;
    let (_, html, _) = b.get(&format!("/console/referrals/{EXAMPLE_ID}")).await;
    let at = html
        .find("/console/patients/")
        .expect("the patient is linked");
    let path: String = html[at..].chars().take_while(|c| *c != '"').collect();
    let (s, html, _) = b.get(&path).await;
    assert_eq!(s, 200);
    assert!(html.contains("Smithers, Jane"));
    assert!(
        html.contains("1111111"),
        "the plan intake made, with its member number"
    );
    assert!(html.contains("ABC Insurers"));

    let (s, html, _) = b.get("/console/payors").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("not mapped"),
        "intake's payors start unmapped"
    );
    let csrf = b.csrf("/console/payors").await;
    let payors = app.store.list_payors(false).await.unwrap();
    let abc = payors
        .iter()
        .find(|p| p.name == "ABC Insurers")
        .expect("ABC Insurers");
    let field = format!("funder-{}", abc.id);
    let (s, _, to) = b
        .post(
            "/console/payors",
            &[
                ("csrf", &csrf),
                ("name", "ABC Insurers"),
                (&field, "Blue Cross Blue Shield"),
            ],
        )
        .await;
    assert_eq!((s, to.as_deref()), (303, Some("/console/payors")));
    let mapped = app.store.get_payor(abc.id).await.unwrap().unwrap();
    assert_eq!(
        mapped.accloud_funder_name.as_deref(),
        Some("Blue Cross Blue Shield")
    );
    assert!(!mapped.unmapped);
    let (s, _, _) = b
        .post(
            "/console/payors",
            &[("name", "ABC Insurers"), (&field, "42")],
        )
        .await;
    assert_eq!(s, 403, "CSRF");
}

#[tokio::test]
async fn files_download_or_show_inline_and_each_read_is_logged() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let file_id = d["files"][0]["id"].as_str().unwrap().to_owned();
    let b = signed_in(&app).await;
    let (_, html, _) = b.get(&format!("/console/referrals/{EXAMPLE_ID}")).await;
    let path = format!("/console/referrals/{EXAMPLE_ID}/files/{file_id}");
    assert!(html.contains(&path), "the file is linked");
    assert!(
        html.contains(&format!("{path}?view=inline")),
        "an image has a preview"
    );
    for (query, disposition) in [("", "attachment;"), ("?view=inline", "inline;")] {
        let res = b
            .http
            .get(format!("{}{path}{query}", app.base))
            .header("cookie", b.cookie.clone().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let cd = res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cd.starts_with(disposition), "{cd}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        assert!(!res.bytes().await.unwrap().is_empty());
    }
    let reads = app
        .store
        .phi_access(&refbridge_storage::AccessFilter {
            request_id: Some(refbridge_domain::RequestId::parse(EXAMPLE_ID).unwrap()),
            before: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(
        reads
            .iter()
            .filter(|r| r.what == "file" && r.via == "console" && r.actor == "dana")
            .count(),
        2
    );
    let (s, _, to) = Browser::new(&app).get(&path).await;
    assert_eq!((s, to.as_deref()), (303, Some("/console/login")));
}

#[tokio::test]
async fn a_paused_send_resumes_from_the_page_with_corrected_terms() {
    let app = spawn_app().await;
    let id = "00000000-0000-4000-8000-000000000501";
    paused(&app, id, 3501, "ACCloud has no funder named BCBS").await;
    let b = signed_in(&app).await;
    let page = format!("/console/referrals/{id}");
    let (_, html, _) = b.get(&page).await;
    assert!(html.contains("Resume with corrected terms"));
    assert!(
        html.contains(r#"value="BCBS""#),
        "prefilled with the approved terms"
    );
    let csrf = b.csrf(&page).await;
    let today = chrono::Utc::now().date_naive();
    let (start, end) = (
        (today + chrono::Duration::days(3)).to_string(),
        (today + chrono::Duration::days(60)).to_string(),
    );
    let form = [
        ("csrf", csrf.as_str()),
        ("corrected", "yes"),
        ("service.name", "Physical Therapy"),
        ("service.service_code", "PT"),
        ("service.funder", "Blue Cross Blue Shield"),
        ("authorizations[0].start_date", &start),
        ("authorizations[0].end_date", &end),
        ("authorizations[0].rule_type", "VISITS"),
        ("authorizations[0].rule_weekly", "2"),
        ("referral.care_type", "nursing"),
        ("referral.referral_type", "service"),
    ];
    let (s, _, to) = b.post(&format!("{page}/resume"), &form).await;
    assert_eq!((s, to.as_deref()), (303, Some(page.as_str())));
    let d = app.get_json(&format!("/v1/referral-requests/{id}")).await;
    assert_eq!(d["status"], "sending");
    assert_eq!(
        d["send"]["terms"]["service"]["funder"]["name"],
        "Blue Cross Blue Shield"
    );
}

#[tokio::test]
async fn the_forms_offer_the_funders_and_service_codes_accloud_listed() {
    let app = spawn_app().await;
    app.post_referral(&example()).await;
    app.store
        .replace_accloud_names(
            refbridge_storage::FUNDERS,
            &[
                (9, "Blue Cross Blue Shield".into()),
                (10, "Medicaid".into()),
            ],
        )
        .await
        .unwrap();
    app.store
        .replace_accloud_names(
            refbridge_storage::SERVICE_CODES,
            &[(48, "Physical Therapy".into())],
        )
        .await
        .unwrap();
    let b = signed_in(&app).await;
    let (_, html, _) = b.get(&format!("/console/referrals/{EXAMPLE_ID}")).await;
    assert!(html.contains(r#"<datalist id="accloud-funders"><option value="Blue Cross Blue Shield"></option><option value="Medicaid"></option></datalist>"#), "{html}");
    assert!(html.contains(r#"<option value="Physical Therapy">"#));
    assert!(
        html.contains(r#"list="accloud-funders""#),
        "the funder field offers them"
    );
    let (_, html, _) = b.get("/console/payors").await;
    assert!(
        html.contains(r#"<option value="Medicaid">"#),
        "the payor form offers them too"
    );
}

#[tokio::test]
async fn hostile_sign_in_names_and_searches_are_never_a_5xx() {
    let app = spawn_app().await;
    let mut b = signed_in(&app).await;
    let long = "ü".repeat(5000);
    for q in ["a\0b", "\u{1b}[31m", long.as_str(), "%_\\'", "\0"] {
        let url = reqwest::Url::parse_with_params("http://x/console", &[("q", q)]).unwrap();
        let path = format!("/console?{}", url.query().unwrap());
        let (s, html, _) = b.get(&path).await;
        assert_eq!(s, 200, "search {q:?}: {html}");
    }
    let mut stranger = Browser::new(&app);
    for name in ["a\0b", "\u{7}", long.as_str(), "dana\0"] {
        let (s, _, _) = stranger.sign_in(name, "guess").await;
        assert_eq!(s, 401, "sign-in as {name:?}");
    }
    // The names that failed were recorded in a form the index holds; dana can still sign in
    // after one failure under a name that cleans to hers.
    let (s, _, _) = b.sign_in("dana", PASSWORD).await;
    assert_eq!(s, 303);
}

#[tokio::test]
async fn admins_see_the_webhook_endpoints_their_failures_and_replay_with_the_form() {
    let app = spawn_app().await;
    let (endpoint, _) = app
        .store
        .put_webhook_endpoint("https://cpr.example.com/hooks", None, "whsec_AAAA", "ops")
        .await
        .unwrap();
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    app.store.sequence_events().await.unwrap();
    // One failed attempt, after which the endpoint has failed "too long" (0 s allowed).
    let claim = app
        .store
        .claim_webhook_delivery("w", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a delivery");
    let after = app
        .store
        .webhook_failed(
            &claim,
            &refbridge_storage::AttemptResult {
                outcome: "http_error",
                status: Some(500),
                latency: Duration::from_millis(12),
                response_head: Some("receiver down".into()),
                error: Some("the receiver answered 500".into()),
            },
            chrono::Utc::now(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(after, refbridge_storage::AfterFailure::EndpointDisabled);

    let reviewer = signed_in(&app).await;
    let (s, _, _) = reviewer.get("/console/webhooks").await;
    assert_eq!(s, 403, "admins only");

    with_user(&app, "lee", Role::Admin).await;
    let mut admin = Browser::new(&app);
    admin.sign_in("lee", PASSWORD).await;
    let (s, html, _) = admin.get("/console/webhooks").await;
    assert_eq!(s, 200);
    assert!(html.contains("https://cpr.example.com/hooks"));
    assert!(
        html.contains("Disabled") && html.contains("failing for too long"),
        "{html}"
    );
    assert!(html.contains("the receiver answered 500") && html.contains("12 ms"));
    assert!(html.contains(&claim.event.id));
    assert!(
        !html.contains("Smithers") && !html.contains("whsec_"),
        "no personal data, no secret"
    );

    let (s, html, _) = admin.get("/console/ops").await;
    assert_eq!(s, 200);
    assert!(html.contains("1 disabled, 0 failing"), "{html}");
    assert!(html.contains("href=\"/console/webhooks\""));

    let path = format!("/console/webhooks/{}/replay", endpoint.id);
    let (s, html, _) = admin
        .post(
            &path,
            &[("csrf", "forged"), ("since", "2020-01-01T00:00:00Z")],
        )
        .await;
    assert_eq!(s, 403, "{html}");
    let csrf = admin.csrf("/console/webhooks").await;
    let (s, html, _) = admin
        .post(&path, &[("csrf", &csrf), ("since", "yesterday")])
        .await;
    assert_eq!(s, 400);
    assert!(html.contains("since must be an RFC 3339 time"));
    let (s, html, _) = admin
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("event_id", ""),
                ("since", "2020-01-01T00:00:00Z"),
            ],
        )
        .await;
    assert_eq!(s, 200);
    let total = app.store.events_after(Some(0), &[], 1000).await.unwrap();
    let refbridge_storage::FeedRead::Page(total) = total else {
        panic!("nothing is pruned here");
    };
    let total = total.events.len();
    assert!(
        html.contains(&format!("{total} deliveries queued.")),
        "{html}"
    );

    let (s, _, _) = admin
        .post(
            &format!("/console/webhooks/{}/enable", endpoint.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(s, 200);
    let ep = app
        .store
        .get_webhook_endpoint(&endpoint.id)
        .await
        .unwrap()
        .unwrap();
    assert!(ep.enabled && ep.failing_since.is_none());
}
