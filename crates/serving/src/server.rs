//! Serving a router on a TCP listener with the limits `axum::serve` does not set: a deadline
//! for reading request headers (slowloris) that also closes idle keep-alive connections, a cap
//! on concurrent connections and one per peer address, optional TLS with a handshake deadline,
//! and a bounded drain at shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Connection-level limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A client must send a complete request head within this time, or the connection is
    /// closed. The clock also runs while a keep-alive connection waits for its next request,
    /// so this is the idle timeout too.
    pub header_read_timeout: Duration,
    /// Connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Connections one peer address may hold at once; further ones are closed as soon as they
    /// are accepted, so that one client cannot take every connection. `0` (the default here;
    /// `serve` sets its own): no cap.
    pub max_connections_per_peer: usize,
    /// A TLS client must complete its handshake within this time.
    pub handshake_timeout: Duration,
    /// At shutdown, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
            max_connections_per_peer: 0,
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes;
/// then stops accepting, lets in-flight requests finish within the drain timeout, and returns.
/// Handlers can extract `ConnectInfo<SocketAddr>`.
///
/// # Errors
/// Only a failure of the listener itself, not of one connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(PeerConnections::new(limits.max_connections_per_peer));
    // HTTP/1.1 only: the version sniffing of hyper-util's auto builder waits for a first byte
    // with no deadline, and no client of ours needs HTTP/2.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let mut exhausted = ExhaustionWarning::default();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) if is_per_connection(&error) => continue,
                Err(error) if is_resource_exhaustion(&error) => {
                    // The listener is fine; this process is full. Waiting lets connections
                    // end (their deadlines close idle ones) instead of ending the service.
                    exhausted.warn(&error);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                    }
                }
                Err(error) => return Err(error),
            },
        };
        let Some(peer_slot) = peers.enter(peer.ip()) else {
            // Closed unread: the client learns nothing but that it has too many connections open.
            drop(tcp);
            continue;
        };
        let router = router.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _peer_slot = peer_slot;
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(request)
                });
            let outcome = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(tcp), service))
                        .await
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
                    else {
                        tracing::debug!(%peer, "TLS handshake failed or timed out");
                        return;
                    };
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing connections with requests still in flight");
    }
    Ok(())
}

/// Open connections per peer address, for the per-peer cap.
struct PeerConnections {
    /// `0`: no cap (nothing is counted).
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// When a refusal was last logged; refusals come in floods, the log gets one line a minute.
    last_warned: Mutex<Option<Instant>>,
}

/// How often a refused connection is logged at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl PeerConnections {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Mutex::new(HashMap::new()),
            last_warned: Mutex::new(None),
        }
    }

    /// Counts one more connection from `peer`, until the returned slot drops; `None` when the
    /// peer already holds the cap.
    fn enter(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        if self.cap == 0 {
            return Some(PeerSlot { counted: None });
        }
        let peer = peer_key(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer).or_insert(0);
        if *count >= self.cap {
            drop(open);
            self.log_refusal(peer);
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            counted: Some((Arc::clone(self), peer)),
        })
    }

    fn leave(&self, peer: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&peer);
            }
        }
    }

    fn log_refusal(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut last = self
            .last_warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_INTERVAL) {
            *last = Some(now);
            tracing::warn!(%peer, cap = self.cap, "a peer reached the per-peer connection cap; its further connections are closed (behind a proxy, set --max-connections-per-peer 0)");
        }
    }
}

/// One counted connection; uncounted when dropped.
struct PeerSlot {
    counted: Option<(Arc<PeerConnections>, IpAddr)>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some((peers, peer)) = &self.counted {
            peers.leave(*peer);
        }
    }
}

/// What the per-peer cap counts by: an IPv4 address (also when mapped into IPv6), or an IPv6
/// /64, which one host usually holds whole and could otherwise spread its connections over.
fn peer_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
}

