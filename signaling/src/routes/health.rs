//! `GET /healthz`: the HTTP server answers and the media plane responds.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::time::Duration;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match tokio::time::timeout(Duration::from_secs(2), state.sfu.snapshot()).await {
        Ok(Ok(snapshot)) => (
            StatusCode::OK,
            Json(
                serde_json::json!({ "status": "ok", "rooms": snapshot.rooms.len(), "peers": snapshot.peers }),
            ),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({ "status": "unavailable", "error": { "code": "unavailable", "message": "media plane not responding" } }),
            ),
        ),
    }
}
