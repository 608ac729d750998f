//! RTMP push targets of a room (restreaming to a CDN or another platform), set by the
//! room's host or an admin, with the bridge's live status of each push:
//!
//! - `GET /api/rooms/{id}/restream` — targets and status;
//! - `POST /api/rooms/{id}/restream` `{"url":"rtmp://host/app/key"}` — add (201);
//! - `DELETE /api/rooms/{id}/restream/{target}` — remove (204).
//!
//! Targets from the server configuration (`rtmp_push`) are listed too (`configured:
//! true`) and cannot be removed here. Pushes start with the room's next show, or at once
//! if it is live.

use crate::access::{not_found, require_admin};
use crate::api_json::ApiJson;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{Room, User};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use bridge::{RtmpTargetStatus, rtmp_push::RtmpUrl};
use serde::{Deserialize, Serialize};
use sfu::RoomId;

/// Most stored targets per room.
const MAX_TARGETS: usize = 5;
/// Longest wait for the target's name to resolve when it is added.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses (422) a target on a loopback, private, link-local, CGNAT, multicast or
/// unspecified address — as written or as its name resolves now — unless the operator's
/// `restream_allow` permits it. The push checks again at every connect.
async fn check_target(state: &AppState, url: &RtmpUrl) -> Result<(), AppError> {
    let policy = &state.bridge.config().rtmp_policy;
    let resolved = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        bridge::rtmp_push::resolve_checked(policy, &url.host, url.port),
    )
    .await
    .unwrap_or_else(|_| {
        Err(bridge::target_policy::TargetRefused::Unresolvable(
            url.host.clone(),
        ))
    });
    resolved
        .map(|_| ())
        .map_err(|refused| AppError::invalid("url", refused.to_string()))
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms/{id}/restream", get(list).post(add))
        .route("/api/rooms/{id}/restream/{target}", delete(remove))
}

/// A new push target.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTargetRequest {
    /// `rtmp://host[:port]/app/stream-key`.
    pub url: String,
}

/// A push target and its status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetView {
    /// Target id (`config-N`/`default-N` for configured targets).
    pub id: String,
    /// The URL (the host's own targets in full; configured ones with the key hidden).
    pub url: String,
    /// From the server configuration (not removable through the API).
    pub configured: bool,
    /// `idle` (room not live), `connecting`, `publishing`, `retrying` or `stopped`.
    pub state: String,
    /// The last failure of the push, as a generic status (`failed: target unreachable`,
    /// `failed: target not allowed`, …), never a raw network error.
    pub last_error: Option<String>,
    /// Reconnection attempts during the current show.
    pub reconnects: u64,
    /// Publishing since (Unix ms).
    pub publishing_since: Option<i64>,
    /// Bytes sent during the current show.
    pub bytes_sent: u64,
}

fn view(url: String, configured: bool, status: &RtmpTargetStatus) -> TargetView {
    TargetView {
        id: status.target_id.clone(),
        url,
        configured,
        state: serde_json::to_value(status.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        last_error: status.last_error.clone(),
        reconnects: status.reconnects,
        publishing_since: status.publishing_since,
        bytes_sent: status.bytes_sent,
    }
}

async fn owned_room(state: &AppState, id: &str, user: &User) -> Result<(Room, RoomId), AppError> {
    let room = state
        .store
        .room(id)
        .await
        .map_err(|e| not_found(e, "room"))?;
    if room.host_id != Some(user.id) && require_admin(user).is_err() {
        return Err(AppError::Forbidden(
            "only the room's host or an admin may manage its RTMP push".into(),
        ));
    }
    let room_id = RoomId::parse(&room.id)
        .ok_or_else(|| AppError::Internal(format!("stored room id {} is invalid", room.id)))?;
    Ok((room, room_id))
}

#[utoipa::path(get, path = "/api/rooms/{id}/restream", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Vec<TargetView>), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<TargetView>>, AppError> {
    let (_, room) = owned_room(&state, &id, &user).await?;
    let targets = state.bridge.rtmp_targets(&room);
    let statuses = state.bridge.rtmp_status(&room);
    Ok(Json(
        targets
            .into_iter()
            .zip(statuses)
            .map(|(target, status)| {
                let configured = target.id.parse::<i64>().is_err();
                // The operator's targets (and `*=` templates) carry the operator's
                // stream keys: hosts see them redacted.
                let url = if configured {
                    bridge::rtmp_push::redact(&target.url)
                } else {
                    target.url
                };
                view(url, configured, &status)
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/rooms/{id}/restream", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = NewTargetRequest,
    responses((status = 201, body = TargetView), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(super) async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewTargetRequest>,
) -> Result<(StatusCode, Json<TargetView>), AppError> {
    let (room, room_id) = owned_room(&state, &id, &user).await?;
    if room.closed {
        return Err(AppError::Conflict("the room is closed".into()));
    }
    let url = body.url.trim();
    let parsed = RtmpUrl::parse(url).map_err(|e| AppError::invalid("url", e.to_string()))?;
    check_target(&state, &parsed).await?;
    if state.store.rtmp_targets(&room.id).await?.len() >= MAX_TARGETS {
        return Err(AppError::Conflict(format!(
            "a room pushes to at most {MAX_TARGETS} RTMP targets"
        )));
    }
    let row = state
        .store
        .add_rtmp_target(&room.id, url, Some(user.id))
        .await?;
    crate::bridge_sync::sync_room_targets(&state.store, &state.bridge, &state.config, &room.id)
        .await?;
    tracing::info!(room = %room.id, target = row.id, "RTMP push target added");
    let status = state
        .bridge
        .rtmp_status(&room_id)
        .into_iter()
        .find(|s| s.target_id == row.id.to_string())
        .unwrap_or_else(|| {
            RtmpTargetStatus::idle(&bridge::RtmpTarget {
                id: row.id.to_string(),
                url: row.url.clone(),
            })
        });
    Ok((StatusCode::CREATED, Json(view(row.url, false, &status))))
}

#[utoipa::path(delete, path = "/api/rooms/{id}/restream/{target}", tag = "rooms", security(("bearer" = [])),
    params(("id" = String, Path), ("target" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(super) async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, target)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let (room, _) = owned_room(&state, &id, &user).await?;
    let Ok(target_id) = target.parse::<i64>() else {
        return Err(AppError::Conflict(
            "configured targets are changed in the server configuration".into(),
        ));
    };
    state
        .store
        .delete_rtmp_target(&room.id, target_id)
        .await
        .map_err(|e| not_found(e, "RTMP target"))?;
    crate::bridge_sync::sync_room_targets(&state.store, &state.bridge, &state.config, &room.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
