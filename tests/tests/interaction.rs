//! Chat, likes and gifts over WebSockets and WebRTC data channels, on SQLite and
//! PostgreSQL.

use futures::future::join_all;
use queqiao_tests::api::{ADMIN_PASSWORD, Api, server_with};
use queqiao_tests::clip::Clip;
use queqiao_tests::server::TestServer;
use queqiao_tests::whep::{Viewer, ViewerOptions};
use queqiao_tests::whip::Publisher;
use queqiao_tests::ws::RoomSocket;
use rand::Rng;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A live room with a host; returns (server, api, admin token, host id, host token, room).
async fn live_room(
    database_url: Option<String>,
    adjust: impl FnOnce(&mut signaling::config::Config),
) -> (TestServer, Api, String, i64, String, String) {
    let server = server_with(database_url, adjust).await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (host, host_token) = api.register("hostess").await;
    api.make_host(&admin, host).await;
    let room = api
        .create_room(&host_token, json!({"title": "相亲角"}))
        .await;
    (server, api, admin, host, host_token, room)
}

/// Registers `count` users; returns (id, token) pairs.
async fn users(api: &Api, prefix: &str, count: usize) -> Vec<(i64, String)> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    join_all(names.iter().map(|name| api.register(name))).await
}

fn chats(events: &[Value]) -> Vec<(i64, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "chat")
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["ref"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn one_conversation(database_url: Option<String>) {
    let (server, api, _admin, _host, host_token, room) = live_room(database_url, |_| {}).await;
    let publisher = Publisher::start(
        &server.whip(&room),
        Some(&host_token),
        Arc::new(Clip::default_360p().unwrap()),
    )
    .await
    .unwrap();
    api.wait_room(&room, "live", |r| r["live"] == true).await;

    // 20 data-channel viewers (logged in) and 300 WebSocket members (10 logged in).
    let dc_users = users(&api, "dc", 20).await;
    let whep = server.whep(&room);
    let viewers: Vec<Viewer> = join_all(dc_users.iter().map(|(_, token)| {
        Viewer::start(
            &whep,
            ViewerOptions {
                token: Some(token.clone()),
                ..Default::default()
            },
        )
    }))
    .await
    .into_iter()
    .map(|v| v.expect("viewer connects"))
    .collect();
    let ws_users = users(&api, "ws", 10).await;
    let mut sockets = Vec::new();
    for i in 0..300 {
        let token = ws_users.get(i).map(|(_, t)| t.as_str());
        sockets.push(
            RoomSocket::connect(&server.base, &room, token)
                .await
                .unwrap(),
        );
    }
    // Every data channel is open and welcomed.
    let ready = wait(Duration::from_secs(15), || {
        viewers.iter().all(|v| {
            v.snapshot()
                .messages
                .iter()
                .any(|m| m.contains("\"welcome\""))
        })
    })
    .await;
    assert!(ready, "data channels not all welcomed");

    // 5 WebSocket members and 5 data-channel viewers each send 4 messages.
    let mut expected = HashSet::new();
    for round in 0..4 {
        for (i, socket) in sockets.iter().take(5).enumerate() {
            let id = format!("ws{i}-{round}");
            socket.send(&json!({"type": "chat", "text": format!("你好 from ws {i} #{round}"), "client_id": id}));
            expected.insert(id);
        }
        for (i, viewer) in viewers.iter().take(5).enumerate() {
            let id = format!("dc{i}-{round}");
            viewer.send_text(&json!({"type": "chat", "text": format!("hello from dc {i} #{round}"), "client_id": id}).to_string()).await.unwrap();
            expected.insert(id);
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }

    // Every member sees all 40 messages, exactly once each, in one and the same order.
    let all_arrived = wait(Duration::from_secs(20), || {
        sockets.iter().all(|s| chats(&s.events()).len() >= 40)
            && viewers.iter().all(|v| chats(&dc_events(v)).len() >= 40)
    })
    .await;
    let reference = chats(&sockets[0].events());
    assert!(
        all_arrived,
        "not everyone got 40 messages; socket 0 has {}",
        reference.len()
    );
    assert_eq!(reference.len(), 40);
    assert_eq!(
        reference
            .iter()
            .map(|(_, r)| r.clone())
            .collect::<HashSet<_>>(),
        expected
    );
    assert!(
        reference.windows(2).all(|w| w[0].0 < w[1].0),
        "sequence numbers increase"
    );
    for (i, socket) in sockets.iter().enumerate() {
        assert_eq!(
            chats(&socket.events()),
            reference,
            "socket {i} saw a different conversation"
        );
    }
    for (i, viewer) in viewers.iter().enumerate() {
        assert_eq!(
            chats(&dc_events(viewer)),
            reference,
            "data-channel viewer {i} saw a different conversation"
        );
    }
    // Anonymous members can read but not write.
    let anonymous = &sockets[299];
    anonymous.send(&json!({"type": "chat", "text": "hi"}));
    anonymous
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "error" && e["code"] == "unauthorized"
        })
        .await
        .unwrap();

    // History: a member joining now gets the last messages in its welcome.
    let late = RoomSocket::connect(&server.base, &room, None)
        .await
        .unwrap();
    let welcome = late.of_type("welcome").remove(0);
    let history: Vec<i64> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        history,
        reference.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );

    // Stored: the chat API returns the same messages.
    let (_, stored) = api
        .call(Method::GET, &format!("/api/rooms/{room}/chat"), None, None)
        .await;
    wait_async(Duration::from_secs(5), || async {
        api.call(Method::GET, &format!("/api/rooms/{room}/chat"), None, None)
            .await
            .1
            .as_array()
            .map(Vec::len)
            == Some(40)
    })
    .await;
    assert!(stored.is_array());

    for socket in sockets {
        socket.close().await;
    }
    late.close().await;
    for viewer in viewers {
        viewer.close().await;
    }
    publisher
        .delete(&server.base, Some(&host_token))
        .await
        .unwrap();
    server.stop().await;
}

