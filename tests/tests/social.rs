//! Issue 16 part B against a real server: sandbox recharges (packages only, idempotent,
//! audited, never negative) feeding a gift and the room's leaderboard (贡献榜); a server
//! without a payment provider refusing recharges; follows, a live notice when a followed
//! host goes live, and blocks — with the bad input each answers with a JSON error.

use queqiao_tests::api::{Api, server};
use queqiao_tests::clip::Clip;
use queqiao_tests::scenario::Scenario;
use queqiao_tests::whip::Publisher;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_recharge_gift_and_leaderboard() {
    let scenario = Scenario::start_with(None, |c| c.payment_sandbox = true).await;
    let (_, host_token) = scenario.account("hostess", "host").await;
    let Scenario {
        server: sandbox,
        api,
        ..
    } = scenario;
    let room = api
        .create_room(&host_token, json!({"title": "周末相亲局"}))
        .await;
    let (alice, alice_token) = api.register("alice").await;
    let alice_token = Some(alice_token.as_str());

    let (status, body) = api.get("/api/wallet/packages", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "sandbox");
    assert_eq!(body["packages"][0]["coins"], 60);

    // Bad input: no token, negative, zero, not a package, no key, unknown fields.
    let (status, body) = api
        .post(
            "/api/me/recharges",
            None,
            json!({"coins": 60, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    for coins in [-60, 0, 61, i64::MAX] {
        let (status, body) = api
            .post(
                "/api/me/recharges",
                alice_token,
                json!({"coins": coins, "idempotency_key": "k1"}),
            )
            .await;
        assert_eq!((status, code(&body)), (422, Some("validation")), "{body}");
        assert_eq!(body["error"]["field"], "coins", "{body}");
    }
    let (status, body) = api
        .post(
            "/api/me/recharges",
            alice_token,
            json!({"coins": 60, "idempotency_key": ""}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("idempotency_key")),
        "{body}"
    );
    let (status, body) = api
        .post(
            "/api/me/recharges",
            alice_token,
            json!({"coins": 60, "idempotency_key": "k1", "price_cents": 1}),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused: {body}");
    let (_, wallet) = api.get("/api/me/wallet", alice_token).await;
    assert_eq!(wallet["coins"], 0, "nothing credited by refused requests");

    // A recharge credits once per key.
    let (status, first) = api
        .post(
            "/api/me/recharges",
            alice_token,
            json!({"coins": 60, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["wallet"]["coins"], 60);
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["order"]["provider"], "sandbox");
    assert_eq!(first["order"]["price_cents"], 600);
    assert_eq!(first["order"]["user_id"], alice);
    let (status, again) = api
        .post(
            "/api/me/recharges",
            alice_token,
            json!({"coins": 60, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        again["wallet"]["coins"], 60,
        "a retry is not credited twice"
    );
    assert_eq!(again["order"]["id"], first["order"]["id"]);
    let (status, body) = api
        .post(
            "/api/me/recharges",
            alice_token,
            json!({"coins": 300, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!((status, code(&body)), (409, Some("conflict")), "{body}");
    let (status, history) = api.get("/api/me/recharges", alice_token).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");

    // The coins pay for a gift; the gifter tops the room's leaderboard.
    let (status, body) = api
        .post(
            &format!("/api/rooms/{room}/gifts"),
            alice_token,
            json!({"gift": "heart", "count": 2, "idempotency_key": "g1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, wallet) = api.get("/api/me/wallet", alice_token).await;
    assert_eq!(wallet["coins"], 40, "{wallet}");
    // More than the balance is refused and leaves it as it was.
    let (status, body) = api
        .post(
            &format!("/api/rooms/{room}/gifts"),
            alice_token,
            json!({"gift": "ring", "idempotency_key": "g2"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (_, wallet) = api.get("/api/me/wallet", alice_token).await;
    assert_eq!(wallet["coins"], 40, "never negative: {wallet}");
    let (status, board) = api
        .get(&format!("/api/rooms/{room}/leaderboard"), None)
        .await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(board[0]["user_id"], alice, "{board}");
    assert_eq!(board[0]["coins"], 20, "{board}");
    sandbox.stop().await;

    // Without a provider, recharging is refused with a JSON error.
    let plain = server(None).await;
    let api = Api::new(&plain);
    let (_, bob_token) = api.register("bob").await;
    let (_, body) = api.get("/api/wallet/packages", None).await;
    assert_eq!(body["provider"], "none");
    let (status, body) = api
        .post(
            "/api/me/recharges",
            Some(&bob_token),
            json!({"coins": 60, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!((status, code(&body)), (503, Some("unavailable")), "{body}");
    let (_, wallet) = api.get("/api/me/wallet", Some(&bob_token)).await;
    assert_eq!(wallet["coins"], 0);
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_live_notice_and_block() {
    let scenario = Scenario::start().await;
    let (host, host_token) = scenario.account("hostess", "host").await;
    let Scenario { server, api, .. } = scenario;
    let room = api
        .create_room(&host_token, json!({"title": "周末相亲局"}))
        .await;
    let (alice, alice_token) = api.register("alice").await;
    let alice_token = Some(alice_token.as_str());

    // Bad input.
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/users/{host}/follow"),
            None,
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/users/{alice}/follow"),
            alice_token,
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (422, Some("validation")), "{body}");
    for path in [
        "/api/users/99999/follow",
        "/api/users/abc/follow",
        "/api/users/99999/block",
    ] {
        let (status, body) = api.call(Method::PUT, path, alice_token, None).await;
        assert_eq!(
            (status, code(&body)),
            (404, Some("not_found")),
            "{path}: {body}"
        );
    }
    let (status, body) = api
        .get("/api/me/notices?since=yesterday", alice_token)
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("since")),
        "{body}"
    );

    // Follow (twice: still one follower), listed in my follows.
    for _ in 0..2 {
        let (status, body) = api
            .call(
                Method::PUT,
                &format!("/api/users/{host}/follow"),
                alice_token,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"following": true, "followers": 1}));
    }
    let (_, follows) = api.get("/api/me/follows", alice_token).await;
    assert_eq!(follows[0]["user_id"], host, "{follows}");
    assert_eq!(follows[0]["nickname"], "hostess", "{follows}");
    let (_, notices) = api.get("/api/me/notices", alice_token).await;
    assert_eq!(notices, json!([]), "nothing live yet");

    // The host goes live: alice gets a notice pointing at the room.
    let publisher = Publisher::start(
        &server.whip(&room),
        Some(&host_token),
        Arc::new(Clip::default_360p().unwrap()),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let notice = loop {
        let (status, notices) = api.get("/api/me/notices", alice_token).await;
        assert_eq!(status, 200, "{notices}");
        if let Some(first) = notices.get(0) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no live notice");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(notice["room_id"], room.as_str(), "{notice}");
    assert_eq!(notice["host_id"], host, "{notice}");
    assert_eq!(notice["title"], "周末相亲局", "{notice}");
    assert_eq!(notice["live"], true, "{notice}");
    let started = notice["started_at"].as_i64().unwrap();
    let (_, later) = api
        .get(&format!("/api/me/notices?since={started}"), alice_token)
        .await;
    assert_eq!(later, json!([]), "a seen notice is not repeated");
    drop(publisher);

    // Unfollow; block and unblock.
    let (_, body) = api
        .delete(&format!("/api/users/{host}/follow"), alice_token)
        .await;
    assert_eq!(body, json!({"following": false, "followers": 0}));
    let (_, notices) = api.get("/api/me/notices", alice_token).await;
    assert_eq!(
        notices,
        json!([]),
        "no notices from hosts I no longer follow"
    );
    let (status, blocks) = api
        .call(
            Method::PUT,
            &format!("/api/users/{host}/block"),
            alice_token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{blocks}");
    assert_eq!(blocks[0]["user_id"], host, "{blocks}");
    let (_, blocks) = api.get("/api/me/blocks", alice_token).await;
    assert_eq!(blocks.as_array().map(Vec::len), Some(1), "{blocks}");
    let (_, blocks) = api
        .delete(&format!("/api/users/{host}/block"), alice_token)
        .await;
    assert_eq!(blocks, json!([]));
    server.stop().await;
}
