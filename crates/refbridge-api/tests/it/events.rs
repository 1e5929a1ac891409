//! The event feed: an event per change (none on a replay), in commit order, paged by a
//! cursor, filtered by type, long-polled.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{EXAMPLE_ID, TestApp, example, spawn_app, status_json};

async fn feed(app: &TestApp, query: &str) -> Value {
    app.get_json(&format!("/v1/events?{query}")).await
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn post_as(app: &TestApp, id: &str) {
    let mut doc = example();
    doc["request_id"] = json!(id);
    assert_eq!(app.post_referral(&doc).await.status(), 200);
}

#[tokio::test]
async fn intake_writes_one_event_and_a_replay_or_a_conflict_writes_none() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let page = feed(&app, "types=referral_request.received").await;
    assert_eq!(types(&page), vec!["referral_request.received"]);
    let e = &page["items"][0];
    assert_eq!(e["request_id"], EXAMPLE_ID);
    let detail = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(e["patient_id"], detail["patient"]["id"], "{detail:#}");
    assert_eq!(e["data"]["status"], "received");
    assert!(e["id"].as_str().unwrap().len() == 36);
    assert_eq!(
        e["position"].as_i64().unwrap(),
        1 + page_position_offset(&app).await
    );

    // The same document again: replayed, no event. Another document under the id: 409, none.
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let mut other = example();
    other["client"]["first_name"] = json!("Janet");
    assert_eq!(app.post_referral(&other).await.status(), 409);
    let page = feed(&app, "types=referral_request.received").await;
    assert_eq!(types(&page).len(), 1, "{page:#}");
}

/// Events of other types written before the first `received` (the payors intake created).
async fn page_position_offset(app: &TestApp) -> i64 {
    let all = feed(app, "").await;
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|e| e["type"] != "referral_request.received")
        .count() as i64
}

#[tokio::test]
async fn a_denial_writes_an_event_with_ids_and_statuses_only() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let res = app
        .deny(EXAMPLE_ID, &json!({"reason": "Jane Smithers is not ours"}))
        .await;
    assert_eq!(res.status(), 200);
    let page = feed(&app, "").await;
    let all = types(&page);
    assert!(all.contains(&"payor.unmapped".to_owned()), "{all:?}");
    assert_eq!(
        all.iter()
            .filter(|t| t.starts_with("referral_request."))
            .collect::<Vec<_>>(),
        vec!["referral_request.received", "referral_request.denied"]
    );
    let denied = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "referral_request.denied")
        .unwrap();
    assert_eq!(
        denied["data"],
        json!({"from": "received", "status": "denied"})
    );
    // No personal data anywhere in the feed: not the patient's name, birthday, nor the
    // reviewer's words.
    let text = page.to_string();
    for phi in ["Smithers", "Jane", "1950", "not ours"] {
        assert!(!text.contains(phi), "{phi} in {text}");
    }
}

