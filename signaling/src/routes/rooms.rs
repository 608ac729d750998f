//! `GET /api/rooms`: the rooms the media plane knows, live first.

use crate::error::AppError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use sfu::RoomId;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms", get(list))
        .route("/api/rooms/{room}/stream", get(stream))
}

async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let mut rooms = state.sfu.snapshot().await?.rooms;
    rooms.sort_by(|a, b| {
        b.live
            .cmp(&a.live)
            .then(b.viewers.cmp(&a.viewers))
            .then(a.id.cmp(&b.id))
    });
    Ok(Json(serde_json::json!({ "rooms": rooms })))
}

async fn stream(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    let id = RoomId::parse(&room)
        .ok_or_else(|| AppError::BadRequest(format!("invalid room id {room:?}")))?;
    let snapshot = state.sfu.snapshot().await?;
    let found = snapshot
        .rooms
        .into_iter()
        .find(|r| r.id == id.as_str())
        .ok_or_else(|| AppError::NotFound(format!("room {id} not found")))?;
    Ok(Json(serde_json::json!({
        "room": id.as_str(),
        "live": found.live,
        "whep": format!("/whep/{id}"),
    })))
}
