//! What the web and mini-program clients rely on (issue 16), against a real server: stable
//! error codes for sign-up and log-in, viewer counts that leave out the host's own
//! connection (so viewer, studio and API agree), the host's role in chat history (also after
//! a restart), and likes counted per show.

use queqiao_tests::api::{ADMIN_PASSWORD, Api, server};
use queqiao_tests::clip::Clip;
use queqiao_tests::whip::Publisher;
use queqiao_tests::ws::RoomSocket;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_counts_roles_and_likes_per_show() {
    let mut server = server(None).await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (host, host_token) = api.register("hostess").await;
    api.make_host(&admin, host).await;
    let room = api
        .create_room(&host_token, json!({"title": "周末相亲局"}))
        .await;
    let (_alice, alice_token) = api.register("alice").await;

    // Stable codes the clients translate (zh/en), not English sentences to show.
    let (status, body) = api
        .call(
            Method::POST,
            "/api/auth/register",
            None,
            Some(json!({"username": "Alice", "password": "password-1", "nickname": "x"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (409, Some("username_taken")),
        "{body}"
    );
    let (status, body) = api.login("alice", "not-her-password").await;
    assert_eq!(
        (status, code(&body)),
        (401, Some("wrong_password")),
        "{body}"
    );
    let (status, body) = api.login("nobody", "not-her-password").await;
    assert_eq!(
        (status, code(&body)),
        (401, Some("wrong_password")),
        "unknown users get the same answer"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/api/auth/register",
            None,
            Some(json!({"username": "1x", "password": "password-1", "nickname": "x"})),
        )
        .await;
    assert_eq!((status, code(&body)), (422, Some("validation")));
    assert_eq!(body["error"]["field"], "username", "the field to translate");

    // The host's studio connection is not a viewer: one viewer is 1 everywhere.
    let studio = RoomSocket::connect(&server.base, &room, Some(&host_token))
        .await
        .unwrap();
    let welcome = studio
        .wait_for(WAIT, |e| e["type"] == "welcome")
        .await
        .unwrap();
    assert_eq!(welcome["viewers"], 0, "the host alone: no audience");
    let viewer = RoomSocket::connect(&server.base, &room, Some(&alice_token))
        .await
        .unwrap();
    let welcome = viewer
        .wait_for(WAIT, |e| e["type"] == "welcome")
        .await
        .unwrap();
    assert_eq!(
        welcome["viewers"], 1,
        "the viewer counts herself, not the host"
    );
    studio
        .wait_for(WAIT, |e| e["type"] == "presence" && e["viewers"] == 1)
        .await
        .unwrap();
    assert!(
        !studio
            .of_type("presence")
            .iter()
            .any(|e| e["viewers"].as_i64() > Some(1)),
        "never counted twice: {:?}",
        studio.of_type("presence")
    );

    // The host's line keeps her role in the history (REST and the next welcome).
    studio.send(&json!({"type": "chat", "text": "欢迎大家", "client_id": "h1"}));
    viewer
        .wait_for(WAIT, |e| e["type"] == "chat" && e["ref"] == "h1")
        .await
        .unwrap();
    // Chat is written to storage in batches: wait until the line is stored.
    let mut stored = None;
    for _ in 0..100 {
        let (status, history) = api
            .call(Method::GET, &format!("/api/rooms/{room}/chat"), None, None)
            .await;
        assert_eq!(status, 200);
        stored = history
            .as_array()
            .and_then(|items| items.iter().find(|m| m["text"] == "欢迎大家").cloned());
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = stored.expect("the host's line is stored within 10 s");
    assert_eq!(line["user"]["role"], "host", "{line}");

    // Likes count per show: the second show starts from zero.
    let publisher = Publisher::start(
        &server.whip(&room),
        Some(&host_token),
        Arc::new(Clip::default_360p().unwrap()),
    )
    .await
    .unwrap();
    api.wait_room(&room, "live", |r| r["live"] == true).await;
    viewer.send(&json!({"type": "like", "count": 3}));
    studio
        .wait_for(WAIT, |e| e["type"] == "likes" && e["total"] == 3)
        .await
        .unwrap();
    assert_eq!(
        publisher
            .delete(&server.base, Some(&host_token))
            .await
            .unwrap(),
        200
    );
    api.wait_room(&room, "offline", |r| r["live"] == false)
        .await;
    let second = Publisher::start(
        &server.whip(&room),
        Some(&host_token),
        Arc::new(Clip::default_360p().unwrap()),
    )
    .await
    .unwrap();
    // Each show start announces likes back at zero; wait for the second one.
    let started = |socket: &RoomSocket| {
        socket
            .events()
            .iter()
            .filter(|e| e["type"] == "system" && e["event"] == "show_started")
            .count()
    };
    for _ in 0..150 {
        if started(&viewer) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(started(&viewer), 2, "two shows started");
    let events = viewer.events();
    let second_start = events
        .iter()
        .rposition(|e| e["type"] == "system" && e["event"] == "show_started")
        .expect("the second show_started");
    let reset = events[..second_start]
        .iter()
        .rev()
        .find(|e| e["type"] == "likes")
        .cloned()
        .expect("a likes event before the second show_started");
    assert_eq!(
        (reset["total"].clone(), reset["delta"].clone()),
        (json!(0), json!(0)),
        "{reset}"
    );
    let late = RoomSocket::connect(&server.base, &room, None)
        .await
        .unwrap();
    let late_welcome = late
        .wait_for(WAIT, |e| e["type"] == "welcome")
        .await
        .unwrap();
    assert_eq!(
        late_welcome["likes"], 0,
        "a new viewer sees this show's likes"
    );
    assert_eq!(
        second
            .delete(&server.base, Some(&host_token))
            .await
            .unwrap(),
        200
    );
    for socket in [studio, viewer, late] {
        socket.close().await;
    }

    // After a restart the hub reloads the history from storage, roles included.
    server = server
        .restart(|c| {
            c.standalone = false;
            c.publish_token = None;
        })
        .await
        .unwrap();
    let again = RoomSocket::connect(&server.base, &room, None)
        .await
        .unwrap();
    let welcome = again
        .wait_for(WAIT, |e| e["type"] == "welcome")
        .await
        .unwrap();
    let line = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "欢迎大家")
        .cloned()
        .unwrap();
    assert_eq!(line["user"]["role"], "host", "{line}");
    assert_eq!(welcome["likes"], 0, "between shows: no likes carried over");
    again.close().await;
    server.stop().await;
}