#[tokio::test]
async fn the_cursor_pages_through_every_event_once_and_types_filter() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..4)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    for id in &ids {
        post_as(&app, id).await;
    }
    app.deny(&ids[1], &json!({"reason": "duplicate"})).await;
    let all = feed(&app, "limit=1000").await;
    let all_ids: Vec<Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let positions: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|p| p[1] == p[0] + 1),
        "{positions:?}"
    );

    // Page by two: the same events in the same order, each once.
    let (mut cursor, mut paged) = ("0".to_owned(), Vec::new());
    loop {
        let page = feed(&app, &format!("limit=2&after={cursor}")).await;
        let items = page["items"].as_array().unwrap();
        paged.extend(items.iter().map(|e| e["id"].clone()));
        cursor = page["next_cursor"].as_str().unwrap().to_owned();
        if items.is_empty() {
            break;
        }
    }
    assert_eq!(paged, all_ids);
    assert_eq!(cursor, all["next_cursor"].as_str().unwrap());

    // Filtered: only those types, in order; the cursor moves past the others.
    let page = feed(
        &app,
        "types=referral_request.denied,referral_request.received&limit=1000",
    )
    .await;
    let got = types(&page);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[4], "referral_request.denied");
    assert_eq!(page["next_cursor"], all["next_cursor"]);
    let denied = feed(&app, "types=referral_request.denied").await;
    assert_eq!(denied["items"][0]["request_id"], json!(ids[1]));
    // After the end: nothing, the same cursor.
    let end = feed(&app, &format!("after={cursor}")).await;
    assert_eq!(end["items"], json!([]));
    assert_eq!(end["next_cursor"], json!(cursor));
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_an_event_arrives() {
    let app = spawn_app().await;
    let start = feed(&app, "").await;
    let cursor = start["next_cursor"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    let empty = feed(&app, &format!("after={cursor}&wait=0")).await;
    assert_eq!(empty["items"], json!([]));
    assert!(t0.elapsed() < Duration::from_secs(2));

    let url = format!(
        "{}/v1/events?after={cursor}&wait=20&types=referral_request.received",
        app.base
    );
    let poll = {
        let client = app.client.clone();
        let token = app.reviewer_token.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let res = client.get(url).bearer_auth(token).send().await.unwrap();
            (t.elapsed(), res.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!poll.is_finished(), "the poll waits while nothing happens");
    let posted = Instant::now();
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let (waited, page) = poll.await.unwrap();
    let after_post = posted.elapsed();
    assert_eq!(types(&page), vec!["referral_request.received"]);
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    assert!(after_post < Duration::from_secs(3), "{after_post:?}");
    println!("long poll answered {after_post:?} after the intake began");
}

#[tokio::test]
async fn bad_feed_parameters_are_400s_naming_the_field_and_intake_may_not_read() {
    let app = spawn_app().await;
    for (query, field) in [
        ("after=abc", "after"),
        ("after=", "after"),
        ("types=", "types"),
        ("after=-1", "after"),
        ("types=send.completed,bogus", "types[1]"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("wait=31", "wait"),
        ("wait=soon", "wait"),
    ] {
        let (status, body) = status_json(app.get(&format!("/v1/events?{query}")).await).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().starts_with(field),
            "{query}: {body}"
        );
    }
    let res = app
        .client
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(&app.intake_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .get(format!("{}/v1/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_long_poll_is_held_no_longer_than_the_deployment_allows() {
    let app = crate::helpers::spawn_app_with(refbridge_api::ApiConfig {
        events_max_wait: std::time::Duration::from_millis(500),
        ..refbridge_api::ApiConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (status, body) = status_json(app.get("/v1/events?after=0&wait=20").await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["items"].as_array().unwrap().is_empty());
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(450) && took < std::time::Duration::from_secs(5),
        "answered after {took:?}, not after the 20 s asked"
    );
}

/// Retention removed events: a cursor before them is told so (410, naming `after`, the first
/// position kept and the setting) at once, even when it would wait; the feed goes on from
/// the mark, numbering after it; the document states the answer.
#[tokio::test]
async fn a_cursor_before_what_retention_removed_is_410_and_the_document_says_so() {
    let app = spawn_app().await;
    post_as(&app, "00000000-0000-4000-8000-000000000001").await;
    let first = feed(&app, "").await;
    let head: i64 = first["next_cursor"].as_str().unwrap().parse().unwrap();
    assert!(head >= 1, "{first}");
    let everything = refbridge_storage::RetentionPolicy {
        events: Some(Duration::ZERO),
        ..refbridge_storage::RetentionPolicy::default()
    };
    let report = app
        .store
        .prune(&app.files, &everything, false)
        .await
        .unwrap();
    assert_eq!(
        (report.events, report.events_through),
        (head as u64, Some(head))
    );

    let t0 = Instant::now();
    let (status, body) = status_json(app.get("/v1/events?after=0&wait=5").await).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "answered at once");
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"], "gone");
    assert_eq!(body["details"][0]["path"], "after");
    assert_eq!(body["resume_after"], json!(head.to_string()));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("before position {}", head + 1))
            && message.contains("retention.event_days = 0"),
        "{message}"
    );

    // From the mark, and without a cursor: whole, empty; the next event comes after the mark.
    let page = feed(&app, &format!("after={head}")).await;
    assert_eq!(
        (page["items"].clone(), page["next_cursor"].clone()),
        (json!([]), json!(head.to_string()))
    );
    assert_eq!(feed(&app, "").await["next_cursor"], json!(head.to_string()));
    post_as(&app, "00000000-0000-4000-8000-000000000002").await;
    let page = feed(
        &app,
        &format!("after={head}&types=referral_request.received"),
    )
    .await;
    assert!(
        page["items"][0]["position"].as_i64().unwrap() > head,
        "{page}"
    );
    assert_eq!(
        feed(&app, "types=referral_request.received").await["items"],
        page["items"]
    );

    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gone = &doc["paths"]["/v1/events"]["get"]["responses"]["410"];
    assert!(
        gone["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/ErrorBody")),
        "{gone}"
    );
    assert!(
        gone["description"]
            .as_str()
            .unwrap()
            .contains("retention.event_days"),
        "{gone}"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"]["properties"]["resume_after"].is_object());
}
