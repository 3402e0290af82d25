//! The binary as a newcomer runs it: `tokenvend dev`, its banner, and the commands it prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::sandbox::{ChildGuard, TempDir, private_home, tool};

/// Reads the child's stdout until the banner's last command, or gives up after `limit`.
fn read_banner(stdout: impl std::io::Read + Send + 'static, limit: Duration) -> String {
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut banner = String::new();
    while let Ok(line) = lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("/oauth2/revoke") {
            break;
        }
    }
    banner
}

fn commands(banner: &str) -> Vec<&str> {
    banner
        .lines()
        .map(str::trim)
        .filter(|line| {
            ["ID_TOKEN=", "SA_TOKEN=", "curl ", "kubectl "]
                .iter()
                .any(|p| line.starts_with(p))
        })
        .collect()
}

#[test]
fn dev_prints_a_banner_whose_commands_return_a_token_and_stops_cleanly_on_sigterm() {
    // The printed commands run in bash and use curl and kubectl.
    let mut bash = tool("bash");
    tool("curl");
    tool("kubectl");
    let dir = TempDir::new("dev");
    let state_dir = dir.join("state");
    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_tokenvend"))
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--issuer-listen",
                "127.0.0.1:0",
                "--apiserver-listen",
                "127.0.0.1:0",
            ])
            .arg("--state-dir")
            .arg(&state_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let banner = read_banner(child.stdout.take().unwrap(), Duration::from_secs(60));
    let commands = commands(&banner);
    assert_eq!(commands.len(), 5, "banner:\n{banner}");

    // Run the printed commands as a newcomer would paste them, and show what they print. The
    // dev policy is revocable: after the printed revoke command, the same kubectl command
    // fails once the stand-in's 10 s authentication cache lets go of the token.
    let script = format!(
        "set -eu\n{id}\n{exchange}\necho\n{sa}\n{whoami}\n{revoke}\n\
         for _ in $(seq 60); do {whoami} >/dev/null 2>&1 || {{ echo revoked; exit 0; }}; sleep 0.5; done\n\
         exit 1\n",
        id = commands[0],
        exchange = commands[1],
        sa = commands[2],
        whoami = commands[3],
        revoke = commands[4],
    );
    let output = private_home(&mut bash, &dir.home())
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exchanged: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(exchanged["serviceAccount"]["name"], "deployer");
    assert_eq!(exchanged["token"].as_str().unwrap().split('.').count(), 3);
    assert!(
        stdout.contains("system:serviceaccount:dev:deployer"),
        "kubectl auth whoami:\n{stdout}"
    );
    assert_eq!(exchanged["revocable"], true);
    assert_eq!(stdout.lines().last(), Some("revoked"), "{stdout}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tokenvend dev did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");
    let kubeconfig = std::fs::metadata(state_dir.join("kubeconfig")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&kubeconfig.permissions()) & 0o777,
        0o600
    );
}
