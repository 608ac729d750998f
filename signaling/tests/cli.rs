//! The `queqiao` binary from the command line: the first admin, configuration output,
//! and a clean SIGTERM shutdown.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn data_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "queqiao-cli-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn admin_create_makes_the_first_admin_who_can_log_in() {
    let dir = data_dir();
    let output = Command::new(env!("CARGO_BIN_EXE_queqiao"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "admin",
            "create",
            "--username",
            "root",
            "--nickname",
            "站长",
        ])
        .env("QUEQIAO_ADMIN_PASSWORD", "correct horse battery")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("admin created"));

    // A second admin with the same name is refused; a short password too.
    let again = Command::new(env!("CARGO_BIN_EXE_queqiao"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "admin",
            "create",
            "--username",
            "ROOT",
        ])
        .env("QUEQIAO_ADMIN_PASSWORD", "correct horse battery")
        .output()
        .unwrap();
    assert!(!again.status.success());
    let weak = Command::new(env!("CARGO_BIN_EXE_queqiao"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "admin",
            "create",
            "--username",
            "other",
        ])
        .env("QUEQIAO_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(2));
    // The password never shows up in the output.
    assert!(!String::from_utf8_lossy(&output.stdout).contains("correct horse"));

    // The server on that data directory accepts the admin's login.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = signaling::config::Config {
            http: "127.0.0.1:0".parse().unwrap(),
            udp: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.clone(),
            ..Default::default()
        };
        let server = signaling::server::Server::start(config).await.unwrap();
        let response = reqwest::Client::new()
            .post(format!("http://{}/api/auth/login", server.http_addr))
            .json(&serde_json::json!({"login": "root", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["user"]["role"], "admin");
        assert_eq!(body["user"]["nickname"], "站长");
        server.shutdown().await;
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_queqiao"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the "running" line.
    let mut stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    let mut seen = String::new();
    while !seen.contains("Queqiao is running") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not start: {seen}"
        );
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0, "exited early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn print_config_shows_the_effective_settings_without_secrets() {
    let dir = data_dir();
    let file = dir.join("queqiao.toml");
    std::fs::write(
        &file,
        "http = \"0.0.0.0:9999\"\npublish_token = \"super-secret\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_queqiao"))
        .args(["--config", file.to_str().unwrap(), "print-config"])
        .env("QUEQIAO_UDP", "127.0.0.1:4444")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(text.contains("0.0.0.0:9999"), "{text}");
    assert!(
        text.contains("127.0.0.1:4444"),
        "environment applies: {text}"
    );
    assert!(!text.contains("super-secret"));
    // A bad file is a clear error, exit code 2.
    std::fs::write(&file, "htp = 1\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_queqiao"))
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid configuration file"));
    std::fs::remove_dir_all(dir).unwrap();
}
