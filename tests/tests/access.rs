//! The access policy against a real server: every role × room × state at every door, and
//! each attack of issue 10 (banned admin, kicked re-entry, private-room leaks, guessable
//! sessions, invisible characters, disguised blocked words) as a refusal.

use queqiao_tests::api::Api;
use queqiao_tests::clip::Clip;
use queqiao_tests::scenario::{FlvStream, Scenario, account, wait_bridged, ws_status};
use queqiao_tests::server::TestServer;
use queqiao_tests::whip::Publisher;
use queqiao_tests::ws::RoomSocket;
use reqwest::Method;
use serde_json::{Value, json};
use signaling::access::{Actor, Decision, Door, RoomFacts, Standing, decide};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn clip() -> Arc<Clip> {
    Arc::new(Clip::default_360p().unwrap())
}

/// A client that gives up on a stalled request (media responses stream forever).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Bans an account in storage without touching its token version: what another node's
/// ban looks like to this one before the token is refused — the ban itself must hold.
async fn ban_in_storage(server: &TestServer, id: i64) {
    sqlx::query("UPDATE users SET banned_at = 1, ban_reason = 'stored ban' WHERE id = ?")
        .bind(id)
        .execute(server.server.store.pool())
        .await
        .unwrap();
}

/// How many media sessions `user` holds (admin's view).
async fn sessions_of(api: &Api, admin: &str, user: i64) -> usize {
    let (_, sessions) = api.get("/api/sessions", Some(admin)).await;
    sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["user_id"] == user)
        .count()
}

