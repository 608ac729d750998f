//! Gifts are money: a burst of 1,000 concurrent gift sends with client retries, the server
//! killed with SIGKILL in the middle and restarted, and every idempotency key is still
//! charged exactly once, no balance negative, and no coin created or lost. On SQLite and,
//! when the test cluster is configured, on PostgreSQL.

mod common;

use common::{free_port, fresh_postgres_database, rand_suffix};
use futures::future::join_all;
use rand::Rng;
use serde_json::{Value, json};
use signaling::store::Store;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "crash-test-admin";

struct Instance {
    child: Child,
    base: String,
}

/// A failed assertion must not leave the server running after the test.
impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path, port: u16, database_url: Option<&str>, config: &Path) -> Instance {
    let mut command = Command::new(env!("CARGO_BIN_EXE_queqiao"));
    command
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--http",
            &format!("127.0.0.1:{port}"),
            "--udp",
            "127.0.0.1:0",
        ])
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let child = command.spawn().expect("start queqiao");
    Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.request(method, url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn admin_create(data_dir: &Path, database_url: Option<&str>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_queqiao"));
    command
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "admin",
            "create",
            "--username",
            "admin",
        ])
        .env("QUEQIAO_ADMIN_PASSWORD", ADMIN_PASSWORD);
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    assert!(command.output().unwrap().status.success());
}

