//! The links the API hands out: the public base URL, and a room's playback URLs (which
//! carry a short-lived playback token scoped to that room, never the account token).

use crate::state::AppState;
use crate::store::User;
use axum::http::{HeaderMap, header};
use std::time::Duration;

/// The scheme://host the client used, or the configured public URL.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .map_or_else(|| state.config.http.to_string(), str::to_owned);
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// The playback token for `user` in `room` (`None` for anonymous callers, who need none
/// where they may watch at all).
pub fn playback_token(state: &AppState, user: Option<&User>, room: &str) -> Option<String> {
    let user = user?;
    let ttl = Duration::from_secs(state.config.access.playback_token_ttl_secs.max(1));
    match state.auth.issue_playback(user, room, ttl) {
        Ok(token) => Some(token),
        Err(err) => {
            tracing::warn!(%err, "could not issue a playback token");
            None
        }
    }
}

/// `url` with `?token=` (or `&token=`) appended, when there is a token.
pub fn with_token(url: String, token: Option<&str>) -> String {
    match token {
        Some(token) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}token={token}")
        }
        None => url,
    }
}

/// The bridge's playback URLs of a room, for `GET /api/rooms/{id}/stream`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BridgeUrls {
    /// HTTP-FLV (WeChat `live-player`, mpegts.js): present while the room is live and
    /// its media can be bridged.
    pub flv: Option<String>,
    /// HLS over MPEG-TS (WeChat `video`, Safari, Chromium).
    pub hls: Option<String>,
    /// Low-latency HLS (hls.js, Safari).
    pub llhls: Option<String>,
    /// Why the URLs above are absent while the room is live (e.g. VP8 video).
    pub bridge_unavailable: Option<String>,
    /// The room's recordings (API).
    pub recordings: String,
    /// The playback token the URLs above carry (for players that build URLs themselves):
    /// opens this room's media for a few minutes, nothing else. `null` for anonymous
    /// callers.
    pub playback_token: Option<String>,
    /// When the playback token expires (Unix seconds).
    pub playback_token_expires_at: Option<u64>,
}

impl BridgeUrls {
    /// The URLs of `room` for a caller holding `token` (a playback token, if any).
    pub fn new(state: &AppState, base: &str, room: &str, token: Option<&str>) -> Self {
        let status = sfu::RoomId::parse(room).and_then(|id| state.bridge.room_status(&id));
        let (available, unavailable) = match status {
            Some(status) if status.live && status.unavailable.is_none() => (true, None),
            Some(status) => (false, status.unavailable),
            None => (false, None),
        };
        let url = |path: String| available.then(|| with_token(format!("{base}{path}"), token));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        BridgeUrls {
            flv: url(format!("/live/{room}.flv")),
            hls: url(format!("/hls/{room}/index.m3u8")),
            llhls: url(format!("/llhls/{room}/index.m3u8")),
            bridge_unavailable: unavailable,
            recordings: format!("{base}/api/rooms/{room}/recordings"),
            playback_token: token.map(str::to_owned),
            playback_token_expires_at: token
                .map(|_| now + state.config.access.playback_token_ttl_secs.max(1)),
        }
    }
}
