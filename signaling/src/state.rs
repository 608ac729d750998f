//! Shared application state: cheap to clone, every field an `Arc` or a handle.

use crate::auth::{AuthService, LoginLimiter};
use crate::config::Config;
use crate::interaction::Interaction;
use crate::live::LiveHandle;
use crate::store::Store;
use sfu::SfuHandle;
use std::sync::Arc;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The media plane.
    pub sfu: SfuHandle,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Storage.
    pub store: Store,
    /// Token signing and checking.
    pub auth: Arc<AuthService>,
    /// Login attempt limits.
    pub login_limiter: Arc<LoginLimiter>,
    /// What is live and who holds which media session.
    pub live: LiveHandle,
    /// Chat, likes and gifts.
    pub interaction: Interaction,
    /// HTTP-FLV, HLS, LL-HLS, RTMP push and recordings.
    pub bridge: bridge::BridgeHandle,
    /// HLS players seen per room (for viewer counts).
    pub hls_audience: crate::live::HlsAudience,
    /// The access policy's own state (profile read limits, recent standings).
    pub access: Arc<crate::access::AccessState>,
    /// Live notices to the users' own sockets (`/ws/me`).
    pub notices: crate::notify::NotifyHandle,
    /// Abuse limits (connections, sessions, sockets, registrations, password work).
    pub limits: Arc<crate::limits::Limits>,
    /// RTMP ingest, when it runs: its address and counters.
    pub rtmp_ingest: Option<Arc<crate::rtmp_ingest::RtmpIngest>>,
}
