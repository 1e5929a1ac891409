//! Slow, idle and numerous clients against the real server (`refbridge_cli::server`), on
//! loopback with raw TCP, counts kept small.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use refbridge_api::{ApiConfig, AppState};
use refbridge_cli::server::{Limits, SPARE_CONNECTIONS};
use refbridge_domain::Role;
use refbridge_storage::{Blobs, FileStore, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    addr: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

async fn start(limits: Limits) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = refbridge_storage::test_util::fresh_database_url(dir.path()).await;
    let store = Store::open(&url, &StoreOptions::default())
        .await
        .expect("store");
    let token = refbridge_api::new_token().expect("random token");
    store
        .create_token(
            "reviewer-1",
            Role::Reviewer,
            &refbridge_api::hash_token(&token),
        )
        .await
        .expect("token");
    let state = AppState {
        store,
        files: Blobs::folder(FileStore::open(dir.path().join("files")).expect("files")),
        config: ApiConfig::default(),
        wake: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(refbridge_cli::serve_with(
        state,
        listener,
        limits,
        std::future::pending(),
    ));
    Server {
        addr,
        token,
        _dir: dir,
    }
}

fn limits(header_ms: u64, body_ms: u64, max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(header_ms),
        body_read_timeout: Duration::from_millis(body_ms),
        max_connections,
        keep_alive_max_requests: 1000,
    }
}

/// Reads until the server closes the connection (or `limit` passes: a panic); gives what was
/// read.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {limit:?}; read so far: {}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a fresh connection; gives the answer's head and body.
async fn request(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    read_to_close(&mut s, Duration::from_secs(5)).await
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_after_the_header_timeout() {
    let server = start(limits(500, 10_000, 50)).await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let start = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ")
        .await
        .expect("write");
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        // One byte every 100 ms, until the server hangs up.
        while w.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await {
            Err(_) => panic!("a trickling client is still connected after 5 s"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {}
        }
    }
    let kept = start.elapsed();
    trickle.abort();
    eprintln!("header trickle cut after {kept:?} (header timeout 500 ms)");
    assert!(kept >= Duration::from_millis(450), "{kept:?}");
    assert!(kept < Duration::from_millis(2000), "{kept:?}");
    // An idle connection that sends nothing at all is cut the same way.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let start = Instant::now();
    read_to_close(&mut idle, Duration::from_secs(5)).await;
    assert!(start.elapsed() < Duration::from_millis(2000));
}

#[tokio::test]
async fn a_slow_body_is_answered_408_and_cut_after_the_body_timeout() {
    let server = start(limits(10_000, 500, 50)).await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "PUT /v1/payors HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{",
        server.token
    );
    let start = Instant::now();
    s.write_all(head.as_bytes()).await.expect("write");
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        while w.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await {
            Err(_) => panic!("a slow body is still being read after 5 s"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let kept = start.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("slow body cut after {kept:?} (body timeout 500 ms)");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(kept >= Duration::from_millis(450), "{kept:?}");
    assert!(kept < Duration::from_millis(2000), "{kept:?}");
}

/// Opens `n` connections that have sent half a request head and wait.
async fn half_open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /v1/payors HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("write");
        held.push(s);
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    held
}

#[tokio::test]
async fn past_the_connection_cap_requests_are_refused_at_once_and_health_still_answers() {
    let server = start(limits(10_000, 10_000, 50)).await;
    let mut held = half_open(server.addr, 50).await;

    // The cap is reached: a request is refused at once, with a short answer.
    let start = Instant::now();
    let answer = request(server.addr, &get("/v1/payors")).await;
    let took = start.elapsed();
    eprintln!("refused past the cap in {took:?}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Health checks still answer.
    let answer = request(server.addr, &get("/healthz")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = request(server.addr, &get("/readyz")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A held connection finishes its request: it is served in full.
    let first = &mut held[0];
    first
        .write_all(
            format!(
                "authorization: Bearer {}\r\nconnection: close\r\n\r\n",
                server.token
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let answer = read_to_close(first, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held.remove(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Its slot is free again.
    let answer = request(
        server.addr,
        &format!(
            "GET /v1/payors HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            server.token
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn health_answers_while_more_idle_half_open_connections_than_the_cap_are_held() {
    let server = start(limits(10_000, 10_000, 50)).await;
    // 50 fill the cap, 32 take the spare slots, 10 more push the oldest spare ones out.
    let mut held = half_open(server.addr, 50 + SPARE_CONNECTIONS + 10).await;
    for _ in 0..3 {
        let start = Instant::now();
        let answer = request(server.addr, &get("/healthz")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    // The spare connections that gave way are closed: the server holds at most the cap and
    // the spare ones.
    let start = Instant::now();
    read_to_close(&mut held[50], Duration::from_secs(1)).await;
    assert!(start.elapsed() < Duration::from_millis(500));
    // Those under the cap are still open.
    let mut buf = [0u8; 16];
    let still = tokio::time::timeout(Duration::from_millis(200), held[49].read(&mut buf)).await;
    assert!(still.is_err(), "a connection under the cap was closed");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_its_last_allowed_request() {
    let server = start(Limits {
        keep_alive_max_requests: 3,
        ..limits(10_000, 10_000, 50)
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let one = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    s.write_all(one.repeat(3).as_bytes()).await.expect("write");
    let answers = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 3, "{answers}");
    assert_eq!(answers.matches("connection: close").count(), 1, "{answers}");
}

#[tokio::test]
async fn handlers_get_the_client_address_as_connect_info() {
    use axum::extract::ConnectInfo;
    let app = axum::Router::new().route(
        "/peer",
        axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
            peer.ip().to_string()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(refbridge_cli::server::serve(
        app,
        listener,
        Limits::default(),
        std::future::pending(),
    ));
    let answer = request(addr, &get("/peer")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("127.0.0.1"), "{answer}");
}
