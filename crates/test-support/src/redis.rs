//! A real `redis-server` per test, for the shared-store tests: on a free loopback port (Redis
//! cannot listen on port 0 and report it), no persistence (`--save ''`, `--appendonly no`), its
//! directory a [`TempDir`], optionally with a password, killed on drop. A test that needs it
//! fails (never skips) when `redis-server` is missing: `scripts/test` installs it through
//! `.ci/ensure-redis`.

use std::io::{BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::{ChildGuard, TempDir};

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    child: Option<ChildGuard>,
    port: u16,
    password: Option<String>,
    /// With TLS: the port it serves TLS on (the plain port stays, for the test's commands).
    tls_port: Option<u16>,
    dir: TempDir,
}

/// One reply, as far as the tests need to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl RedisServer {
    /// A server without a password.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned()))
    }

    /// A server that also serves TLS with this certificate and key (PEM) on a port of its own
    /// ([`RedisServer::tls_url`]); clients are not asked for certificates.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        let dir = TempDir::new("redis");
        std::fs::write(dir.join("tls.crt"), cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), key_pem).unwrap();
        let mut server = Self {
            child: None,
            port: free_port(),
            password: None,
            tls_port: Some(free_port()),
            dir,
        };
        server.restart();
        server
    }

    fn start_with(password: Option<String>) -> Self {
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            password,
            tls_port: None,
            dir: TempDir::new("redis"),
        };
        server.restart();
        server
    }

    /// `rediss://127.0.0.1:PORT` of a server started with [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with TLS");
        format!("rediss://127.0.0.1:{port}")
    }

    /// `redis://127.0.0.1:PORT` (no password: tokenvend refuses one in the URL).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL, as a crash): its port refuses connections until
    /// [`RedisServer::restart`]. It held nothing on disk, so it comes back empty.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// Starts the server (again) on the same port; returns once it answers.
    pub fn restart(&mut self) {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
        });
        assert!(
            found,
            "`redis-server` is not on PATH; this test needs it. Run the tests with scripts/test, \
             which installs it (.ci/ensure-redis, the Debian package redis-server)."
        );
        self.kill();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            // DEBUG SLEEP, for the slow-store test; from loopback only.
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if let Some(tls_port) = self.tls_port {
            command
                .args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(self.dir.join("tls.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("tls.key"))
                .args(["--tls-auth-clients", "no"]);
        }
        self.child = Some(ChildGuard::spawn(&mut command));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Reply::Status(pong)) = self.try_command(&["PING"])
                && pong == "PONG"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command on a connection of its own (authenticated when the server has a
    /// password) and returns the reply; blocks until it comes (e.g. for `DEBUG SLEEP`).
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<Reply> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        if let Some(password) = &self.password {
            writer.write_all(&encode(&["AUTH", password]))?;
            read_reply(&mut reader)?;
        }
        writer.write_all(&encode(args))?;
        read_reply(&mut reader)
    }

    /// The keys whose names start with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        match self.command(&["KEYS", &format!("{prefix}*")]) {
            Reply::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Reply::Bulk(Some(key)) => Some(key),
                    _ => None,
                })
                .collect(),
            other => panic!("KEYS answered {other:?}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(reader: &mut impl std::io::BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.to_owned());
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(rest.parse().map_err(|_| invalid())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| invalid())?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let mut body = vec![0; usize::try_from(len).map_err(|_| invalid())? + 2];
                reader.read_exact(&mut body)?;
                body.truncate(body.len() - 2);
                Reply::Bulk(Some(String::from_utf8_lossy(&body).into_owned()))
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| invalid())?;
            let mut items = Vec::new();
            for _ in 0..len.max(0) {
                items.push(read_reply(reader)?);
            }
            Reply::Array(items)
        }
        _ => return Err(invalid()),
    })
}
