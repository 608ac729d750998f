//! Where a host's encoder publishes: `GET /api/rooms/{id}/ingest` (the WHIP URL, and the
//! RTMP server URL and stream key for OBS, ffmpeg or WeChat `live-pusher`) and
//! `POST /api/rooms/{id}/ingest/rotate` (a new key; the old one stops working for new
//! connections). Host and admins only (the access policy's room-manage door).

use crate::access::{Door, authorize};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::urls::public_base;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms/{id}/ingest", get(ingest))
        .route("/api/rooms/{id}/ingest/rotate", post(rotate))
}

/// Where to publish a room from an encoder.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestInfo {
    /// The WHIP endpoint (browsers, OBS 30+ "WHIP" output, FFmpeg 8 `-f whip`).
    pub whip_url: String,
    /// RTMP ingest, when this server runs it.
    pub rtmp: Option<RtmpIngestInfo>,
}

/// RTMP publishing settings, split as OBS asks for them and whole.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RtmpIngestInfo {
    /// OBS "Server": `rtmp://HOST:PORT/live`.
    pub server_url: String,
    /// OBS "Stream Key": `{room}?key=KEY`.
    pub stream_key: String,
    /// Both in one URL (ffmpeg, WeChat `live-pusher`).
    pub url: String,
}

#[utoipa::path(get, path = "/api/rooms/{id}/ingest", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = IngestInfo), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn ingest(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<IngestInfo>, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    let key = state
        .store
        .stream_key(&room.id, crate::rtmp_ingest::new_stream_key)
        .await?;
    Ok(Json(info(&state, &headers, &room.id, &key)))
}

#[utoipa::path(post, path = "/api/rooms/{id}/ingest/rotate", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = IngestInfo), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn rotate(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<IngestInfo>, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    let key = state
        .store
        .rotate_stream_key(&room.id, crate::rtmp_ingest::new_stream_key())
        .await?;
    Ok(Json(info(&state, &headers, &room.id, &key)))
}

fn info(state: &AppState, headers: &HeaderMap, room: &str, key: &str) -> IngestInfo {
    let base = public_base(state, headers);
    let rtmp = state.rtmp_ingest.as_ref().map(|ingest| {
        let server_url = match &state.config.rtmp_public_url {
            Some(url) => url.clone(),
            None => {
                // The host the client reached us by, with the RTMP port.
                let authority = base.split("://").nth(1).unwrap_or(&base);
                let host = match authority.rsplit_once(':') {
                    Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
                    _ => authority,
                };
                format!(
                    "rtmp://{host}:{}/{}",
                    ingest.addr.port(),
                    crate::rtmp_ingest::APP
                )
            }
        };
        let stream_key = format!("{room}?key={key}");
        RtmpIngestInfo {
            url: format!("{server_url}/{stream_key}"),
            server_url,
            stream_key,
        }
    });
    IngestInfo {
        whip_url: format!("{base}/whip/{room}"),
        rtmp,
    }
}