fn dc_events(viewer: &Viewer) -> Vec<Value> {
    viewer
        .snapshot()
        .messages
        .iter()
        .filter_map(|m| serde_json::from_str(m).ok())
        .collect()
}

async fn wait(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

async fn wait_async<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    check: impl Fn() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_data_channel_members_share_one_ordered_conversation_on_sqlite() {
    one_conversation(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_data_channel_members_share_one_ordered_conversation_on_postgres() {
    if let Some(url) = queqiao_tests::postgres::fresh_database().await {
        one_conversation(Some(url)).await;
    }
}

async fn gift_burst(database_url: Option<String>) {
    let (server, api, admin, host, _host_token, room) =
        live_room(database_url, |c| c.gift_rate = (1000, 1000)).await;
    let senders = users(&api, "fan", 50).await;
    // 60 coins each; the gifts below cost more than that in total, so some must be refused.
    for (id, _) in &senders {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/api/users/{id}/coins"),
                Some(&admin),
                Some(json!({"amount": 60, "idempotency_key": format!("topup-{id}")})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // A retried top-up is not applied twice.
    let (id0, _) = &senders[0];
    let (_, again) = api
        .call(
            Method::POST,
            &format!("/api/users/{id0}/coins"),
            Some(&admin),
            Some(json!({"amount": 60, "idempotency_key": format!("topup-{id0}")})),
        )
        .await;
    assert_eq!(
        (
            again["duplicate"].as_bool(),
            again["wallet"]["coins"].as_i64()
        ),
        (Some(true), Some(60))
    );
    let total_before = 50 * 60;

    // 1,000 gift sends (20 per user, 1 or 10 coins each), every one retried 0–2 extra times
    // concurrently with the same key.
    let mut requests = Vec::new();
    let mut rng = rand::rng();
    for (user, token) in &senders {
        for n in 0..20 {
            let gift = if rng.random_bool(0.3) {
                "heart"
            } else {
                "rose"
            };
            let key = format!("g-{user}-{n}");
            for _ in 0..(1 + rng.random_range(0..3)) {
                requests.push((token.clone(), gift, key.clone()));
            }
        }
    }
    let url = server.url(&format!("/api/rooms/{room}/gifts"));
    let outcomes = join_all(requests.iter().map(|(token, gift, key)| {
        let (http, url) = (api.http.clone(), url.clone());
        async move {
            let response = http
                .inner()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"gift": gift, "idempotency_key": key}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                key.clone(),
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    }))
    .await;
    let mut charged: HashMap<String, i64> = HashMap::new();
    for (key, status, body) in &outcomes {
        match status {
            200 => {
                let coins = body["coins"].as_i64().unwrap();
                if let Some(previous) = charged.insert(key.clone(), coins) {
                    assert_eq!(previous, coins, "a retry reported a different charge");
                }
            }
            409 => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("not enough coins"),
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        charged.len() < 1000,
        "some gifts must have been refused for lack of coins"
    );
    let spent: i64 = charged.values().sum();
    let (status, wallet) = api
        .call(
            Method::GET,
            "/api/me/wallet",
            Some(&api.token("hostess", "password-123").await),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        wallet["earnings"].as_i64().unwrap(),
        spent,
        "the host earned exactly what was charged"
    );
    let (coins, earnings, lowest) = server.server.store.coins_in_circulation().await.unwrap();
    assert_eq!(coins + earnings, total_before, "coins are conserved");
    assert!(lowest >= 0, "no balance is negative");
    // Each key charged once: the ledger has one row per acknowledged key.
    let (_, board) = api
        .call(
            Method::GET,
            &format!("/api/rooms/{room}/leaderboard?limit=100"),
            None,
            None,
        )
        .await;
    assert_eq!(
        board
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["coins"].as_i64().unwrap())
            .sum::<i64>(),
        spent
    );
    let _ = host;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_gifts_with_retries_conserve_coins_on_sqlite() {
    gift_burst(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_gifts_with_retries_conserve_coins_on_postgres() {
    if let Some(url) = queqiao_tests::postgres::fresh_database().await {
        gift_burst(Some(url)).await;
    }
}

async fn protocol_and_moderation(database_url: Option<String>) {
    let (server, api, admin, _host, host_token, room) =
        live_room(database_url, |c| c.blocked_words = vec!["加微信".into()]).await;
    let people = users(&api, "person", 3).await;
    let (alice_id, alice_token) = &people[0];
    let (_, bob_token) = &people[1];
    let alice = RoomSocket::connect(&server.base, &room, Some(alice_token))
        .await
        .unwrap();
    let bob = RoomSocket::connect(&server.base, &room, Some(bob_token))
        .await
        .unwrap();
    let watcher = RoomSocket::connect(&server.base, &room, None)
        .await
        .unwrap();
    let error_with =
        |code: &'static str| move |e: &Value| e["type"] == "error" && e["code"] == code;

    // Bad input: an error event each, and the connection stays usable.
    alice.send_raw("{not json".into());
    alice
        .wait_for(Duration::from_secs(5), error_with("malformed"))
        .await
        .unwrap();
    alice.send(&json!({"type": "dance"}));
    alice
        .wait_for(Duration::from_secs(5), error_with("unknown_type"))
        .await
        .unwrap();
    alice.send(&json!({"type": "chat", "text": "x".repeat(6000)}));
    alice
        .wait_for(Duration::from_secs(5), error_with("too_large"))
        .await
        .unwrap();
    alice.send(&json!({"type": "chat", "text": "请加微信 abc"}));
    alice
        .wait_for(Duration::from_secs(5), error_with("blocked_word"))
        .await
        .unwrap();
    alice.send(&json!({"type": "ping"}));
    alice
        .wait_for(Duration::from_secs(5), |e| e["type"] == "pong")
        .await
        .unwrap();
    assert!(alice.closed().is_none());

    // A flooding client is limited; others are not.
    for i in 0..30 {
        alice.send(&json!({"type": "chat", "text": format!("flood {i}")}));
    }
    alice
        .wait_for(Duration::from_secs(5), error_with("rate_limited"))
        .await
        .unwrap();
    bob.send(&json!({"type": "chat", "text": "bob is fine", "client_id": "bob-1"}));
    watcher
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "chat" && e["ref"] == "bob-1"
        })
        .await
        .unwrap();
    let flood_delivered = watcher
        .of_type("chat")
        .iter()
        .filter(|e| e["text"].as_str().unwrap_or("").starts_with("flood"))
        .count();
    assert!(
        (1..=6).contains(&flood_delivered),
        "{flood_delivered} flood messages got through"
    );

    // Likes are summed: many taps, few events, the right total.
    for _ in 0..40 {
        bob.send(&json!({"type": "like", "count": 2}));
    }
    let likes = watcher
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "likes" && e["total"] == 80
        })
        .await
        .unwrap();
    assert_eq!(likes["total"], 80);
    assert!(
        watcher.of_type("likes").len() < 40,
        "like events are batched"
    );

    // Moderation: the host mutes Alice; her chat is refused, others see the mute.
    tokio::time::sleep(Duration::from_secs(3)).await; // let Alice's rate limit refill
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room}/mutes"),
            Some(bob_token),
            Some(json!({"user_id": alice_id, "seconds": 60})),
        )
        .await;
    assert_eq!(status, 403, "only the host or an admin mutes");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room}/mutes"),
            Some(&host_token),
            Some(json!({"user_id": alice_id, "seconds": 60})),
        )
        .await;
    assert_eq!(status, 204);
    watcher
        .wait_for(Duration::from_secs(5), |e| e["event"] == "user_muted")
        .await
        .unwrap();
    alice.send(&json!({"type": "chat", "text": "can you hear me", "client_id": "muted-1"}));
    alice
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "error" && e["code"] == "muted" && e["ref"] == "muted-1"
        })
        .await
        .unwrap();
    api.call(
        Method::DELETE,
        &format!("/api/rooms/{room}/mutes/{alice_id}"),
        Some(&host_token),
        None,
    )
    .await;
    alice.send(&json!({"type": "chat", "text": "back again", "client_id": "unmuted"}));
    let back = watcher
        .wait_for(Duration::from_secs(5), |e| e["ref"] == "unmuted")
        .await
        .unwrap();

    // Deleting a message is announced and removes it from the history.
    let seq = back["seq"].as_i64().unwrap();
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/rooms/{room}/messages/{seq}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    watcher
        .wait_for(Duration::from_secs(5), |e| {
            e["event"] == "message_deleted" && e["target_seq"] == seq
        })
        .await
        .unwrap();

    // Gap fetch: what a member missed after a sequence number, the same as it saw.
    let seen: Vec<Value> = watcher
        .events()
        .into_iter()
        .filter(|e| e.get("seq").is_some() && e["type"] != "welcome")
        .collect();
    let after = seen[seen.len() / 2]["seq"].as_i64().unwrap();
    let (status, page) = api
        .call(
            Method::GET,
            &format!("/api/rooms/{room}/events?after={after}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["complete"], true);
    let fetched: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = seen
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .filter(|s| *s > after)
        .collect();
    assert!(
        fetched.starts_with(&expected),
        "fetched {fetched:?}, watcher saw {expected:?}"
    );
    assert!(fetched.iter().all(|s| *s > after));

    // Gifts over the socket: short of coins is a clear error; with coins it is announced.
    alice.send(&json!({"type": "gift", "gift": "ring", "idempotency_key": "ring-1"}));
    alice
        .wait_for(Duration::from_secs(5), |e| {
            e["code"] == "insufficient_coins" && e["ref"] == "ring-1"
        })
        .await
        .unwrap();
    api.call(
        Method::POST,
        &format!("/api/users/{alice_id}/coins"),
        Some(&admin),
        Some(json!({"amount": 1000, "idempotency_key": "a1"})),
    )
    .await;
    alice.send(&json!({"type": "gift", "gift": "ring", "idempotency_key": "ring-2"}));
    let ack = alice
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "gift_ack" && e["ref"] == "ring-2"
        })
        .await
        .unwrap();
    assert_eq!(
        (ack["balance"].as_i64(), ack["duplicate"].as_bool()),
        (Some(480), Some(false))
    );
    let announced = watcher
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "gift" && e["ref"] == "ring-2"
        })
        .await
        .unwrap();
    assert_eq!(announced["gift"]["animation"], "ring");
    assert_eq!(announced["user"]["id"], *alice_id);
    alice.send(&json!({"type": "gift", "gift": "ring", "idempotency_key": "ring-2"}));
    alice
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "gift_ack" && e["duplicate"] == true
        })
        .await
        .unwrap();
    let (_, board) = api
        .call(
            Method::GET,
            &format!("/api/rooms/{room}/leaderboard"),
            None,
            None,
        )
        .await;
    assert_eq!(board[0]["user_id"], *alice_id);
    assert_eq!(board[0]["coins"], 520);

    // Kick: the connection is closed and rejoining is refused for a while.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room}/kick"),
            Some(&host_token),
            Some(json!({"user_id": alice_id})),
        )
        .await;
    assert_eq!(status, 204);
    let closed = wait(Duration::from_secs(5), || alice.closed().is_some()).await;
    assert!(closed, "kicked socket still open");
    let rejoin = RoomSocket::connect(&server.base, &room, Some(alice_token)).await;
    assert!(rejoin.is_err(), "a kicked user rejoined at once");
    assert!(bob.closed().is_none(), "others stay");

    // A ban closes the user's room connections and their token no longer gets back in.
    let bob_id = people[1].0;
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/users/{bob_id}/ban"),
            Some(&admin),
            Some(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        wait(Duration::from_secs(5), || bob.closed().is_some()).await,
        "banned user's socket still open"
    );
    assert!(
        RoomSocket::connect(&server.base, &room, Some(bob_token))
            .await
            .is_err()
    );
    assert!(watcher.closed().is_none());

    for socket in [bob, watcher] {
        socket.close().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_limits_and_moderation_on_sqlite() {
    protocol_and_moderation(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_limits_and_moderation_on_postgres() {
    if let Some(url) = queqiao_tests::postgres::fresh_database().await {
        protocol_and_moderation(Some(url)).await;
    }
}
