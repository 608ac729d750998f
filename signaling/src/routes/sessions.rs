//! `GET /api/sessions`: the media sessions open right now (admins only).

use crate::access::require_admin;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::live::SessionInfo;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/sessions", get(list))
}

#[utoipa::path(get, path = "/api/sessions", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionInfo>), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<SessionInfo>>, AppError> {
    require_admin(&user)?;
    let mut sessions = state.live.sessions(None).await;
    sessions.sort_by(|a, b| a.room.cmp(&b.room).then(a.opened_at.cmp(&b.opened_at)));
    Ok(Json(sessions))
}