async fn burst_through_a_crash(database_url: Option<String>) {
    let data_dir: PathBuf = std::env::temp_dir().join(format!("queqiao-crash-{}", rand_suffix()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let config = data_dir.join("queqiao.toml");
    std::fs::write(
        &config,
        "gifts_per_second = 5000\ngift_burst = 5000\nlogin_attempts_per_minute_per_ip = 1000\nlimits_exempt = [\"127.0.0.0/8\"]\n",
    )
    .unwrap();
    let url = database_url.as_deref();
    admin_create(&data_dir, url);
    let port = free_port();
    let mut server = start(&data_dir, port, url, &config);
    wait_healthy(&server.base).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let post = reqwest::Method::POST;

    let (_, admin) = call(
        &client,
        post.clone(),
        format!("{base}/api/auth/login"),
        None,
        json!({"login": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let register = |name: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let (status, body) = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/auth/register"),
                None,
                json!({"username": name, "password": "password-123", "nickname": name}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            (
                body["user"]["id"].as_i64().unwrap(),
                body["token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (host, host_token) = register("crashhost".into()).await;
    call(
        &client,
        reqwest::Method::PUT,
        format!("{base}/api/users/{host}/role"),
        Some(&admin),
        json!({"role": "host"}),
    )
    .await;
    let (status, room) = call(
        &client,
        post.clone(),
        format!("{base}/api/rooms"),
        Some(&host_token),
        json!({"title": "crash"}),
    )
    .await;
    assert_eq!(status, 201);
    let room = room["id"].as_str().unwrap().to_owned();
    let users = join_all((0..50).map(|i| register(format!("spender{i}")))).await;
    for (id, _) in &users {
        let (status, _) = call(
            &client,
            post.clone(),
            format!("{base}/api/users/{id}/coins"),
            Some(&admin),
            json!({"amount": 60, "idempotency_key": format!("t{id}")}),
        )
        .await;
        assert_eq!(status, 200);
    }

    // 1,000 keys, each sent 1–3 times concurrently.
    let mut rng = rand::rng();
    let mut sends = Vec::new();
    for (user, token) in &users {
        for n in 0..20 {
            let gift = if rng.random_bool(0.3) {
                "heart"
            } else {
                "rose"
            };
            for _ in 0..rng.random_range(1..=3) {
                sends.push((token.clone(), gift, format!("k-{user}-{n}")));
            }
        }
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let gift_url = format!("{base}/api/rooms/{room}/gifts");
    let fire = |sends: Vec<(String, &'static str, String)>, answered: Arc<AtomicUsize>| {
        let (client, gift_url) = (client.clone(), gift_url.clone());
        async move {
            join_all(sends.into_iter().map(|(token, gift, key)| {
                let (client, gift_url, answered) =
                    (client.clone(), gift_url.clone(), Arc::clone(&answered));
                async move {
                    let response = client
                        .post(gift_url)
                        .bearer_auth(token)
                        .json(&json!({"gift": gift, "idempotency_key": key}))
                        .send()
                        .await;
                    let outcome = match response {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: Value = response.json().await.unwrap_or(Value::Null);
                            answered.fetch_add(1, Ordering::Relaxed);
                            Some((status, body))
                        }
                        Err(_) => None,
                    };
                    (key, gift, outcome)
                }
            }))
            .await
        }
    };
    let burst = tokio::spawn(fire(sends, Arc::clone(&answered)));
    // Kill the server hard once part of the burst has been answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::Relaxed) < 250 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let first_round = burst.await.unwrap();
    let unanswered = first_round.iter().filter(|(_, _, o)| o.is_none()).count();
    assert!(
        unanswered > 0,
        "the kill landed after the burst; nothing was interrupted"
    );

    // Restart on the same data and let clients retry everything without a final answer.
    server = start(&data_dir, port, url, &config);
    wait_healthy(&server.base).await;
    let mut outcomes: HashMap<String, (u16, Value)> = HashMap::new();
    let mut pending: Vec<(String, &'static str, String)> = Vec::new();
    let tokens: HashMap<String, String> = users
        .iter()
        .map(|(id, token)| (id.to_string(), token.clone()))
        .collect();
    for (key, gift, outcome) in first_round {
        match outcome {
            Some((status, body)) if status == 200 || status == 409 => {
                outcomes.insert(key, (status, body));
            }
            _ => {
                let user = key.split('-').nth(1).unwrap().to_owned();
                pending.push((tokens[&user].clone(), gift, key));
            }
        }
    }
    // Some already-answered keys are retried too (a client that never saw the answer).
    let resend: Vec<String> = outcomes.keys().take(50).cloned().collect();
    for key in resend {
        let user = key.split('-').nth(1).unwrap().to_owned();
        pending.push((tokens[&user].clone(), "rose", key));
    }
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 20, "gifts still unresolved after restart");
        let results = fire(std::mem::take(&mut pending), Arc::new(AtomicUsize::new(0))).await;
        for (key, gift, outcome) in results {
            match outcome {
                Some((200, body)) => {
                    if let Some((200, previous)) = outcomes.get(&key) {
                        assert_eq!(
                            previous["coins"], body["coins"],
                            "a retry reported a different charge for {key}"
                        );
                    }
                    outcomes.insert(key, (200, body));
                }
                // Retried "rose" for a key first sent as "heart": the key is refused, nothing charged.
                Some((409, body))
                    if body["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("different request") => {}
                Some((409, body)) => {
                    outcomes.entry(key).or_insert((409, body));
                }
                _ => {
                    let user = key.split('-').nth(1).unwrap().to_owned();
                    pending.push((tokens[&user].clone(), gift, key));
                }
            }
        }
    }

    let charged: i64 = outcomes
        .values()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b["coins"].as_i64().unwrap())
        .sum();
    let acknowledged = outcomes.values().filter(|(s, _)| *s == 200).count() as i64;
    let (_, wallet) = call(
        &client,
        reqwest::Method::GET,
        format!("{}/api/me/wallet", server.base),
        Some(&host_token),
        Value::Null,
    )
    .await;
    assert_eq!(
        wallet["earnings"].as_i64().unwrap(),
        charged,
        "the host earned exactly the acknowledged charges"
    );

    // Stop, then audit the database itself.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let store = Store::connect(
        &database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url(&data_dir)),
    )
    .await
    .unwrap();
    let (coins, earnings, lowest) = store.coins_in_circulation().await.unwrap();
    assert_eq!(coins + earnings, 50 * 60, "coins created or lost");
    assert!(lowest >= 0, "a balance went negative");
    let board = store.leaderboard(&room, None, 100).await.unwrap();
    assert_eq!(board.iter().map(|g| g.coins).sum::<i64>(), charged);
    let sends: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM gift_sends")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    };
    assert_eq!(
        sends, acknowledged,
        "each idempotency key charged exactly once"
    );
    store.close().await;
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifts_survive_kill_9_on_sqlite() {
    burst_through_a_crash(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifts_survive_kill_9_on_postgres() {
    if let Some(url) = fresh_postgres_database().await {
        burst_through_a_crash(Some(url)).await;
    }
}
