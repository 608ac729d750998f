//! Starting and stopping a whole server: storage, media plane, HTTP listener, graceful
//! shutdown. `main` and the end-to-end tests both go through [`Server::start`].

use crate::auth::{AuthService, LoginLimiter};
use crate::config::Config;
use crate::interaction::Interaction;
use crate::live::LiveHandle;
use crate::state::AppState;
use crate::store::{Store, StoreError};
use sfu::{Sfu, SfuHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct Server {
    /// The bound HTTP address (useful with port 0).
    pub http_addr: SocketAddr,
    /// The media plane.
    pub sfu: SfuHandle,
    /// Storage.
    pub store: Store,
    /// The bridge (HTTP-FLV, HLS, LL-HLS, RTMP push, recordings).
    pub bridge: bridge::BridgeHandle,
    bridge_sync: Option<crate::bridge_sync::BridgeSync>,
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
    /// The HTTP listener could not bind, or the data directory could not be created.
    #[error("HTTP listener: {0}")]
    Http(#[from] std::io::Error),
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

impl Server {
    /// Opens storage, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Store::connect(&config.database_url()).await?;
        let auth = Arc::new(
            AuthService::load(&store, Duration::from_secs(config.token_ttl_secs.max(60))).await?,
        );
        let (sfu, media) = Sfu::start(config.sfu_config())?;
        let (bridge, bridge_events) =
            bridge::BridgeHandle::start(crate::bridge_sync::bridge_config(&config), sfu.clone());
        let hls_audience = crate::live::HlsAudience::default();
        let live = LiveHandle::start(
            store.clone(),
            &sfu,
            Some(bridge.clone()),
            hls_audience.clone(),
        )
        .await?;
        let interaction = Interaction::start(
            store.clone(),
            sfu.clone(),
            Arc::clone(&auth),
            config.interaction_config(),
        );
        let bridge_sync =
            crate::bridge_sync::BridgeSync::start(store.clone(), &bridge, &config, bridge_events)
                .await?;
        let listener = tokio::net::TcpListener::bind(config.http).await?;
        let http_addr = listener.local_addr()?;
        let state = AppState {
            sfu: sfu.clone(),
            access: Arc::new(crate::access::AccessState::new(&config.access)),
            login_limiter: Arc::new(LoginLimiter::new(
                config.login_attempts_per_minute_per_ip,
                config.login_attempts_per_minute_per_account,
            )),
            config: Arc::new(config),
            store: store.clone(),
            auth,
            live,
            interaction,
            bridge: bridge.clone(),
            hls_audience,
        };
        let app = crate::routes::app(state).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            // Chat events, FLV tags and LL-HLS parts are small writes that must leave at
            // once: without TCP_NODELAY, Nagle holds a write until the previous one is
            // acknowledged, and a delayed ACK makes that up to 40 ms.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(%err, "could not set TCP_NODELAY");
                }
            });
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
            store,
            bridge,
            bridge_sync: Some(bridge_sync),
            stop: Some(stop),
            http,
            media: Some(media),
        })
    }

    /// Stops accepting requests, closes every WebRTC session, waits for both to end and
    /// closes storage.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.sfu.shutdown().await;
        // Ends every bridged show: recordings get EXT-X-ENDLIST, FLV responses end.
        self.bridge.shutdown(Duration::from_secs(5)).await;
        let _ = (&mut self.http).await;
        if let Some(media) = self.media.take() {
            let _ = tokio::task::spawn_blocking(move || media.join()).await;
        }
        // Let the live directory record the shows that the shutdown ended.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(sync) = self.bridge_sync.take() {
            sync.stop().await;
        }
        self.store.close().await;
        tracing::info!("server stopped");
    }
}
