//! Starting and stopping a whole server: storage, media plane, HTTP listener, graceful
//! shutdown. `main` and the end-to-end tests both go through [`Server::start`].

use crate::auth::{AuthService, LoginLimiter};
use crate::config::Config;
use crate::interaction::Interaction;
use crate::limits::{Limits, Slot};
use crate::live::LiveHandle;
use crate::state::AppState;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::ConnectInfo;
use bridge::target_policy::{IpNetwork, TargetPolicy};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sfu::{Sfu, SfuHandle};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::sync::watch;
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
    interaction: Interaction,
    limits: Arc<Limits>,
    retention: JoinHandle<()>,
    upload_cleanup: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    http: JoinHandle<()>,
    media: Option<sfu::MediaThreads>,
    /// The bound RTMP ingest address, when RTMP ingest runs.
    pub rtmp_addr: Option<SocketAddr>,
    rtmp_stop: watch::Sender<bool>,
    rtmp: Option<JoinHandle<()>>,
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
    /// A configuration value is invalid.
    #[error("configuration: {0}")]
    Config(String),
}

impl Server {
    /// Opens storage, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        for entry in config.trusted_proxies.iter().chain(&config.limits_exempt) {
            if IpNetwork::parse(entry).is_none() {
                return Err(StartError::Config(format!(
                    "{entry:?} is not a CIDR (trusted_proxies, limits_exempt)"
                )));
            }
        }
        TargetPolicy::new(&config.restream_allow)
            .map_err(|err| StartError::Config(err.to_string()))?;
        prepare_data_dir(&config.data_dir)?;
        let store = Store::connect(&config.database_url()).await?;
        secure_database_files(&config.data_dir);
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
        let interaction_handle = interaction.clone();
        let listener = tokio::net::TcpListener::bind(config.http).await?;
        let http_addr = listener.local_addr()?;
        let limits = Arc::new(Limits::new(&config));
        let header_timeout =
            Duration::from_secs_f64(config.http_header_timeout_secs.clamp(0.5, 3600.0));
        let body_timeout =
            Duration::from_secs_f64(config.http_body_timeout_secs.clamp(0.5, 3600.0));
        tokio::spawn(release_closed_sessions(sfu.clone(), Arc::clone(&limits)));
        let retention = tokio::spawn(crate::retention::run(
            store.clone(),
            config.data_dir.join("recordings"),
            crate::retention::RetentionPolicy {
                max_age_days: config.recordings_max_age_days,
                max_total_bytes: config.recordings_max_total_bytes,
            },
        ));
        let upload_cleanup = tokio::spawn(crate::upload_cleanup::run(
            store.clone(),
            config.data_dir.join("uploads"),
            Duration::from_secs(config.orphan_upload_grace_hours.saturating_mul(3600)),
        ));
        let webhooks = crate::webhooks::Webhooks::start(store.clone(), &config.webhooks);
        let notices = crate::notify::NotifyHandle::start(store.clone(), &sfu, webhooks);
        let rtmp_listener = crate::rtmp_ingest::bind(config.rtmp).await?;
        let rtmp_ingest = match &rtmp_listener {
            Some(listener) => Some(Arc::new(crate::rtmp_ingest::RtmpIngest {
                addr: listener.local_addr()?,
                stats: Default::default(),
            })),
            None => None,
        };
        let state = AppState {
            sfu: sfu.clone(),
            notices,
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
            limits: Arc::clone(&limits),
            rtmp_ingest: rtmp_ingest.clone(),
        };
        let (rtmp_stop, rtmp_stopped) = watch::channel(false);
        let rtmp = match (rtmp_listener, &rtmp_ingest) {
            (Some(listener), Some(ingest)) => {
                tracing::info!(addr = %ingest.addr, "RTMP ingest listening");
                Some(tokio::spawn(crate::rtmp_ingest::serve(
                    listener,
                    state.clone(),
                    Arc::clone(ingest),
                    rtmp_stopped,
                )))
            }
            _ => None,
        };
        let router = crate::routes::app(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(serve(
            listener,
            router,
            Arc::clone(&limits),
            header_timeout,
            body_timeout,
            stopped,
        ));
        tracing::info!(%http_addr, "HTTP listening");
        Ok(Server {
            http_addr,
            sfu,
            store,
            bridge,
            bridge_sync: Some(bridge_sync),
            interaction: interaction_handle,
            limits,
            retention,
            upload_cleanup,
            stop: Some(stop),
            http,
            media: Some(media),
            rtmp_addr: rtmp_ingest.as_ref().map(|ingest| ingest.addr),
            rtmp_stop,
            rtmp,
        })
    }

    /// Open HTTP connections (WebSockets and media streams included).
    pub fn open_connections(&self) -> usize {
        self.limits.open_connections()
    }

    /// Stops accepting requests, closes every WebRTC session, waits for both to end and
    /// closes storage.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.retention.abort();
        self.upload_cleanup.abort();
        // RTMP publishers are disconnected; their seats go with the media plane below.
        let _ = self.rtmp_stop.send(true);
        if let Some(rtmp) = self.rtmp.take() {
            let _ = rtmp.await;
        }
        let _ = self.sfu.shutdown().await;
        // Ends every bridged show: recordings get EXT-X-ENDLIST, FLV responses end.
        self.bridge.shutdown(Duration::from_secs(5)).await;
        let _ = (&mut self.http).await;
        // Chat and likes queued for storage are stored before the store closes.
        self.interaction.shutdown(DRAIN_INTERACTION).await;
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

