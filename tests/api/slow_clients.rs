//! Clients that send a request head and then stall: they cost the service connections and
//! memory for a bounded time, never its capacity to answer everyone else.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokenvend::service::LimitSettings;
use tokenvend::service::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use test_support::app::{CONFIG, TestApp, spawn_app_serving, webapp_claims};

/// Stalled connections opened from one address.
const STALLED: usize = 1_000;
/// File descriptors the rest of the test process needs besides the stalled clients: the
/// service's side of the connections it keeps (at most the per-peer cap), the stand-in, the
/// issuer, the legitimate callers, the runtime.
const FD_HEADROOM: usize = 400;

/// How many stalled connections fit under this process's soft file-descriptor limit: all of
/// [`STALLED`] unless the limit is too low for them (e.g. a 1,024 default), in which case as
/// many as leave [`FD_HEADROOM`] free. Raising the limit would need `setrlimit`, which std
/// does not offer without unsafe code or another dependency.
fn stalled_connections() -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    match soft_limit {
        Some(limit) if limit < STALLED + FD_HEADROOM => {
            let fitting = limit.saturating_sub(FD_HEADROOM).max(100);
            eprintln!("soft RLIMIT_NOFILE is {limit}: using {fitting} stalled connections");
            fitting
        }
        _ => STALLED,
    }
}

/// How a stalled connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The service answered (with this status and body) and closed the connection.
    Answered(u16, Value),
    /// The service closed the connection without answering (refused over the per-peer cap).
    ClosedUnanswered,
    /// Still open when the test gave up on it.
    StillOpen,
}

/// Connects from `source` (another loopback address), sends a `POST /v1/token` head that
/// announces a 100-byte body, and never sends the body.
async fn stall(source: SocketAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(source)?;
    let mut stream = socket.connect(target).await?;
    let head = "POST /v1/token HTTP/1.1\r\nHost: tokenvend\r\nAuthorization: Bearer stalled\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    // A connection refused over the cap may already be closed: that is an ending, not an error.
    let _ = stream.write_all(head.as_bytes()).await;
    Ok(stream)
}

/// Reads until the service closes the connection, or `limit` passes.
async fn ending(mut stream: TcpStream, limit: Duration) -> Ending {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return Ending::StillOpen,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
    if received.is_empty() {
        return Ending::ClosedUnanswered;
    }
    let text = String::from_utf8_lossy(&received);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    Ending::Answered(status, body)
}

/// Token requests (each with its own subject, so the per-identity limit stays out of it) and
/// liveness probes from 127.0.0.1, until told to stop; returns every status seen.
async fn legitimate_traffic(
    app: std::sync::Arc<TestApp>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(String, u16)> {
    let mut statuses = Vec::new();
    while !*stop.borrow() {
        let mut claims = webapp_claims();
        claims["sub"] = json!(format!("legitimate-{}", statuses.len()));
        let token = app.id_token(claims);
        let status = app.post_token(&token, None).await.status().as_u16();
        statuses.push(("POST /v1/token".to_owned(), status));
        let health = app
            .http
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .map_or(0, |response| response.status().as_u16());
        statuses.push(("GET /healthz".to_owned(), health));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_from_one_peer_neither_take_every_slot_nor_stay_open() {
    // A short body deadline keeps the test short; the per-peer cap is the default (64).
    let options = ServeOptions {
        limits: LimitSettings {
            request_body_timeout: Duration::from_secs(2),
            ..LimitSettings::default()
        },
        ..ServeOptions::default()
    };
    let app = std::sync::Arc::new(spawn_app_serving(CONFIG, |_| {}, options).await);
    let target: SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let source: SocketAddr = "127.0.0.2:0".parse().unwrap();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let legitimate = tokio::spawn(legitimate_traffic(std::sync::Arc::clone(&app), stopped));
    let count = stalled_connections();
    let mut stalled = Vec::with_capacity(count);
    for _ in 0..count {
        stalled.push(stall(source, target).await.expect("connect from 127.0.0.2"));
    }
    // Every stalled connection ends (answered or refused) well within this bound; the test's
    // legitimate traffic runs the whole time.
    let endings: Vec<Ending> = futures_join_all(
        stalled
            .into_iter()
            .map(|stream| ending(stream, Duration::from_secs(40))),
    )
    .await;
    stop.send(true).unwrap();
    let statuses = legitimate.await.unwrap();

    assert!(
        statuses.len() >= 10,
        "too little legitimate traffic: {statuses:?}"
    );
    let failed: Vec<_> = statuses.iter().filter(|(_, s)| *s != 200).collect();
    assert!(failed.is_empty(), "legitimate callers refused: {failed:?}");
    let still_open = endings.iter().filter(|e| **e == Ending::StillOpen).count();
    assert_eq!(
        still_open, 0,
        "stalled connections left open by the service"
    );
    let answers: Vec<&Ending> = endings
        .iter()
        .filter(|e| matches!(e, Ending::Answered(..)))
        .collect();
    assert!(!answers.is_empty(), "no stalled request was answered");
    for answer in answers {
        let Ending::Answered(status, body) = answer else {
            unreachable!()
        };
        assert_eq!(*status, 408, "{body}");
        assert_eq!(body["error"], "request_timeout", "{body}");
    }
    match std::sync::Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("the app is still shared"),
    }
}

/// Awaits every future, concurrently, in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}