/// How long accepting pauses when the process is out of file descriptors or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Out of file descriptors (per process or system-wide), buffer space or memory: accepting
/// can succeed again once connections close. The codes are Linux's (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM); std names only the last as an `ErrorKind`.
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    error.kind() == std::io::ErrorKind::OutOfMemory
        || matches!(
            error.raw_os_error(),
            Some(EMFILE | ENFILE | ENOBUFS | ENOMEM)
        )
}

/// Warns about resource exhaustion at most once a minute: while it lasts, every accept fails.
#[derive(Default)]
struct ExhaustionWarning {
    last: Option<Instant>,
}

impl ExhaustionWarning {
    fn warn(&mut self, error: &std::io::Error) {
        if self
            .last
            .is_some_and(|last| last.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last = Some(Instant::now());
        tracing::warn!(%error, "out of file descriptors or memory; accepting again shortly");
    }
}

/// Errors about one incoming connection, not the listener: reset before accept, or, on Linux,
/// a network error already pending on it, which accept(2) passes on (its manual asks servers
/// to treat ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP and
/// ENETUNREACH like EAGAIN).
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    const PENDING_NETWORK_ERRORS: [i32; 8] = [100, 71, 92, 112, 64, 113, 95, 101];
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) || error
        .raw_os_error()
        .is_some_and(|code| PENDING_NETWORK_ERRORS.contains(&code))
}

#[cfg(test)]
mod tests {
    #[test]
    fn peers_are_counted_by_ipv4_address_or_ipv6_64() {
        let key = |text: &str| peer_key(text.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("::ffff:192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(
        limits: ServerLimits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router, None, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
        let mut buffer = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {} // a 408 or similar before the close is fine
            }
        }
    }

    #[tokio::test]
    async fn requests_are_served_with_the_peer_address() {
        let (addr, stop, task) = start(ServerLimits::default()).await;
        let body = reqwest::get(format!("http://{addr}/peer"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "127.0.0.1");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_slow_request_head_is_cut_off() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            ..ServerLimits::default()
        };
        let (addr, stop, _task) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        assert!(
            closed_within(&mut slow, Duration::from_secs(10)).await,
            "slow head not closed"
        );
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn a_silent_or_idle_keep_alive_connection_is_closed() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            ..ServerLimits::default()
        };
        let (addr, stop, _task) = start(limits).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(10)).await,
            "silent connection not closed"
        );
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(
            closed_within(&mut idle, Duration::from_secs(10)).await,
            "idle keep-alive connection not closed"
        );
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn a_peer_at_its_connection_cap_is_refused_while_other_peers_are_served() {
        let limits = ServerLimits {
            max_connections_per_peer: 2,
            ..ServerLimits::default()
        };
        let (addr, stop, _task) = start(limits).await;
        let from = |source: &'static str| async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
            let mut stream = socket.connect(addr).await.unwrap();
            stream
                .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            stream
        };
        let mut held = vec![from("127.0.0.2").await, from("127.0.0.2").await];
        let mut buffer = [0u8; 256];
        for stream in &mut held {
            assert!(stream.read(&mut buffer).await.unwrap() > 0, "not served");
        }
        let mut third = from("127.0.0.2").await;
        assert_eq!(
            third.read(&mut buffer).await.unwrap_or(0),
            0,
            "a third connection from the same peer was served"
        );
        let mut other = from("127.0.0.3").await;
        let n = other.read(&mut buffer).await.unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).ends_with("127.0.0.3"));
        // A closed connection frees its place (once the service has seen it close).
        held.pop();
        let mut served_again = false;
        for _ in 0..50 {
            let mut again = from("127.0.0.2").await;
            if again.read(&mut buffer).await.unwrap_or(0) > 0 {
                served_again = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served_again, "not served after a close");
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_until_one_closes() {
        let limits = ServerLimits {
            max_connections: 1,
            ..ServerLimits::default()
        };
        let (addr, stop, _task) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 256];
        assert!(first.read(&mut buffer).await.unwrap() > 0);
        let second = tokio::spawn(async move {
            reqwest::get(format!("http://{addr}/peer"))
                .await
                .unwrap()
                .status()
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "a second connection was served while the first was open"
        );
        drop(first);
        assert_eq!(second.await.unwrap(), 200);
        let _ = stop.send(());
    }
}
