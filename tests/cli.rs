//! The binary as a newcomer runs it: `tokenvend dev`, its banner, and the commands it prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
        if line.contains("auth whoami") {
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
    let state_dir = std::env::temp_dir().join(format!("tokenvend-dev-test-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner = read_banner(child.stdout.take().unwrap(), Duration::from_secs(60));
    let commands = commands(&banner);
    assert_eq!(commands.len(), 4, "banner:\n{banner}");

    // Run the printed commands as a newcomer would paste them, and show what they print.
    let script = format!(
        "set -eu\n{id}\n{exchange}\necho\n{sa}\n{whoami}\n",
        id = commands[0],
        exchange = commands[1],
        sa = commands[2],
        whoami = commands[3],
    );
    let output = Command::new("bash")
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
    let _ = std::fs::remove_dir_all(&state_dir);
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn sighup_reloads_the_config_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("tokenvend-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("dev.yaml");
    let original =
        include_str!("../config/dev.yaml").replace("127.0.0.1:5556", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, &original).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenvend"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--apiserver-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--issuer-listen",
            &format!("127.0.0.1:{port}"),
            "--config-poll-interval",
            "1h",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner = read_banner(child.stdout.take().unwrap(), Duration::from_secs(60));
    let service = banner
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("service")?
                .split_whitespace()
                .next()
        })
        .unwrap_or_else(|| panic!("no service line in:\n{banner}"))
        .to_owned();
    let id_token = Command::new("curl")
        .args([
            "-s",
            &format!("http://127.0.0.1:{port}/token?sub=dev-user&aud=tokenvend&format=raw"),
        ])
        .output()
        .unwrap();
    let id_token = String::from_utf8_lossy(&id_token.stdout).trim().to_owned();
    let exchange = || {
        curl(&[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {id_token}"),
            &format!("{service}/v1/token"),
        ])
    };
    assert_eq!(exchange(), "200");

    // The dev user loses its policy; the file changes, and only SIGHUP makes it count.
    std::fs::write(
        &config,
        original.replacen("sub: dev-user", "sub: someone-else", 1),
    )
    .unwrap();
    assert_eq!(
        exchange(),
        "200",
        "reloaded without SIGHUP (the poll interval is an hour)"
    );
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while exchange() != "403" {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the config"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
