//! The setup end-to-end tests share: a server in accounts mode with its admin logged in,
//! accounts of each role, rooms, grants and moderation, WebSocket and HTTP-FLV probes.
//! Each step asserts what it needs, so a test reads as its scenario.

use crate::api::{ADMIN_PASSWORD, Api, server_with};
use crate::server::TestServer;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A server in accounts mode, a JSON client for it and the admin's token.
pub struct Scenario {
    /// The server.
    pub server: TestServer,
    /// A JSON client for it.
    pub api: Api,
    /// The admin's token.
    pub admin: String,
}

impl Scenario {
    /// A SQLite server (test defaults).
    pub async fn start() -> Scenario {
        Self::start_with(None, |_| {}).await
    }

    /// A server on `database_url` (SQLite when `None`) after `adjust` on the configuration.
    pub async fn start_with(
        database_url: Option<String>,
        adjust: impl FnOnce(&mut signaling::config::Config),
    ) -> Scenario {
        let server = server_with(database_url, adjust).await;
        let api = Api::new(&server);
        let admin = api.token("admin", ADMIN_PASSWORD).await;
        Scenario { server, api, admin }
    }

    /// Registers `name` with `role` (`viewer`, `host`, `admin`): `(id, token)`.
    pub async fn account(&self, name: &str, role: &str) -> (i64, String) {
        account(&self.api, &self.admin, name, role).await
    }

    /// A room of `host`'s, private or public: its id.
    pub async fn room(&self, host: &str, title: &str, private: bool) -> String {
        let visibility = if private { "private" } else { "public" };
        self.api
            .create_room(host, json!({"title": title, "visibility": visibility}))
            .await
    }

    /// `host` grants `user` access to `room`.
    pub async fn grant(&self, host: &str, room: &str, user: i64) {
        let (status, body) = self
            .api
            .post(
                &format!("/api/rooms/{room}/grants"),
                Some(host),
                json!({"user_id": user}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }

    /// `host` revokes `user`'s grant of `room`.
    pub async fn revoke(&self, host: &str, room: &str, user: i64) {
        let (status, body) = self
            .api
            .delete(&format!("/api/rooms/{room}/grants/{user}"), Some(host))
            .await;
        assert_eq!(status, 204, "{body}");
    }

    /// `moderator` kicks `user` out of `room` for `seconds`.
    pub async fn kick(&self, moderator: &str, room: &str, user: i64, seconds: u64) {
        self.moderate(moderator, room, "kick", user, seconds).await;
    }

    /// `moderator` mutes `user` in `room` for `seconds`.
    pub async fn mute(&self, moderator: &str, room: &str, user: i64, seconds: u64) {
        self.moderate(moderator, room, "mutes", user, seconds).await;
    }

    async fn moderate(&self, moderator: &str, room: &str, what: &str, user: i64, seconds: u64) {
        let (status, body) = self
            .api
            .post(
                &format!("/api/rooms/{room}/{what}"),
                Some(moderator),
                json!({"user_id": user, "seconds": seconds}),
            )
            .await;
        assert_eq!(status, 204, "{what}: {body}");
    }

    /// `GET /api/rooms/{room}/stream` as `token`: the playback links.
    pub async fn stream_links(&self, room: &str, token: Option<&str>) -> Value {
        let (status, links) = self
            .api
            .get(&format!("/api/rooms/{room}/stream"), token)
            .await;
        assert_eq!(status, 200, "{links}");
        links
    }

    /// Waits until the bridge serves `room` (its FLV/HLS exist).
    pub async fn wait_bridged(&self, room: &str) {
        wait_bridged(&self.server, room).await;
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Registers `name` and gives it `role` (by `admin`'s token): `(id, token)`.
pub async fn account(api: &Api, admin: &str, name: &str, role: &str) -> (i64, String) {
    let (id, token) = api.register(name).await;
    if role != "viewer" {
        let (status, body) = api
            .call(
                Method::PUT,
                &format!("/api/users/{id}/role"),
                Some(admin),
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    (id, token)
}

/// Waits until the bridge serves `room` (its FLV/HLS exist).
pub async fn wait_bridged(server: &TestServer, room: &str) {
    let id = sfu::RoomId::parse(room).expect("test room ids are valid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .server
        .bridge
        .room_status(&id)
        .is_some_and(|s| s.live && s.unavailable.is_none())
    {
        assert!(Instant::now() < deadline, "room {room} never bridged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status of a WebSocket upgrade to `room` (101 when it opened).
pub async fn ws_status(base: &str, room: &str, token: Option<&str>) -> u16 {
    let ws = base.replacen("http", "ws", 1);
    let url = match token {
        Some(t) => format!("{ws}/ws/rooms/{room}?token={t}"),
        None => format!("{ws}/ws/rooms/{room}"),
    };
    match tokio_tungstenite::connect_async(&url).await {
        Ok((mut stream, _)) => {
            let _ = stream.close(None).await;
            101
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("websocket {url}: {other}"),
    }
}

/// An open HTTP-FLV response that has delivered its first bytes.
pub struct FlvStream(reqwest::Response);

impl FlvStream {
    /// Opens `url` (with `token` as a Bearer token, if any) and reads the first chunk.
    pub async fn open(url: &str, token: Option<&str>) -> FlvStream {
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.expect("FLV request");
        assert_eq!(response.status(), 200, "FLV {url}");
        let first = tokio::time::timeout(Duration::from_secs(10), response.chunk()).await;
        assert!(
            matches!(first, Ok(Ok(Some(_)))),
            "FLV {url} sent nothing: {first:?}"
        );
        FlvStream(response)
    }

    /// How long until the body ended (cleanly or cut), or `None` if it still flowed after
    /// `within`.
    pub async fn ended_within(&mut self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.0.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None) | Err(_)) => return Some(start.elapsed()),
                Err(_) => return None,
            }
        }
    }

    /// Whether bytes still arrive throughout `duration` (the body did not end).
    pub async fn flows_for(&mut self, duration: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + duration;
        let mut bytes = 0;
        loop {
            match tokio::time::timeout_at(deadline, self.0.chunk()).await {
                Ok(Ok(Some(chunk))) => bytes += chunk.len(),
                Ok(Ok(None) | Err(_)) => return false,
                Err(_) => return bytes > 0,
            }
        }
    }
}
