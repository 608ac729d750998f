//! REST helpers for end-to-end tests: an accounts-mode server with an admin, and a small
//! JSON API client.

use crate::http::HttpClient;
use crate::server::TestServer;
use reqwest::Method;
use serde_json::{Value, json};
use signaling::store::{NewUser, Role};
use std::time::{Duration, Instant};

/// The admin's password in [`server`].
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// A server in accounts mode (no standalone publish token) with one admin, on SQLite or,
/// given a URL, PostgreSQL.
pub async fn server(database_url: Option<String>) -> TestServer {
    server_with(database_url, |_| {}).await
}

/// Like [`server`], letting the caller adjust the configuration.
pub async fn server_with(
    database_url: Option<String>,
    adjust: impl FnOnce(&mut signaling::config::Config),
) -> TestServer {
    let server = TestServer::start_with(|c| {
        c.standalone = false;
        c.publish_token = None;
        c.database_url = database_url;
        adjust(c);
    })
    .await
    .unwrap();
    let hash = signaling::auth::hash_password(ADMIN_PASSWORD.into())
        .await
        .unwrap();
    server
        .server
        .store
        .create_user(&NewUser {
            username: Some("admin".into()),
            password_hash: hash,
            role: Some(Role::Admin),
            nickname: "管理员".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    server
}

/// A JSON API client.
pub struct Api {
    /// The HTTP client.
    pub http: HttpClient,
    /// The server's base URL.
    pub base: String,
}

impl Api {
    /// A client for `server`.
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: HttpClient::new(),
            base: server.base.clone(),
        }
    }

    /// See the test code.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.http
            .json(method, &format!("{}{path}", self.base), token, body)
            .await
            .unwrap()
    }

    /// `GET path` as `token`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(Method::GET, path, token, None).await
    }

    /// `POST path` with the JSON `body` as `token`.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// `DELETE path` as `token`.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(Method::DELETE, path, token, None).await
    }

    /// See the test code.
    pub async fn register(&self, username: &str) -> (i64, String) {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/auth/register",
                None,
                Some(
                    json!({"username": username, "password": "password-123", "nickname": username}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["user"]["id"].as_i64().unwrap(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    /// See the test code.
    pub async fn login(&self, login: &str, password: &str) -> (u16, Value) {
        self.call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"login": login, "password": password})),
        )
        .await
    }

    /// See the test code.
    pub async fn token(&self, login: &str, password: &str) -> String {
        let (status, body) = self.login(login, password).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// See the test code.
    pub async fn make_host(&self, admin: &str, user: i64) {
        let (status, body) = self
            .call(
                Method::PUT,
                &format!("/api/users/{user}/role"),
                Some(admin),
                Some(json!({"role": "host"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["role"], "host");
    }

    /// See the test code.
    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let (status, room) = self
            .call(Method::POST, "/api/rooms", Some(token), Some(body))
            .await;
        assert_eq!(status, 201, "{room}");
        room["id"].as_str().unwrap().to_owned()
    }

    /// See the test code.
    pub async fn room(&self, id: &str) -> Value {
        self.room_as(id, None).await
    }

    /// See the test code.
    pub async fn room_as(&self, id: &str, token: Option<&str>) -> Value {
        let (status, room) = self
            .call(Method::GET, &format!("/api/rooms/{id}"), token, None)
            .await;
        assert_eq!(status, 200, "{room}");
        room
    }

    /// Polls a room until `check` holds (the live state follows the media plane within ~1 s).
    /// See the test code.
    pub async fn wait_room(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_room_as(id, None, what, check).await
    }

    /// See the test code.
    pub async fn wait_room_as(
        &self,
        id: &str,
        token: Option<&str>,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let room = self.room_as(id, token).await;
            if check(&room) {
                return room;
            }
            assert!(
                Instant::now() < deadline,
                "room never became {what}: {room}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}
