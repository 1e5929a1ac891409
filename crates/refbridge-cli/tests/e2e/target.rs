//! The ACCloud target is chosen on purpose: `serve` and `worker` refuse to start without one,
//! and a service started against the built-in simulator says so in every log line's fields
//! and in `/readyz`. The real binary, configured by environment as an operator would.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn refbridge(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_refbridge"));
    c.env_remove("REFBRIDGE_CONFIG")
        .env_remove("REFBRIDGE_ACCLOUD__TARGET")
        .env_remove("RUST_LOG")
        .env(
            "REFBRIDGE_DATABASE_URL",
            format!("sqlite://{}", dir.join("t.db").display()),
        )
        .env("REFBRIDGE_FILES_DIR", dir.join("files"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn serve_and_worker_refuse_to_start_until_a_target_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["serve", "worker"] {
        let out = refbridge(dir.path())
            .arg(role)
            .output()
            .expect("run refbridge");
        assert!(!out.status.success(), "{role} started without a target");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no ACCloud target is chosen"), "{role}: {err}");
        assert!(
            err.contains("REFBRIDGE_ACCLOUD__TARGET"),
            "{role}: says how"
        );
    }
}

#[tokio::test]
async fn serve_against_the_simulator_says_so_in_every_log_line_and_in_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = refbridge(dir.path())
        .arg("serve")
        .env("REFBRIDGE_ACCLOUD__TARGET", "simulator")
        .env("REFBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("REFBRIDGE_LOG__FORMAT", "json")
        .env("REFBRIDGE_LOG__FILTER", "info")
        .spawn()
        .expect("start refbridge serve");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let ready = loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            break r.json::<serde_json::Value>().await.expect("readyz JSON");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready["simulated_accloud"], true, "{ready}");
    assert!(
        ready["accloud"].as_str().unwrap().contains("simulator"),
        "{ready}"
    );
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "the service logged: {logs}");
    for line in lines {
        assert!(
            line.contains("\"accloud_target\":\"simulator\""),
            "a line without the target: {line}"
        );
    }
}

#[test]
fn config_check_names_a_bad_key_and_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = refbridge(dir.path())
        .args(["config", "check"])
        .env("REFBRIDGE_WORKER__LEASE_SECS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker.lease_secs"));

    let out = refbridge(dir.path())
        .args(["config", "check"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("configuration valid"), "{said}");
    assert!(said.contains("no ACCloud target is chosen"), "{said}");

    let out = refbridge(dir.path())
        .args(["config", "show"])
        .env("REFBRIDGE_ACCLOUD__TARGET", "prod")
        .env("REFBRIDGE_ACCLOUD__API_KEY", "key-not-to-print")
        .env("REFBRIDGE_ACCLOUD__API_SECRET", "secret-not-to-print")
        .env(
            "REFBRIDGE_DATABASE_URL",
            "postgres://u:pw-not-to-print@db:5432/r",
        )
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("lease_secs"), "{shown}");
    for secret in ["key-not-to-print", "secret-not-to-print", "pw-not-to-print"] {
        assert!(!shown.contains(secret), "{secret} shown");
    }
}

#[test]
fn token_roles_are_a_closed_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = refbridge(dir.path())
        .args(["token", "create", "--name", "x", "--role", "superuser"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("intake") && err.contains("reviewer") && err.contains("admin"),
        "{err}"
    );
    let out = refbridge(dir.path())
        .args(["token", "create", "--name", "cpr", "--role", "reviewer"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = refbridge(dir.path())
        .args(["token", "list"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("cpr") && listed.contains("reviewer"),
        "{listed}"
    );
}

#[test]
fn accloud_check_passes_against_the_simulator_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = refbridge(dir.path())
        .args(["accloud", "check"])
        .env("REFBRIDGE_ACCLOUD__TARGET", "simulator")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "credentials",
        "client group",
        "funders",
        "service codes",
        "trusted network",
    ] {
        assert!(
            said.lines()
                .any(|l| l.starts_with("PASS") && l.contains(name)),
            "{name}: {said}"
        );
    }
    let out = refbridge(dir.path())
        .args(["accloud", "check"])
        .env("REFBRIDGE_ACCLOUD__TARGET", "simulator")
        .env("REFBRIDGE_ACCLOUD__CSI_GROUP", "No Such Group")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("No Such Group")),
        "{said}"
    );
}
