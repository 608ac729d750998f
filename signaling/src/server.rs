//! Starting and stopping a whole server: media plane, HTTP listener, graceful shutdown.
//! `main` and the end-to-end tests both go through [`Server::start`].

use crate::config::Config;
use crate::state::AppState;
use sfu::{Sfu, SfuHandle};
use std::net::SocketAddr;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct Server {
    /// The bound HTTP address (useful with port 0).
    pub http_addr: SocketAddr,
    /// The media plane.
    pub sfu: SfuHandle,
    stop: Option<oneshot::Sender<()>>,
    http: JoinHandle<()>,
    media: Option<std::thread::JoinHandle<()>>,
}

/// Failure to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The media plane could not start.
    #[error("media plane: {0}")]
    Media(#[from] sfu::SfuError),
    /// The HTTP listener could not bind.
    #[error("HTTP listener: {0}")]
    Http(#[from] std::io::Error),
}

impl Server {
    /// Binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let (sfu, media) = Sfu::start(config.sfu_config())?;
        let listener = tokio::net::TcpListener::bind(config.http).await?;
        let http_addr = listener.local_addr()?;
        let state = AppState::new(sfu.clone(), config);
        let app = crate::routes::app(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(err) = serve.await {
                tracing::error!(%err, "HTTP server failed");
            }
        });
        tracing::info!(%http_addr, "HTTP listening");
        Ok(Server {
            http_addr,
            sfu,
            stop: Some(stop),
            http,
            media: Some(media),
        })
    }

    /// Stops accepting requests, closes every WebRTC session and waits for both to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.sfu.shutdown().await;
        let _ = (&mut self.http).await;
        if let Some(media) = self.media.take() {
            let _ = tokio::task::spawn_blocking(move || media.join()).await;
        }
        tracing::info!("server stopped");
    }
}
