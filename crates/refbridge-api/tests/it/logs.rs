use crate::helpers::{EXAMPLE_ID, example, logs, spawn_app};

/// Personal values of the example payload that must never reach a log line.
const PHI: &[&str] = &[
    "Jane",
    "Smithers",
    "1998-05-07",
    "1700 Lyons Road",
    "Dayton",
    "45458",
    "555-123-4567",
    "janesmithers@example.com",
    "Cholera",
    "Diabetes",
    "William Smith",
    "Amy Smith",
    "2003-05-23",
    "AB Insurers grop",
    "XYZ Insurers",
    "Jeremy",
    "555-444-1111",
    "iVBORw0KGgo",
];

#[tokio::test]
async fn an_intake_logs_ids_and_no_personal_data() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    // Error paths log too.
    let mut bad = example();
    bad["client"]["birthday"] = serde_json::json!("Jane's birthday");
    assert_eq!(app.post_referral(&bad).await.status(), 400);
    assert_eq!(
        app.get(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
            .await
            .status(),
        200
    );

    let text = logs();
    assert!(
        text.contains(EXAMPLE_ID),
        "the capture works and logs carry ids"
    );
    assert!(text.contains("referral request received"));
    // Ids, fingerprints and hashes are random hex that can contain a ZIP code
    // or a phone number's digits by chance; personal data is never hex-shaped.
    let scrubbed = without_hex_runs(&text);
    for value in PHI {
        assert!(!scrubbed.contains(value), "log output contains {value:?}");
    }
}

/// `text` with every run of 16 or more hex digits and dashes replaced by `#`.
fn without_hex_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() || c == '-' {
            run.push(c);
            continue;
        }
        if run.chars().filter(char::is_ascii_hexdigit).count() >= 16 {
            out.push('#');
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

#[test]
fn hex_runs_are_scrubbed_and_everything_else_is_kept() {
    assert_eq!(
        without_hex_runs("id=0e1d5e34-63d7-4bb2-8e22-9376943ab56f zip 45458 a-b"),
        "id=# zip 45458 a-b"
    );
}

#[tokio::test]
async fn each_request_writes_one_access_line_at_info_without_query_values() {
    let app = spawn_app().await;
    let marker = "Smithers-in-a-query";
    let res = app
        .get(&format!("/v1/referral-requests?status=received&q={marker}"))
        .await;
    assert!(res.status().as_u16() < 500);
    let text = logs();
    let line = text
        .lines()
        .find(|l| {
            l.contains("INFO")
                && l.contains("finished processing request")
                && l.contains("route=/v1/referral-requests ")
        })
        .unwrap_or_else(|| panic!("no access line in {text}"));
    assert!(line.contains("method=GET"), "{line}");
    assert!(line.contains("status="), "{line}");
    assert!(line.contains("latency="), "{line}");
    assert!(line.contains("request="), "{line}");
    assert!(!text.contains(marker), "a query value reached the log");
}