/// The status a door answers `token` in `room`, and the response's Cache-Control.
/// Each probe is harmless when allowed: WHIP/WHEP get a body of the wrong type (415 once
/// past the policy), a gift names no gift (422), moderation lifts a mute nobody has.
async fn probe(
    server: &TestServer,
    door: Door,
    room: &str,
    token: Option<&str>,
    someone: i64,
) -> (u16, Option<String>) {
    let http = client();
    let (method, path, body): (Method, String, Option<Value>) = match door {
        Door::RoomRead => (Method::GET, format!("/api/rooms/{room}"), None),
        Door::RoomManage => (Method::GET, format!("/api/rooms/{room}/grants"), None),
        Door::Whip => (Method::POST, format!("/whip/{room}"), None),
        Door::Whep => (Method::POST, format!("/whep/{room}"), None),
        Door::WebSocket => return (ws_status(&server.base, room, token).await, None),
        Door::Speak => (
            Method::POST,
            format!("/api/rooms/{room}/gifts"),
            Some(json!({"gift": "no-such-gift", "idempotency_key": "probe"})),
        ),
        Door::Media => (Method::GET, format!("/live/{room}.flv"), None),
        Door::Recordings => (Method::GET, format!("/api/rooms/{room}/recordings"), None),
        Door::Leaderboard => (Method::GET, format!("/api/rooms/{room}/leaderboard"), None),
        Door::Events => (
            Method::GET,
            format!("/api/rooms/{room}/events?after=0"),
            None,
        ),
        Door::ChatHistory => (Method::GET, format!("/api/rooms/{room}/chat"), None),
        Door::Moderate => (
            Method::DELETE,
            format!("/api/rooms/{room}/mutes/{someone}"),
            None,
        ),
        Door::Administer => (Method::GET, "/api/users".to_owned(), None),
    };
    let mut request = http.request(method, server.url(&path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if matches!(door, Door::Whip | Door::Whep) {
        request = request.header("content-type", "text/plain").body("not sdp");
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if status >= 400 {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{door:?} {status}: not the one error shape: {body}"
        );
    }
    (status, cache)
}

/// What an allowed request answers at each door (see [`probe`]).
fn allowed_status(door: Door) -> u16 {
    match door {
        Door::Whip | Door::Whep => 415,
        Door::WebSocket => 101,
        Door::Speak => 422,
        Door::Moderate => 204,
        _ => 200,
    }
}

struct Subject {
    label: &'static str,
    token: Option<String>,
    actor: Actor,
    granted: bool,
    kicked: bool,
    banned: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_room_and_state_gets_the_policys_status_at_every_door() {
    let Scenario { server, api, admin } = Scenario::start().await;
    let (_, host) = account(&api, &admin, "roomhost", "host").await;
    let (granted_id, granted) = account(&api, &admin, "granted", "viewer").await;
    let (_, outsider) = account(&api, &admin, "outsider", "viewer").await;
    let (kicked_id, kicked) = account(&api, &admin, "kickedviewer", "viewer").await;
    let (banned_id, banned) = account(&api, &admin, "bannedviewer", "viewer").await;
    let (_, other_host) = account(&api, &admin, "otherhost", "host").await;
    let (kicked_host_id, kicked_host) = account(&api, &admin, "kickedhost", "host").await;
    let (admin2_id, admin2) = account(&api, &admin, "kickedadmin", "admin").await;

    let public = api.create_room(&host, json!({"title": "public"})).await;
    let private = api
        .create_room(&host, json!({"title": "private", "visibility": "private"}))
        .await;
    for user in [granted_id, kicked_id, banned_id, kicked_host_id] {
        let (status, _) = api
            .post(
                &format!("/api/rooms/{private}/grants"),
                Some(&host),
                json!({"user_id": user}),
            )
            .await;
        assert_eq!(status, 204);
    }
    for room in [&public, &private] {
        for user in [kicked_id, kicked_host_id, admin2_id] {
            let (status, body) = api
                .post(
                    &format!("/api/rooms/{room}/kick"),
                    Some(&host),
                    json!({"user_id": user, "seconds": 600}),
                )
                .await;
            assert_eq!(status, 204, "{body}");
        }
    }
    ban_in_storage(&server, banned_id).await;
    let publishers = [
        Publisher::start(&server.whip(&public), Some(&host), clip())
            .await
            .unwrap(),
        Publisher::start(&server.whip(&private), Some(&host), clip())
            .await
            .unwrap(),
    ];
    wait_bridged(&server, &public).await;
    wait_bridged(&server, &private).await;

    let subject = |label, token: Option<&String>, actor, granted, kicked, banned| Subject {
        label,
        token: token.cloned(),
        actor,
        granted,
        kicked,
        banned,
    };
    let subjects = [
        subject("anonymous", None, Actor::Anonymous, false, false, false),
        subject(
            "granted viewer",
            Some(&granted),
            Actor::Viewer,
            true,
            false,
            false,
        ),
        subject(
            "outsider viewer",
            Some(&outsider),
            Actor::Viewer,
            false,
            false,
            false,
        ),
        subject(
            "kicked viewer",
            Some(&kicked),
            Actor::Viewer,
            true,
            true,
            false,
        ),
        subject(
            "banned viewer",
            Some(&banned),
            Actor::Viewer,
            true,
            false,
            true,
        ),
        subject(
            "room host",
            Some(&host),
            Actor::RoomHost,
            false,
            false,
            false,
        ),
        subject(
            "other host",
            Some(&other_host),
            Actor::OtherHost,
            false,
            false,
            false,
        ),
        subject(
            "kicked other host",
            Some(&kicked_host),
            Actor::OtherHost,
            true,
            true,
            false,
        ),
        subject("admin", Some(&admin), Actor::Admin, false, false, false),
        subject(
            "kicked admin",
            Some(&admin2),
            Actor::Admin,
            false,
            true,
            false,
        ),
    ];
    let mut checked = 0;
    let mut failures = Vec::new();
    for (room, private_room) in [(&public, false), (&private, true)] {
        let facts = RoomFacts {
            exists: true,
            private: private_room,
            anonymous_viewers: true,
        };
        for s in &subjects {
            let who = Standing {
                actor: s.actor,
                banned: s.banned,
                granted: s.granted && private_room,
                kicked: s.kicked,
                muted: false,
            };
            for door in Door::ALL {
                let decision = decide(who, facts, door);
                let expected = match decision {
                    Decision::Allow => allowed_status(door),
                    other => other.status(),
                };
                let (status, cache) = probe(&server, door, room, s.token.as_deref(), 1).await;
                checked += 1;
                if status != expected {
                    failures.push(format!(
                        "{} at {door:?} of the {} room: {status}, expected {expected}",
                        s.label,
                        if private_room { "private" } else { "public" }
                    ));
                }
                if door == Door::Media && status == 200 {
                    let cache = cache.unwrap_or_default();
                    assert_eq!(
                        cache.contains("private") && cache.contains("no-store"),
                        private_room,
                        "Cache-Control {cache:?} for the {} room",
                        if private_room { "private" } else { "public" }
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 2 * subjects.len() * Door::ALL.len());
    // A room that does not exist is the same 404 as a private room one may not know of.
    for door in Door::ALL.into_iter().filter(|d| *d != Door::Administer) {
        assert_eq!(
            probe(&server, door, "no-such-room", Some(&outsider), 1)
                .await
                .0,
            404,
            "{door:?}"
        );
    }
    for publisher in publishers {
        publisher.delete(&server.base, Some(&host)).await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_admin_cannot_log_in_again_nor_unban_itself_and_the_last_admin_stays() {
    let Scenario { server, api, admin } = Scenario::start().await;
    let (admin_id, _) = {
        let (_, me) = api.get("/api/me", Some(&admin)).await;
        (me["id"].as_i64().unwrap(), ())
    };
    // The only admin cannot be banned (not even by themselves): 409 with a clear reason.
    let (status, body) = api
        .post(
            &format!("/api/users/{admin_id}/ban"),
            Some(&admin),
            json!({"reason": "oops"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last active admin"),
        "{body}"
    );

    // A second admin is banned by the first.
    let (rogue_id, rogue) = account(&api, &admin, "rogueadmin", "admin").await;
    let (status, _) = api
        .post(
            &format!("/api/users/{rogue_id}/ban"),
            Some(&admin),
            json!({"reason": "abuse"}),
        )
        .await;
    assert_eq!(status, 200);
    // The old token is dead, a new login is refused, and the unban attempt fails.
    let (status, body) = api.login("rogueadmin", "password-123").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("abuse"));
    let unban = |token: String| {
        let api = Api::new(&server);
        async move {
            api.delete(&format!("/api/users/{rogue_id}/ban"), Some(&token))
                .await
        }
    };
    assert_eq!(unban(rogue.clone()).await.0, 401, "revoked token");
    // Even with a token that is still valid (a ban stored by another node), the banned
    // admin has no power left: every authenticated request checks the ban.
    let rogue_fresh = {
        sqlx::query("UPDATE users SET banned_at = NULL WHERE id = ?")
            .bind(rogue_id)
            .execute(server.server.store.pool())
            .await
            .unwrap();
        let token = api.token("rogueadmin", "password-123").await;
        ban_in_storage(&server, rogue_id).await;
        token
    };
    let (status, body) = unban(rogue_fresh.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    for (method, path) in [
        (Method::GET, "/api/users".to_owned()),
        (Method::GET, "/api/sessions".to_owned()),
        (Method::GET, "/api/me".to_owned()),
        (Method::PUT, format!("/api/users/{admin_id}/role")),
    ] {
        let (status, body) = api
            .call(
                method,
                &path,
                Some(&rogue_fresh),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, me) = api.get(&format!("/api/users/{rogue_id}"), None).await;
    assert_eq!(status, 200);
    assert!(
        me.get("phone").is_none() && me.get("username").is_none(),
        "{me}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_hold_at_whep_ws_and_flv_for_their_duration_and_across_a_restart() {
    let Scenario { server, api, admin } = Scenario::start().await;
    let (_, host) = account(&api, &admin, "kickhost", "host").await;
    let (viewer_id, viewer) = account(&api, &admin, "kicked", "viewer").await;
    let (brief_id, brief) = account(&api, &admin, "brief", "viewer").await;
    let room = api.create_room(&host, json!({"title": "kicks"})).await;
    let publisher = Publisher::start(&server.whip(&room), Some(&host), clip())
        .await
        .unwrap();
    wait_bridged(&server, &room).await;
    let offer = queqiao_tests::offers::publisher_offer()
        .await
        .unwrap()
        .replace("a=sendonly", "a=recvonly");
    let http = queqiao_tests::http::HttpClient::new();
    // Before the kick: in through WHEP, the socket and FLV (with a playback link).
    let before = http
        .post_sdp(&server.whep(&room), Some(&viewer), &offer)
        .await
        .unwrap();
    assert_eq!(before.status, 201);
    let socket = RoomSocket::connect(&server.base, &room, Some(&viewer))
        .await
        .unwrap();
    let (_, stream) = api
        .get(&format!("/api/rooms/{room}/stream"), Some(&viewer))
        .await;
    let flv_link = stream["flv"].as_str().unwrap().to_owned();
    let hls_link = stream["hls"].as_str().unwrap().to_owned();
    assert_eq!(client().get(&hls_link).send().await.unwrap().status(), 200);
    // Open FLV streams: the viewer's (by the playback link, as a WeChat player plays it)
    // and an anonymous bystander's.
    let mut open_flv = FlvStream::open(&flv_link, None).await;
    let mut bystander = FlvStream::open(&server.url(&format!("/live/{room}.flv")), None).await;

    for (user, seconds) in [(viewer_id, 600), (brief_id, 2)] {
        let (status, _) = api
            .post(
                &format!("/api/rooms/{room}/kick"),
                Some(&host),
                json!({"user_id": user, "seconds": seconds}),
            )
            .await;
        assert_eq!(status, 204);
    }
    // The kick cuts the viewer's already-open FLV stream, not only new requests; the
    // bystander's stream flows on.
    let ended = open_flv.ended_within(Duration::from_secs(2)).await;
    assert!(ended.is_some(), "the kicked viewer's open FLV kept flowing");
    assert!(
        bystander.flows_for(Duration::from_secs(1)).await,
        "a bystander's FLV was cut by someone else's kick"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while socket.closed().is_none() {
        assert!(Instant::now() < deadline, "the kicked socket stayed open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = |status: u16, door: &str| assert_eq!(status, 403, "kicked re-entry by {door}");
    refused(
        client()
            .get(&hls_link)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        "HLS with the playback link",
    );
    refused(
        http.post_sdp(&server.whep(&room), Some(&viewer), &offer)
            .await
            .unwrap()
            .status,
        "WHEP",
    );
    refused(ws_status(&server.base, &room, Some(&viewer)).await, "WS");
    refused(
        client()
            .get(&flv_link)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        "FLV with the playback link",
    );
    refused(
        client()
            .get(server.url(&format!("/live/{room}.flv")))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        "FLV with the account token",
    );
    // Coming back anonymously and logging in on the socket does not get around it.
    let anonymous = RoomSocket::connect(&server.base, &room, None)
        .await
        .unwrap();
    anonymous.send(&json!({"type": "auth", "token": viewer}));
    let error = anonymous
        .wait_for(Duration::from_secs(5), |e| e["type"] == "error")
        .await
        .unwrap();
    assert_eq!(error["code"], "forbidden", "{error}");
    anonymous.close().await;
    publisher.drop_silently().await;

    // The kick is stored: after a restart on the same data it still holds.
    let server = server
        .restart(|c| {
            c.standalone = false;
        })
        .await
        .unwrap();
    refused(
        ws_status(&server.base, &room, Some(&viewer)).await,
        "WS after a restart",
    );
    refused(
        http.post_sdp(&server.whep(&room), Some(&viewer), &offer)
            .await
            .unwrap()
            .status,
        "WHEP after a restart",
    );
    // A kick ends when it expires.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(ws_status(&server.base, &room, Some(&brief)).await, 101);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_grant_ends_the_viewers_sessions_in_the_private_room() {
    let Scenario { server, api, admin } = Scenario::start().await;
    let (_, host) = account(&api, &admin, "privhost", "host").await;
    let (viewer_id, viewer) = account(&api, &admin, "guest", "viewer").await;
    let room = api
        .create_room(&host, json!({"title": "p", "visibility": "private"}))
        .await;
    api.post(
        &format!("/api/rooms/{room}/grants"),
        Some(&host),
        json!({"user_id": viewer_id}),
    )
    .await;
    let publisher = Publisher::start(&server.whip(&room), Some(&host), clip())
        .await
        .unwrap();
    wait_bridged(&server, &room).await;
    let offer = queqiao_tests::offers::publisher_offer()
        .await
        .unwrap()
        .replace("a=sendonly", "a=recvonly");
    let http = queqiao_tests::http::HttpClient::new();
    let whep = http
        .post_sdp(&server.whep(&room), Some(&viewer), &offer)
        .await
        .unwrap();
    assert_eq!(whep.status, 201, "{}", whep.body);
    let flv_url = server.url(&format!("/live/{room}.flv"));
    let mut open_flv = FlvStream::open(&flv_url, Some(&viewer)).await;
    let mut hosts_flv = FlvStream::open(&flv_url, Some(&host)).await;
    let socket = RoomSocket::connect(&server.base, &room, Some(&viewer))
        .await
        .unwrap();
    assert_eq!(sessions_of(&api, &admin, viewer_id).await, 1);
    let (status, _) = api
        .delete(
            &format!("/api/rooms/{room}/grants/{viewer_id}"),
            Some(&host),
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        open_flv
            .ended_within(Duration::from_secs(2))
            .await
            .is_some(),
        "the revoked viewer's open FLV kept flowing"
    );
    assert!(
        hosts_flv.flows_for(Duration::from_secs(1)).await,
        "the host's own FLV was cut"
    );
    assert_eq!(
        client()
            .get(&flv_url)
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "FLV after the revocation"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while socket.closed().is_none() || sessions_of(&api, &admin, viewer_id).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the revoked viewer's sessions outlived the grant"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http.post_sdp(&server.whep(&room), Some(&viewer), &offer)
            .await
            .unwrap()
            .status,
        404,
        "the room is unknown again"
    );
    publisher.delete(&server.base, Some(&host)).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_are_random_and_a_foreign_session_cannot_be_ended() {
    let Scenario { server, api, admin } = Scenario::start().await;
    let (_, host) = account(&api, &admin, "sesshost", "host").await;
    let (_, other_host) = account(&api, &admin, "sessother", "host").await;
    let (_, alice) = account(&api, &admin, "sessalice", "viewer").await;
    let (_, bob) = account(&api, &admin, "sessbob", "viewer").await;
    let room = api.create_room(&host, json!({"title": "ids"})).await;
    let http = queqiao_tests::http::HttpClient::new();
    let publisher_offer = queqiao_tests::offers::publisher_offer().await.unwrap();
    let whip = http
        .post_sdp(&server.whip(&room), Some(&host), &publisher_offer)
        .await
        .unwrap();
    assert_eq!(whip.status, 201, "{}", whip.body);
    let whip_location = server.url(whip.location.as_deref().unwrap());
    let offer = publisher_offer.replace("a=sendonly", "a=recvonly");

    let mut ids = Vec::new();
    let mut locations = Vec::new();
    for i in 0..8 {
        let token = if i % 2 == 0 {
            Some(alice.as_str())
        } else {
            None
        };
        let whep = http
            .post_sdp(&server.whep(&room), token, &offer)
            .await
            .unwrap();
        assert_eq!(whep.status, 201, "{}", whep.body);
        let location = whep.location.unwrap();
        let id = location.rsplit('/').next().unwrap().to_owned();
        assert_eq!(id.len(), 32, "128 bits as hex: {id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{id}"
        );
        ids.push(u128::from_str_radix(&id, 16).unwrap());
        locations.push((server.url(&location), token.is_some()));
    }
    // Distinct, and not a counter times a constant: consecutive differences vary, and
    // about half of all bits are set.
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len());
    let differences: Vec<u128> = ids.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    assert!(differences.windows(2).any(|d| d[0] != d[1]));
    let ones: u32 = ids.iter().map(|id| id.count_ones()).sum();
    assert!(
        (256..=768).contains(&ones),
        "{ones} of 1024 bits set: not uniform"
    );
    // The media plane's own peer ids are no handle on a session.
    for peer in 1..=12u64 {
        assert_eq!(
            http.delete(&server.url(&format!("/whep/{room}/{peer}")), None)
                .await
                .unwrap(),
            404
        );
    }
    // A logged-in viewer's session ends only with its id and that viewer's token.
    let (alice_session, _) = &locations[0];
    assert_eq!(http.delete(alice_session, None).await.unwrap(), 401);
    assert_eq!(http.delete(alice_session, Some(&bob)).await.unwrap(), 403);
    assert_eq!(http.delete(alice_session, Some(&alice)).await.unwrap(), 200);
    assert_eq!(http.delete(alice_session, Some(&alice)).await.unwrap(), 404);
    // An anonymous viewer's session ends with its exact id.
    let (anonymous_session, _) = &locations[1];
    assert_eq!(http.delete(anonymous_session, None).await.unwrap(), 200);
    // The WHIP session needs the host's token for DELETE and PATCH.
    assert_eq!(http.delete(&whip_location, None).await.unwrap(), 401);
    assert_eq!(
        http.delete(&whip_location, Some(&other_host))
            .await
            .unwrap(),
        403
    );
    let patch = |token: Option<&str>| {
        let mut request = client()
            .patch(&whip_location)
            .header("content-type", "application/trickle-ice-sdpfrag")
            .body("a=ice-ufrag:x\r\n");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(patch(None).await, 401);
    assert_eq!(patch(Some(&other_host)).await, 403);
    assert_eq!(patch(Some(&host)).await, 204);
    assert_eq!(http.delete(&whip_location, Some(&host)).await.unwrap(), 200);
    for (location, logged_in) in locations.iter().skip(2) {
        let token = logged_in.then_some(alice.as_str());
        http.delete(location, token).await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_characters_are_refused_and_blocked_words_match_normalised() {
    let Scenario { server, api, admin } = Scenario::start_with(None, |c| {
        c.blocked_words = vec!["spam".into()];
    })
    .await;
    for nickname in [
        "ad\u{202E}nimda",
        "a\u{200B}b",
        "\u{2066}x\u{2069}",
        "x\u{FEFF}",
    ] {
        let (status, body) = api
            .post(
                "/api/auth/register",
                None,
                json!({"username": "sneaky", "password": "password-123", "nickname": nickname}),
            )
            .await;
        assert_eq!(status, 422, "{nickname:?}: {body}");
        assert_eq!(body["error"]["field"], "nickname");
    }
    let (_, token) = account(&api, &admin, "plain", "viewer").await;
    let (status, body) = api
        .call(
            Method::PATCH,
            "/api/me",
            Some(&token),
            Some(json!({"nickname": "admin\u{200D}"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("validation"))
    );

    let (_, host) = account(&api, &admin, "wordhost", "host").await;
    let room = api.create_room(&host, json!({"title": "words"})).await;
    let socket = RoomSocket::connect(&server.base, &room, Some(&token))
        .await
        .unwrap();
    for (i, (text, code)) in [
        ("hello \u{202E}dlrow", "invalid"),
        ("zero\u{200B}width", "invalid"),
        ("buy ＳＰＡＭ now", "blocked_word"),
        ("SpAm", "blocked_word"),
    ]
    .into_iter()
    .enumerate()
    {
        let reference = format!("c{i}");
        socket.send(&json!({"type": "chat", "text": text, "client_id": reference}));
        let error = socket
            .wait_for(Duration::from_secs(5), |e| {
                e["type"] == "error" && e["ref"] == reference.as_str()
            })
            .await
            .unwrap();
        assert_eq!(error["code"], code, "{text:?}: {error}");
    }
    socket.send(&json!({"type": "chat", "text": "你好", "client_id": "ok"}));
    socket
        .wait_for(Duration::from_secs(5), |e| {
            e["type"] == "chat" && e["text"] == "你好"
        })
        .await
        .unwrap();
    assert!(socket.closed().is_none(), "errors keep the socket open");
    socket.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_credentials_are_ephemeral_playback_tokens_are_scoped_and_profiles_limited() {
    use base64::Engine;
    use hmac::Mac;
    let Scenario { server, api, admin } = Scenario::start_with(None, |c| {
        c.access.turn_secret = Some("coturn-shared-secret".into());
        c.access.turn_urls = vec!["turn:turn.example.net:3478?transport=udp".into()];
        c.access.profile_reads_per_minute_per_ip = 3;
    })
    .await;
    let (_, host) = account(&api, &admin, "turnhost", "host").await;
    let (viewer_id, viewer) = account(&api, &admin, "turnviewer", "viewer").await;
    let room = api.create_room(&host, json!({"title": "turn"})).await;
    let other = api
        .create_room(&host, json!({"title": "other", "visibility": "private"}))
        .await;

    let check = |username: &str, credential: &str, user: &str| {
        let (expiry, who) = username.split_once(':').unwrap();
        assert_eq!(who, user);
        let expiry: u64 = expiry.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            expiry > now && expiry <= now + 3600 + 5,
            "{expiry} vs {now}"
        );
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"coturn-shared-secret").unwrap();
        mac.update(username.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            credential, expected,
            "password = base64(HMAC-SHA1(secret, username))"
        );
    };
    let (status, stream) = api
        .get(&format!("/api/rooms/{room}/stream"), Some(&viewer))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        stream["turn"]["urls"][0],
        "turn:turn.example.net:3478?transport=udp"
    );
    check(
        stream["turn"]["username"].as_str().unwrap(),
        stream["turn"]["credential"].as_str().unwrap(),
        &viewer_id.to_string(),
    );
    // The WHEP answer's Link header carries the same kind of credential.
    let http = queqiao_tests::http::HttpClient::new();
    let publisher_offer = queqiao_tests::offers::publisher_offer().await.unwrap();
    let whip = http
        .post_sdp(&server.whip(&room), Some(&host), &publisher_offer)
        .await
        .unwrap();
    assert_eq!(whip.status, 201);
    let whep = http
        .post_sdp(
            &server.whep(&room),
            None,
            &publisher_offer.replace("a=sendonly", "a=recvonly"),
        )
        .await
        .unwrap();
    assert_eq!(whep.status, 201);
    let link = whep
        .links
        .iter()
        .find(|l| l.starts_with("<turn:"))
        .expect("a TURN Link");
    let field = |name: &str| {
        link.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned()
    };
    check(&field("username"), &field("credential"), "anonymous");
    assert!(link.contains("credential-type=\"password\""), "{link}");

    // A playback token opens only its room, and is not an account token.
    let (_, stream) = api
        .get(&format!("/api/rooms/{room}/stream"), Some(&viewer))
        .await;
    let playback = stream["playback_token"].as_str().unwrap().to_owned();
    assert!(stream["playback_token_expires_at"].as_u64().is_some());
    assert_eq!(
        api.get("/api/me", Some(&playback)).await.0,
        401,
        "a playback token is not an account token"
    );
    let status = client()
        .get(server.url(&format!("/live/{other}.flv?token={playback}")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "a playback token for another (private) room");
    let (status, _) = api.get(&format!("/api/rooms/{room}/stream"), None).await;
    assert_eq!(status, 200);
    http.delete(&server.url(whip.location.as_deref().unwrap()), Some(&host))
        .await
        .unwrap();

    // Public profiles: public fields only, and a few reads per minute per address.
    for _ in 0..3 {
        let (status, profile) = api.get(&format!("/api/users/{viewer_id}"), None).await;
        assert_eq!(status, 200);
        for private in ["phone", "username", "banned", "ban_reason"] {
            assert!(profile.get(private).is_none(), "{private} in {profile}");
        }
    }
    let (status, body) = api.get(&format!("/api/users/{viewer_id}"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_requests"))
    );
    server.stop().await;
}

/// Sends a chat line as `socket` and returns the first answer about it: its echo (the
/// `chat` event) or the `error` that refers to it.
async fn chat_answer(socket: &RoomSocket, text: &str, client_id: &str) -> Value {
    socket.send(&json!({"type": "chat", "text": text, "client_id": client_id}));
    socket
        .wait_for(Duration::from_secs(5), |e| {
            (e["type"] == "error" && e["ref"] == client_id)
                || (e["type"] == "chat" && e["text"] == text)
        })
        .await
        .unwrap_or_else(|err| panic!("no answer to chat {client_id}: {err:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutes_are_stored_and_hold_across_a_restart_until_they_expire() {
    let scenario = Scenario::start().await;
    let (_, host) = scenario.account("mutehost", "host").await;
    let (muted_id, muted) = scenario.account("muted", "viewer").await;
    let (brief_id, brief) = scenario.account("brieflymuted", "viewer").await;
    let room = scenario.room(&host, "mutes", false).await;
    scenario.mute(&host, &room, muted_id, 600).await;
    scenario.mute(&host, &room, brief_id, 2).await;
    let base = scenario.server.base.clone();
    let socket = RoomSocket::connect(&base, &room, Some(&muted))
        .await
        .unwrap();
    let answer = chat_answer(&socket, "before the restart", "m-1").await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("muted")),
        "{answer}"
    );
    socket.close().await;

    // Same data directory, new process state: the mute is read back from storage.
    let server = scenario
        .server
        .restart(|c| {
            c.standalone = false;
        })
        .await
        .unwrap();
    let socket = RoomSocket::connect(&server.base, &room, Some(&muted))
        .await
        .unwrap();
    let answer = chat_answer(&socket, "after the restart", "m-2").await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("muted")),
        "the mute did not survive the restart: {answer}"
    );
    assert!(
        answer["message"].as_str().unwrap().contains("more seconds"),
        "{answer}"
    );
    socket.close().await;
    // A stored mute ends when it expires, restart or not.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let socket = RoomSocket::connect(&server.base, &room, Some(&brief))
        .await
        .unwrap();
    let answer = chat_answer(&socket, "my mute is over", "b-1").await;
    assert_eq!(answer["type"], "chat", "{answer}");
    socket.close().await;
    // Lifting a mute is stored too.
    let api = Api::new(&server);
    let host = api.token("mutehost", "password-123").await;
    let (status, _) = api
        .delete(&format!("/api/rooms/{room}/mutes/{muted_id}"), Some(&host))
        .await;
    assert_eq!(status, 204);
    let server = server
        .restart(|c| {
            c.standalone = false;
        })
        .await
        .unwrap();
    let socket = RoomSocket::connect(&server.base, &room, Some(&muted))
        .await
        .unwrap();
    let answer = chat_answer(&socket, "unmuted for good", "m-3").await;
    assert_eq!(answer["type"], "chat", "{answer}");
    socket.close().await;
    server.stop().await;
}

/// Two admins ban each other at the same moment, `rounds` times, over HTTP and straight
/// through the store: never may both bans succeed (no active admin would be left).
async fn two_admins_ban_each_other(database_url: Option<String>, rounds: usize) {
    let scenario = Scenario::start_with(database_url, |_| {}).await;
    let store = scenario.server.server.store.clone();
    let mut pairs = Vec::new();
    for round in 0..rounds {
        let a = scenario.account(&format!("racer{round}a"), "admin").await;
        let b = scenario.account(&format!("racer{round}b"), "admin").await;
        pairs.push((a, b));
    }
    let ban = |by: String, target: i64| {
        let api = Api::new(&scenario.server);
        async move {
            api.post(
                &format!("/api/users/{target}/ban"),
                Some(&by),
                json!({"reason": "race"}),
            )
            .await
            .0
        }
    };
    let active = || async { store.active_admins().await.unwrap() };
    for (round, ((a_id, a), (b_id, b))) in pairs.into_iter().enumerate() {
        // Only this round's racers are active admins.
        sqlx::query(&format!(
            "UPDATE users SET banned_at = 1 WHERE role = 'admin' AND id NOT IN ({a_id}, {b_id})"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(&format!(
            "UPDATE users SET banned_at = NULL WHERE id IN ({a_id}, {b_id})"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        assert_eq!(active().await, 2, "round {round} before the race");
        let (ab, ba) = tokio::join!(ban(a.clone(), b_id), ban(b.clone(), a_id));
        assert_eq!(
            [ab, ba].iter().filter(|s| **s == 200).count(),
            1,
            "round {round} over HTTP: {ab} {ba}"
        );
        assert_eq!(active().await, 1, "round {round} over HTTP");
        // The same race with nothing in front of the store.
        store.set_ban(a_id, None).await.unwrap();
        store.set_ban(b_id, None).await.unwrap();
        assert_eq!(active().await, 2);
        let (ab, ba) = tokio::join!(
            store.ban_keeping_an_admin(b_id, "race"),
            store.ban_keeping_an_admin(a_id, "race")
        );
        let banned = [ab.unwrap(), ba.unwrap()]
            .iter()
            .filter(|done| done.is_some())
            .count();
        assert_eq!(banned, 1, "round {round} in the store");
        assert_eq!(active().await, 1, "round {round} in the store");
    }
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_banning_each_other_at_once_leave_one_admin_on_sqlite_and_postgres() {
    two_admins_ban_each_other(None, 10).await;
    if let Some(url) = queqiao_tests::postgres::fresh_database().await {
        two_admins_ban_each_other(Some(url), 10).await;
    }
}
