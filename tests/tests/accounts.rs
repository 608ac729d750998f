//! Accounts, rooms and permissions through HTTP, with real WebRTC publishers and viewers.

use queqiao_tests::api::{ADMIN_PASSWORD, Api, server};
use queqiao_tests::clip::Clip;
use queqiao_tests::http::HttpClient;

use queqiao_tests::whep::{Viewer, ViewerOptions};
use queqiao_tests::whip::Publisher;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn clip() -> Arc<Clip> {
    Arc::new(Clip::default_360p().unwrap())
}

async fn full_flow(database_url: Option<String>) {
    let server = server(database_url.clone()).await;
    let api = Api::new(&server);

    // Register, log in; an admin makes the user a host.
    let (alice, _) = api.register("alice").await;
    let token = api.token("alice", "password-123").await;
    let (status, me) = api.call(Method::GET, "/api/me", Some(&token), None).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("viewer")));
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    api.make_host(&admin, alice).await;

    // The host creates a room and publishes to it with her own token.
    let room = api
        .create_room(&token, json!({"title": "周末相亲局", "tags": ["交友", "上海"], "city": "上海", "cover_url": "https://img.example/c.jpg"}))
        .await;
    let listed = api.call(Method::GET, "/api/rooms", None, None).await.1;
    assert_eq!(listed["items"][0]["id"], room);
    assert_eq!(listed["items"][0]["host"]["nickname"], "alice");
    assert_eq!(listed["items"][0]["live"], false);
    let publisher = Publisher::start(&server.whip(&room), Some(&token), clip())
        .await
        .unwrap();
    api.wait_room(&room, "live", |r| r["live"] == true).await;

    // The viewer count follows WHEP viewers joining and leaving.
    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(
            Viewer::start(&server.whep(&room), ViewerOptions::default())
                .await
                .unwrap(),
        );
    }
    api.wait_room(&room, "watched by 3", |r| r["viewers"] == 3)
        .await;
    let listed = api
        .call(Method::GET, "/api/rooms?live=true", None, None)
        .await
        .1;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["viewers"], 3);
    let leaving = viewers.pop().unwrap();
    assert_eq!(leaving.delete(&server.base).await.unwrap(), 200);
    api.wait_room(&room, "watched by 2", |r| r["viewers"] == 2)
        .await;

    // The stream URLs for the room.
    let (status, stream) = api
        .call(
            Method::GET,
            &format!("/api/rooms/{room}/stream"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stream["whep"], format!("{}/whep/{room}", server.base));
    assert_eq!(stream["live"], true);

    // The host ends the show: history is recorded.
    assert_eq!(
        publisher.delete(&server.base, Some(&token)).await.unwrap(),
        200
    );
    api.wait_room(&room, "offline", |r| r["live"] == false)
        .await;
    let (_, shows) = api
        .call(Method::GET, &format!("/api/rooms/{room}/shows"), None, None)
        .await;
    assert_eq!(shows.as_array().unwrap().len(), 1, "{shows}");
    assert_eq!(shows[0]["peak_viewers"], 3);
    assert_eq!(shows[0]["end_reason"], "publisher_left");
    assert!(shows[0]["ended_at"].as_i64().unwrap() >= shows[0]["started_at"].as_i64().unwrap());
    for viewer in viewers {
        viewer.close().await;
    }

    // A restart keeps users, rooms, history — and tokens stay valid (the key is stored).
    let server = server
        .restart(|c| {
            c.standalone = false;
            c.database_url = database_url;
        })
        .await
        .unwrap();
    let api = Api::new(&server);
    let (status, me) = api.call(Method::GET, "/api/me", Some(&token), None).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("host")), "{me}");
    assert_eq!(api.room(&room).await["title"], "周末相亲局");
    let (_, shows) = api
        .call(Method::GET, &format!("/api/rooms/{room}/shows"), None, None)
        .await;
    assert_eq!(shows.as_array().unwrap().len(), 1);
    api.token("alice", "password-123").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_on_sqlite() {
    full_flow(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_on_postgres() {
    if let Some(url) = queqiao_tests::postgres::fresh_database().await {
        full_flow(Some(url)).await;
    }
}

/// A token signed with `key` for `user`, expiring at `exp` (Unix seconds).
fn forge(key: &[u8], user: i64, version: i64, exp: u64) -> String {
    let claims = json!({"sub": user.to_string(), "ver": version, "role": "host", "iat": exp.saturating_sub(100), "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_table() {
    let server = server(None).await;
    let api = Api::new(&server);
    let http = HttpClient::new();
    let offer = queqiao_tests::offers::publisher_offer().await.unwrap();
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (host1, host1_token) = api.register("hostone").await;
    let (host2, host2_token) = api.register("hosttwo").await;
    let (viewer, viewer_token) = api.register("viewer").await;
    api.make_host(&admin, host1).await;
    api.make_host(&admin, host2).await;
    let room1 = api.create_room(&host1_token, json!({"title": "one"})).await;
    let whip1 = server.whip(&room1);

    // Roles: only hosts create rooms.
    let (status, _) = api
        .call(
            Method::POST,
            "/api/rooms",
            Some(&viewer_token),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(status, 403);

    // WHIP: viewer 403, other host 403, no token 401, bad tokens 401, unknown room 404.
    assert_eq!(
        http.post_sdp(&whip1, Some(&viewer_token), &offer)
            .await
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        http.post_sdp(&whip1, Some(&host2_token), &offer)
            .await
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        http.post_sdp(&whip1, None, &offer).await.unwrap().status,
        401
    );
    let key = {
        use base64::Engine;
        let stored = server
            .server
            .store
            .secret("jwt_signing_key", String::new)
            .await
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(stored)
            .unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = forge(&key, host1, 0, now - 3600);
    let forged = forge(
        b"not the server's key, not the server's key!",
        host1,
        0,
        now + 3600,
    );
    let valid_forgery_check = forge(&key, host1, 0, now + 3600);
    assert_eq!(
        http.post_sdp(&whip1, Some(&expired), &offer)
            .await
            .unwrap()
            .status,
        401,
        "expired"
    );
    assert_eq!(
        http.post_sdp(&whip1, Some(&forged), &offer)
            .await
            .unwrap()
            .status,
        401,
        "forged"
    );
    assert_eq!(
        http.post_sdp(&whip1, Some("not.a.jwt"), &offer)
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        http.post_sdp(&server.whip("no-such-room"), Some(&host1_token), &offer)
            .await
            .unwrap()
            .status,
        404
    );
    let (status, body) = api.call(Method::GET, "/api/me", Some(&expired), None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // The right host publishes (a correctly signed token works); a second session is 409.
    let publisher = Publisher::start(&whip1, Some(&valid_forgery_check), clip())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        http.post_sdp(&whip1, Some(&host1_token), &offer)
            .await
            .unwrap()
            .status,
        409
    );

    // Private rooms: anonymous or logged in without a grant, the room is unknown (404, as
    // for a room that does not exist); granted OK.
    let room2 = api
        .create_room(
            &host2_token,
            json!({"title": "private", "visibility": "private"}),
        )
        .await;
    let publisher2 = Publisher::start(&server.whip(&room2), Some(&host2_token), clip())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view_offer = offer.replace("a=sendonly", "a=recvonly");
    assert_eq!(
        http.post_sdp(&server.whep(&room2), None, &view_offer)
            .await
            .unwrap()
            .status,
        404
    );
    let whep_as = |token: &str| {
        let (http, url, offer, token) = (
            http.clone(),
            server.whep(&room2),
            view_offer.clone(),
            token.to_owned(),
        );
        async move {
            http.inner()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/sdp")
                .body(offer)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(whep_as(&viewer_token).await, 404);
    assert_eq!(
        api.call(Method::GET, &format!("/api/rooms/{room2}"), None, None)
            .await
            .0,
        404,
        "private rooms are hidden"
    );
    let listed = api.call(Method::GET, "/api/rooms", None, None).await.1;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != room2.as_str())
    );
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room2}/grants"),
            Some(&host1_token),
            Some(json!({"user_id": viewer})),
        )
        .await;
    assert_eq!(
        status, 404,
        "only the room's host grants (another host does not even know of the private room)"
    );
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room2}/grants"),
            Some(&host2_token),
            Some(json!({"user_id": viewer})),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(whep_as(&viewer_token).await, 201);
    assert_eq!(whep_as(&admin).await, 201, "admins may watch private rooms");

    // Bans: the token is revoked at once; a banned account cannot log in again.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/users/{viewer}/ban"),
            Some(&host1_token),
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(status, 403, "only admins ban");
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/users/{viewer}/ban"),
            Some(&admin),
            Some(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!((status, body["banned"].as_bool()), (200, Some(true)));
    assert_eq!(whep_as(&viewer_token).await, 401, "old token revoked");
    let (status, body) = api.login("viewer", "password-123").await;
    assert_eq!(status, 403, "banned accounts cannot log in: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("spam"),
        "{body}"
    );
    api.call(
        Method::POST,
        &format!("/api/users/{host2}/ban"),
        Some(&admin),
        Some(json!({"reason": "fake host"})),
    )
    .await;
    assert_eq!(api.login("hosttwo", "password-123").await.0, 403);
    assert_eq!(
        http.post_sdp(&server.whip(&room2), Some(&host2_token), &offer)
            .await
            .unwrap()
            .status,
        401,
        "the banned host's token was revoked"
    );
    // The ban also ended host two's live stream.
    api.wait_room_as(&room2, Some(&admin), "stopped by the ban", |r| {
        r["live"] == false
    })
    .await;

    // An admin stops a live stream; the show records why.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room1}/stop"),
            Some(&host2_token),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room1}/stop"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    api.wait_room(&room1, "stopped", |r| r["live"] == false)
        .await;
    let shows = api
        .call(
            Method::GET,
            &format!("/api/rooms/{room1}/shows"),
            None,
            None,
        )
        .await
        .1;
    assert_eq!(shows[0]["end_reason"], "stopped_by_admin");

    // Admin-only endpoints.
    assert_eq!(
        api.call(Method::GET, "/api/users", Some(&host1_token), None)
            .await
            .0,
        403
    );
    assert_eq!(
        api.call(Method::GET, "/api/users", Some(&admin), None)
            .await
            .1["total"],
        4
    );
    assert_eq!(
        api.call(Method::GET, "/api/sessions", Some(&viewer_token), None)
            .await
            .0,
        401
    );
    assert_eq!(
        api.call(Method::GET, "/api/sessions", Some(&admin), None)
            .await
            .0,
        200
    );
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/users/{viewer}/role"),
            Some(&host1_token),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 403);

    drop(publisher);
    drop(publisher2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_bad_input() {
    let server = server(None).await;
    let api = Api::new(&server);
    let http = HttpClient::new();
    let register = |body: Value| api.call(Method::POST, "/api/auth/register", None, Some(body));
    let expect_field = |(status, body): (u16, Value), field: &str| {
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "validation");
        assert_eq!(body["error"]["field"], field, "{body}");
    };
    expect_field(
        register(json!({"username": "bob", "password": "password-1", "nickname": ""})).await,
        "nickname",
    );
    expect_field(
        register(json!({"username": "1bob", "password": "password-1", "nickname": "b"})).await,
        "username",
    );
    expect_field(
        register(json!({"username": "bob", "password": "short", "nickname": "b"})).await,
        "password",
    );
    expect_field(register(json!({"username": "bob", "password": "password-1", "nickname": "b", "birth_year": 2020})).await, "birth_year");
    expect_field(register(json!({"username": "bob", "password": "password-1", "nickname": "b", "birth_year": "1990"})).await, "birth_year");
    expect_field(
        register(
            json!({"username": "bob", "password": "password-1", "nickname": "b", "is_admin": true}),
        )
        .await,
        "is_admin",
    );
    expect_field(
        register(json!({"username": "bob", "nickname": "b"})).await,
        "password",
    );
    expect_field(
        register(json!({"password": "password-1", "nickname": "b"})).await,
        "username",
    );

    // Injection-looking strings are stored and returned verbatim.
    let nasty_nick = "<img src=x onerror=alert(1)>";
    let nasty_bio = "'; DROP TABLE users; -- \u{1F495}";
    let (status, body) = register(json!({"username": "Bob", "password": "password-1", "nickname": nasty_nick, "bio": nasty_bio})).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (_, me) = api.call(Method::GET, "/api/me", Some(&token), None).await;
    assert_eq!(me["nickname"], nasty_nick);
    assert_eq!(me["bio"], nasty_bio);
    assert_eq!(
        register(json!({"username": "bob", "password": "password-1", "nickname": "x"}))
            .await
            .0,
        409,
        "case-insensitive duplicate"
    );

    // Wrong password and unknown user: the same 401 and message.
    let (status, wrong) = api.login("bob", "wrong-password").await;
    let (status2, unknown) = api.login("nobody", "wrong-password").await;
    assert_eq!((status, status2), (401, 401));
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);

    // Malformed JSON 400, wrong type 415, oversized 413.
    let url = server.url("/api/auth/login");
    let raw = |content_type: &'static str, body: Vec<u8>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.inner()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(raw("application/json", b"{\"login\": ".to_vec()).await, 400);
    assert_eq!(raw("text/plain", b"{}".to_vec()).await, 415);
    assert_eq!(raw("application/json", vec![b' '; 100 * 1024]).await, 413);
    let (status, body) = api
        .call(
            Method::PATCH,
            "/api/me",
            Some(&token),
            Some(json!({"tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("tags"))
    );
    let (status, body) = api
        .call(
            Method::PATCH,
            "/api/me",
            Some(&token),
            Some(json!({"city": null, "gender": "female"})),
        )
        .await;
    assert_eq!(
        (status, body["gender"].as_str(), body["city"].clone()),
        (200, Some("female"), Value::Null)
    );

    // Login attempts are rate-limited (per account and per address).
    let mut limited = None;
    for i in 0..40 {
        let (status, body) = api.login("bob", "wrong-password").await;
        if status == 429 {
            limited = Some((i, body));
            break;
        }
    }
    let (attempt, body) = limited.expect("login attempts were never limited");
    assert!(attempt < 15, "limited only after {attempt} attempts");
    assert_eq!(body["error"]["code"], "too_many_requests");

    // The OpenAPI document describes the API.
    let (status, doc) = api.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/auth/login",
        "/api/rooms",
        "/api/rooms/{id}/stream",
        "/api/users/{id}/ban",
    ] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
    // Unknown rooms and users are 404 with the JSON error shape.
    let (status, body) = api.call(Method::GET, "/api/rooms/nope", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(
        api.call(Method::GET, "/api/users/999", None, None).await.0,
        404
    );
    server.stop().await;
}
