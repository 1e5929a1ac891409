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
    for value in PHI {
        assert!(!text.contains(value), "log output contains {value:?}");
    }
}
