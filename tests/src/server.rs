//! An in-process `queqiao` server on free ports, for end-to-end tests.

use signaling::config::Config;
use signaling::server::Server;
use std::path::PathBuf;

/// The bearer token test servers accept for publishing.
pub const TEST_TOKEN: &str = "test-publish-token";

/// A running test server; call [`TestServer::stop`] at the end of the test.
pub struct TestServer {
    /// The server.
    pub server: Server,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    data_dir: PathBuf,
}

impl TestServer {
    /// Starts a server with HTTP and UDP on free loopback ports.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after letting the caller adjust the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        crate::init_tracing();
        let data_dir = std::env::temp_dir().join(format!(
            "queqiao-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut config = Config {
            http: "127.0.0.1:0".parse()?,
            udp: "127.0.0.1:0".parse()?,
            data_dir: data_dir.clone(),
            publish_token: Some(TEST_TOKEN.to_owned()),
            standalone: true,
            // Tests are many clients on one address; tests/tests/hardening.rs clears this
            // to test the per-address limits themselves.
            limits_exempt: vec!["127.0.0.0/8".to_owned()],
            rtmp: signaling::config::RtmpListen::At("127.0.0.1:0".parse()?),
            ..Config::default()
        };
        adjust(&mut config);
        let server = Server::start(config).await?;
        let base = format!("http://{}", server.http_addr);
        Ok(TestServer {
            server,
            base,
            data_dir,
        })
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The WHIP URL of a room.
    pub fn whip(&self, room: &str) -> String {
        self.url(&format!("/whip/{room}"))
    }

    /// The WHEP URL of a room.
    pub fn whep(&self, room: &str) -> String {
        self.url(&format!("/whep/{room}"))
    }

    /// The data directory (kept across [`TestServer::restart`]).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Stops the server and starts a new one on the same data directory (a restart).
    pub async fn restart(self, adjust: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        let data_dir = self.data_dir.clone();
        self.server.shutdown().await;
        let mut config = Config {
            http: "127.0.0.1:0".parse()?,
            udp: "127.0.0.1:0".parse()?,
            data_dir: data_dir.clone(),
            limits_exempt: vec!["127.0.0.0/8".to_owned()],
            rtmp: signaling::config::RtmpListen::At("127.0.0.1:0".parse()?),
            ..Config::default()
        };
        adjust(&mut config);
        let server = Server::start(config).await?;
        let base = format!("http://{}", server.http_addr);
        Ok(TestServer {
            server,
            base,
            data_dir,
        })
    }

    /// Shuts the server down and removes its data directory.
    pub async fn stop(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
