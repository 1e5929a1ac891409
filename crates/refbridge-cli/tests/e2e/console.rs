//! The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, which
//! `scripts/test.sh` installs), with axe-core's accessibility check on every page it opens:
//! sign in, find a referral by the patient's name, approve it with one field corrected after
//! the first submit shows its problem inline, and watch the timeline reach sent.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use refbridge_domain::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const ID: &str = "0e1d5e34-63d7-4bb2-8e22-9376943ab56f";
const PASSWORD: &str = "correct horse battery";

/// chromedriver and its browser, ended with the test.
struct Browser {
    driver: Child,
    client: Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

async fn browser() -> Browser {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (scripts/test.sh installs Debian's chromium and chromium-driver)");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"] }),
    );
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return Browser { driver, client },
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a browser session: {e}"),
        }
    }
}

/// axe-core's script (`AXE_CORE_JS`, or where scripts/test.sh installs it).
fn axe_source() -> String {
    let path = std::env::var("AXE_CORE_JS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/browser-deps/node_modules/axe-core/axe.min.js"
        )
        .to_owned()
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("axe-core at {path} ({e}): run scripts/test.sh, which installs it")
    })
}

/// Runs axe-core on the page: no serious or critical violation.
async fn accessible(c: &Client, axe: &str, page: &str) {
    c.execute(axe, vec![]).await.expect("inject axe-core");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] }).then(r => done(
               r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    assert_eq!(
        found,
        json!([]),
        "{page}: serious or critical accessibility violations"
    );
}

async fn set(c: &Client, name: &str, value: &str) {
    c.execute(
        "document.querySelector(`[name=\"${arguments[0]}\"]`).value = arguments[1];",
        vec![json!(name), json!(value)],
    )
    .await
    .expect("set a field");
}

/// Waits (up to 10 s) for the browser to be on a page whose address ends with `suffix`: a
/// click that submits a form returns before the navigation is over.
async fn on_page(c: &Client, suffix: &str) {
    let started = Instant::now();
    loop {
        let url = c.current_url().await.expect("current url");
        if url.as_str().ends_with(suffix) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still on {url}, expected …{suffix}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 30 s, without reloading: the page follows the send itself) for the referral
/// page to show `status`.
async fn wait_for_status(c: &Client, status: &str) {
    let started = Instant::now();
    let marker = format!("status status-{status}\"");
    loop {
        if source(c).await.contains(&marker) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never {status}: {}",
            source(c).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the page shows `text` (a page still loading under a busy machine has not yet).
async fn wait_for_text(c: &Client, text: &str) {
    let started = Instant::now();
    loop {
        let page = source(c).await;
        if page.contains(text) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never showed {text:?}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn source(c: &Client) -> String {
    c.source().await.expect("page source")
}

async fn submit(c: &Client, form_action_suffix: &str) {
    c.find(Locator::Css(&format!(
        "form[action$=\"{form_action_suffix}\"] button[type=submit]"
    )))
    .await
    .expect("the form's button")
    .click()
    .await
    .expect("click");
}

#[tokio::test]
async fn a_reviewer_approves_in_the_browser_and_watches_the_send() {
    let app: TestApp = spawn_app().await;
    app.post_referral(&app.payload(ID, 1094)).await;
    app.state
        .store
        .create_user(
            "dana",
            Role::Reviewer,
            &refbridge_api::console::session::hash_password(PASSWORD).unwrap(),
        )
        .await
        .unwrap();
    let axe = axe_source();
    let b = browser().await;
    let c = &b.client;

    // Signed out: the sign-in page.
    c.goto(&format!("{}/console", app.base)).await.unwrap();
    on_page(c, "/console/login").await;
    accessible(c, &axe, "sign-in").await;
    c.find(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys("dana")
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    submit(c, "/console/login").await;

    // The inbox: the referral by the patient's name.
    on_page(c, "/console").await;
    accessible(c, &axe, "inbox").await;
    c.find(Locator::LinkText("Smithers, Jane"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = format!("/console/referrals/{ID}");
    on_page(c, &page).await;
    accessible(c, &axe, "referral").await;

    // Approve: dates of our own, and a number that is not one.
    let today = chrono::Utc::now().date_naive();
    set(
        c,
        "authorizations[0].start_date",
        &(today + chrono::Duration::days(7)).to_string(),
    )
    .await;
    set(
        c,
        "authorizations[0].end_date",
        &(today + chrono::Duration::days(67)).to_string(),
    )
    .await;
    set(c, "authorizations[0].rule_weekly", "two").await;
    set(c, "authorizations[0].rule_period", "10").await;
    set(c, "service.funder", "Blue Cross Blue Shield").await;
    submit(c, "/approve").await;
    on_page(c, "/approve").await;
    let html = source(c).await;
    let at = html
        .find("id=\"authorizations-0--rule_weekly-error\"")
        .expect("the problem shown at its field");
    assert!(html[at..].contains("must be a number"));
    accessible(c, &axe, "referral with a problem").await;

    set(c, "authorizations[0].rule_weekly", "2").await;
    submit(c, "/approve").await;
    on_page(c, &page).await;

    // The page follows the send by itself until the timeline reaches sent.
    wait_for_status(c, "sent").await;
    assert!(source(c).await.contains("Send timeline"));
    accessible(c, &axe, "sent referral").await;
    let d: Value = app.detail(ID).await;
    assert_eq!(d["status"], "sent");
    assert_eq!(
        d["send"]["terms"]["authorizations"][0]["limits"]["rule_weekly"],
        2.0
    );

    // Change the end date: first the dry run's plan, then send it.
    let new_end = (today + chrono::Duration::days(90)).to_string();
    set(c, "authorizations[0].end_date", &new_end).await;
    submit(c, "/change").await;
    on_page(c, "/change").await;
    let html = source(c).await;
    assert!(
        html.contains("This change would make these calls"),
        "the plan first"
    );
    assert!(html.contains("PUT /ext/api/v2/scheduler/authorizations/{id}"));
    assert!(html.contains("Authorization end date changed"));
    assert_eq!(
        app.detail(ID).await["send"]["changes"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a dry run records nothing"
    );
    accessible(c, &axe, "change preview").await;
    submit(c, "/change").await;
    on_page(c, &page).await;
    wait_for_status(c, "sent").await;
    let d: Value = app.detail(ID).await;
    assert_eq!(
        d["send"]["terms"]["authorizations"][0]["end_date"],
        new_end.as_str()
    );
    let revisions = app.sim().state().referrals;
    assert_eq!(revisions.iter().filter(|r| r.is_latest_revision).count(), 1);
    assert!(revisions.iter().any(|r| r.revision_number == 2));

    // A document, uploaded from the page.
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("care plan.pdf");
    std::fs::write(&doc, b"%PDF-1.4 care plan from the console").unwrap();
    c.find(Locator::Css("#documents"))
        .await
        .unwrap()
        .send_keys(doc.to_str().unwrap())
        .await
        .unwrap();
    submit(c, "/documents").await;
    // The page was the referral's before: wait for the upload to reach ACCloud itself.
    let started = Instant::now();
    loop {
        let names: Vec<String> = app
            .sim()
            .state()
            .attachments
            .iter()
            .map(|a| a.filename.clone())
            .collect();
        if names.contains(&"care plan.pdf".to_owned()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never uploaded: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    on_page(c, &page).await;
    wait_for_status(c, "sent").await;

    // Cancel, with a reason.
    c.find(Locator::Css("#reason_code"))
        .await
        .unwrap()
        .select_by_value("client_request")
        .await
        .unwrap();
    submit(c, "/cancel").await;
    on_page(c, &page).await;
    wait_for_status(c, "cancelled").await;
    assert_eq!(app.detail(ID).await["status"], "cancelled");
    assert!(app.sim().duplicates().is_empty());

    // The other pages, each checked for accessibility.
    let patient = c
        .find(Locator::Css("a[href^=\"/console/patients/\"]"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("the patient is linked");
    for path in ["/console/attention", "/console/payors", patient.as_str()] {
        c.goto(&format!("{}{path}", app.base)).await.unwrap();
        on_page(c, path).await;
        accessible(c, &axe, path).await;
    }
    // A reviewer is refused the operations page.
    c.goto(&format!("{}/console/ops", app.base)).await.unwrap();
    wait_for_text(c, "Not for your role").await;
    accessible(c, &axe, "refused").await;
    // A form whose CSRF token is gone is refused.
    c.goto(&format!("{}/console/payors", app.base))
        .await
        .unwrap();
    c.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css(
        "form[action=\"/console/payors\"] button[type=submit]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let started = Instant::now();
    while !source(c).await.contains("did not come from this console") {
        assert!(started.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Signing out ends it: the inbox sends the browser to sign in again.
    c.goto(&format!("{}/console", app.base)).await.unwrap();
    on_page(c, "/console").await;
    submit(c, "/console/logout").await;
    on_page(c, "/console/login").await;
    c.goto(&format!("{}/console", app.base)).await.unwrap();
    on_page(c, "/console/login").await;

    // An admin: the webhooks page, with an endpoint whose delivery failed, and the
    // operations page's line about it.
    let store = &app.state.store;
    store
        .put_webhook_endpoint("https://cpr.example.com/hooks", None, "whsec_AAAA", "lee")
        .await
        .unwrap();
    store.sequence_events().await.unwrap();
    let claim = store
        .claim_webhook_delivery("w", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a delivery");
    store
        .webhook_failed(
            &claim,
            &refbridge_storage::AttemptResult {
                outcome: "http_error",
                status: Some(503),
                latency: Duration::from_millis(40),
                response_head: Some("try later".into()),
                error: Some("the receiver answered 503".into()),
            },
            chrono::Utc::now(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    store
        .create_user(
            "lee",
            Role::Admin,
            &refbridge_api::console::session::hash_password(PASSWORD).unwrap(),
        )
        .await
        .unwrap();
    set(c, "username", "lee").await;
    set(c, "password", PASSWORD).await;
    submit(c, "/console/login").await;
    on_page(c, "/console").await;
    c.goto(&format!("{}/console/webhooks", app.base))
        .await
        .unwrap();
    on_page(c, "/console/webhooks").await;
    let html = source(c).await;
    assert!(html.contains("https://cpr.example.com/hooks") && html.contains("Failing"));
    assert!(html.contains("the receiver answered 503"));
    accessible(c, &axe, "webhooks").await;
    c.goto(&format!("{}/console/ops", app.base)).await.unwrap();
    // The page refreshes itself: read it until the line is there (a read during a reload
    // sees no page).
    let started = Instant::now();
    loop {
        let html = source(c).await;
        if html.contains("0 disabled, 1 failing") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the operations page lacks the webhooks line: {html}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    accessible(c, &axe, "operations").await;
    b.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_session_left_idle_ends_and_the_browser_is_sent_to_sign_in() {
    let idle = std::time::Duration::from_secs(2);
    let app = crate::helpers::spawn_app_configured(
        refbridge_accloud_sim::SimConfig::default(),
        false,
        |c| c.console.limits.idle = idle,
    )
    .await;
    app.state
        .store
        .create_user(
            "dana",
            Role::Reviewer,
            &refbridge_api::console::session::hash_password(PASSWORD).unwrap(),
        )
        .await
        .unwrap();
    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/console/login", app.base))
        .await
        .unwrap();
    set(c, "username", "dana").await;
    set(c, "password", PASSWORD).await;
    submit(c, "/console/login").await;
    on_page(c, "/console").await;
    // Still active within the timeout.
    c.goto(&format!("{}/console", app.base)).await.unwrap();
    on_page(c, "/console").await;
    // Left idle for longer: the next page is the sign-in page.
    tokio::time::sleep(idle + std::time::Duration::from_millis(700)).await;
    c.goto(&format!("{}/console", app.base)).await.unwrap();
    on_page(c, "/console/login").await;
    b.client.clone().close().await.unwrap();
}