/// Longest wait for queued chat and likes to reach storage at shutdown.
const DRAIN_INTERACTION: Duration = Duration::from_secs(10);

/// How long a stopping server lets open connections finish their current request.
const DRAIN_CONNECTIONS: Duration = Duration::from_secs(5);

/// The HTTP accept loop: every connection is admitted by the connection caps (refused
/// ones are closed at once), served with a header-read timeout (which also bounds an
/// idle keep-alive connection's wait for its next request), and told to finish when the
/// server stops.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Arc<Limits>,
    header_timeout: Duration,
    body_timeout: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = &mut stopped => break,
        };
        let slot = match limits.admit_connection(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                tracing::debug!(%peer, %cap, "connection refused");
                drop(tcp);
                continue;
            }
        };
        // Chat events, FLV tags and LL-HLS parts are small writes that must leave at
        // once: without TCP_NODELAY, Nagle holds a write until the previous one is
        // acknowledged, and a delayed ACK makes that up to 40 ms.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        let stream = CountedStream { tcp, _slot: slot };
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            Arc::clone(&limits),
            header_timeout,
            body_timeout,
            closing_seen.clone(),
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(DRAIN_CONNECTIONS, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "closing connections that did not finish"
        );
    }
}

async fn serve_connection(
    stream: CountedStream,
    peer: SocketAddr,
    router: Router,
    limits: Arc<Limits>,
    header_timeout: Duration,
    body_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let client = limits.client_ip(peer.ip(), request.headers());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        let router = router.clone();
        // The body must follow its headers within the body timeout (slow uploads).
        let request = request
            .map(|body| axum::body::Body::new(crate::limits::TimedBody::new(body, body_timeout)));
        async move { tower::ServiceExt::oneshot(router, request).await }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::trace!(%peer, %err, "connection ended with an error");
                }
                break;
            }
            changed = closing.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A client connection that holds its place under the connection caps for as long as
/// it is open — through an upgrade to a WebSocket too, since the upgraded stream owns it.
struct CountedStream {
    tcp: TcpStream,
    _slot: Slot,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Gives WHEP slots back when the SFU reports their sessions closed (ICE/DTLS never
/// finished, silence, `DELETE`, shutdown). After missed events (a lagging receiver) it
/// asks the SFU which bound sessions still exist.
async fn release_closed_sessions(sfu: SfuHandle, limits: Arc<Limits>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = sfu.subscribe_events();
    loop {
        match events.recv().await {
            Ok(sfu::SfuEvent::PeerClosed { peer, .. }) => limits.session_closed(peer),
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "session events missed; reconciling WHEP slots");
                for peer in limits.bound_sessions() {
                    if let Err(sfu::SfuError::SessionNotFound) = sfu.session(peer).await {
                        limits.session_closed(peer);
                    }
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}

/// Creates the data directory (database, signing key, recordings) readable by the
/// server's user only (0700 on Unix), tightening an existing one.
pub fn prepare_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The SQLite files hold the token-signing key and password hashes: 0600 on Unix.
pub fn secure_database_files(dir: &std::path::Path) {
    #[cfg(unix)]
    for name in ["queqiao.db", "queqiao.db-wal", "queqiao.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        if path.exists()
            && let Err(err) =
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %path.display(), %err, "cannot restrict the database file");
        }
    }
}
