//! Every text field of intake and of the PUT endpoints, with text no field may hold, text
//! longer than its documented limit, the longest text it may hold in 4-byte characters (which
//! every index must hold), and arbitrary Unicode: never a 5xx, a 400 naming the field, and the
//! same answer on SQLite and PostgreSQL (a run on PostgreSQL also asks a SQLite app).

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use refbridge_api::ApiConfig;
use refbridge_storage::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, example, spawn_app_on, status_json};
use crate::plans::{new_patient, new_payor};

/// Where a value goes: the endpoint and the JSON path in its body.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A key of the intake body's `client`, `agency` or `form_data`, or of its first field.
    Intake(&'static str, &'static str),
    Patient(&'static str),
    Payor(&'static str),
    Plan(&'static str),
}

/// Every text field, with its limit in characters (all but the label hold one line).
const FIELDS: &[(Target, usize)] = &[
    (Target::Intake("client", "first_name"), 100),
    (Target::Intake("client", "last_name"), 100),
    (Target::Intake("client", "email"), 255),
    (Target::Intake("client", "phone_main"), 255),
    (Target::Intake("client", "gender"), 255),
    (Target::Intake("client", "address"), 255),
    (Target::Intake("client", "city"), 255),
    (Target::Intake("client", "state"), 255),
    (Target::Intake("client", "zip"), 255),
    (Target::Intake("client", "country"), 255),
    (Target::Intake("agency", "name"), 255),
    (Target::Intake("agency", "host"), 255),
    (Target::Intake("form_data", "form_name"), 255),
    (Target::Intake("form_data", "created_by"), 255),
    (Target::Intake("field", "field_label"), 2000),
    (Target::Intake("field", "field_type"), 255),
    (Target::Intake("field", "field_tag"), 255),
    (Target::Patient("source_id"), 255),
    (Target::Patient("first_name"), 100),
    (Target::Patient("last_name"), 100),
    (Target::Patient("email"), 255),
    (Target::Patient("address"), 255),
    (Target::Patient("city"), 255),
    (Target::Payor("name"), 200),
    (Target::Payor("accloud_funder_name"), 200),
    (Target::Plan("source_id"), 255),
    (Target::Plan("member_number"), 80),
    (Target::Plan("group_number"), 80),
];

impl Target {
    /// The JSON path an error names.
    fn path(self) -> String {
        match self {
            Target::Intake("field", k) => format!("form_data.fields[0].{k}"),
            Target::Intake(o, k) => format!("{o}.{k}"),
            Target::Patient(k) | Target::Payor(k) | Target::Plan(k) => k.to_owned(),
        }
    }
}

/// One app and what its plan requests refer to.
struct App {
    app: TestApp,
    patient: String,
    payor: String,
}

async fn app_on(backend: Backend) -> App {
    let app = spawn_app_on(backend, ApiConfig::default()).await;
    let patient = new_patient(&app, "text-fields").await;
    let payor = new_payor(&app, "Text Fields Payor").await;
    App {
        app,
        patient,
        payor,
    }
}

/// Sends `value` in `target`'s field; the status and the error details (paths and messages;
/// ids differ between apps), or `None` for a success.
async fn put(a: &App, target: Target, value: &str, case: usize) -> (u16, Option<Value>) {
    let app = &a.app;
    let (method, path, token, body) = match target {
        Target::Intake(obj, key) => {
            let mut p = example();
            p["request_id"] = json!(uuid::Uuid::from_u128(0xabc0_0000 + case as u128).to_string());
            p["client"]["id"] = json!(90_000 + case as i64);
            if obj == "field" {
                p["form_data"]["fields"][0][key] = json!(value);
            } else {
                p[obj][key] = json!(value);
            }
            (
                reqwest::Method::POST,
                "/referral_request",
                &app.intake_token,
                p,
            )
        }
        Target::Patient(key) => {
            let mut p = json!({"source_id": format!("tf-{case}"), "first_name": "Ana",
                "last_name": format!("Case{case}"), "date_of_birth": "2015-03-02"});
            p[key] = json!(value);
            (reqwest::Method::PUT, "/v1/patients", &app.reviewer_token, p)
        }
        Target::Payor(key) => {
            let mut p = json!({"name": format!("Payor case {case}")});
            p[key] = json!(value);
            (reqwest::Method::PUT, "/v1/payors", &app.reviewer_token, p)
        }
        Target::Plan(key) => {
            let mut p = json!({"patient_id": a.patient, "source_id": format!("tf-plan-{case}"),
                "member_number": format!("M{case:06}"), "payor_entity_id": a.payor,
                "plan_order_number": 1 + (case % 3) as i64});
            p[key] = json!(value);
            (
                reqwest::Method::PUT,
                "/v1/patient-plans",
                &app.reviewer_token,
                p,
            )
        }
    };
    let res = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let (status, b) = status_json(res).await;
    assert!(status < 500, "{target:?} answered {status}: {b}");
    let details = (status >= 400).then(|| b["details"].clone());
    (status, details)
}

/// The problem named for `target`, if the answer is a 400 that names it.
fn problem_of(target: Target, answer: &(u16, Option<Value>)) -> Option<String> {
    let details = answer.1.as_ref()?.as_array()?;
    details
        .iter()
        .find(|d| d["path"] == target.path().as_str())
        .and_then(|d| d["problem"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn each_text_field_refuses_control_characters_and_overlong_text_and_holds_its_longest() {
    let a = app_on(refbridge_storage::test_util::test_backend()).await;
    let mut case = 0;
    for &(target, max) in FIELDS {
        let free = matches!(target, Target::Intake("field", "field_label"));
        let line_break = if free { "\u{1b}[0m" } else { "line\nbreak" };
        for bad in ["a\u{1}b", line_break, "x\u{7f}"] {
            case += 1;
            let answer = put(&a, target, bad, case).await;
            assert_eq!(answer.0, 400, "{target:?} with a control character");
            let problem = problem_of(target, &answer);
            assert_eq!(
                problem.as_deref(),
                Some("must not contain control characters (such as line breaks or tabs)"),
                "{target:?}"
            );
        }
        case += 1;
        let too_long = "é".repeat(max + 1);
        let answer = put(&a, target, &too_long, case).await;
        assert_eq!(answer.0, 400, "{target:?} over {max} characters");
        let problem = problem_of(target, &answer).unwrap_or_default();
        assert!(
            problem.contains(&max.to_string()),
            "{target:?}: {problem:?} names the limit"
        );
        // The longest value, in 4-byte characters: stored and indexed.
        case += 1;
        let longest = "𝔸".repeat(max);
        let answer = put(&a, target, &longest, case).await;
        assert!(answer.0 < 300, "{target:?} at its limit: {answer:?}");
    }
}

/// Arbitrary Unicode strings, some of them long, mixed with the kinds that used to break a
/// backend.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        proptest::collection::vec(any::<char>(), 90..300).prop_map(|c| c.into_iter().collect()),
        Just("\0".to_owned()),
        Just("a\u{0}b".to_owned()),
    ]
}

#[tokio::test]
async fn arbitrary_unicode_in_any_text_field_is_never_a_5xx_and_both_backends_agree() {
    let backend = refbridge_storage::test_util::test_backend();
    let a = app_on(backend).await;
    // On PostgreSQL, a SQLite app is asked the same.
    let b = match backend {
        Backend::Postgres => Some(app_on(Backend::Sqlite).await),
        Backend::Sqlite => None,
    };
    let mut runner = TestRunner::deterministic();
    let strategy = (0..FIELDS.len(), hostile());
    let cases: usize = std::env::var("TEXT_FIELD_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    for case in 0..cases {
        let (i, value) = strategy.new_tree(&mut runner).expect("a case").current();
        let (target, _) = FIELDS[i];
        let here = put(&a, target, &value, 10_000 + case).await;
        if let Some(b) = &b {
            let there = put(b, target, &value, 10_000 + case).await;
            assert_eq!(here, there, "{target:?}: PostgreSQL and SQLite differ");
        }
    }
}
