//! The online viewer list (在线观众) of a room, for its host and admins.

use crate::access::{Door, authorize};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::interaction::hub::ViewerList;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use sfu::RoomId;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/rooms/{id}/viewers", get(viewers))
}

#[utoipa::path(get, path = "/api/rooms/{id}/viewers", tag = "moderation", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = ViewerList), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn viewers(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<ViewerList>, AppError> {
    // Who watches is the host's business (and moderators'): the same door as moderation.
    let room = authorize(&state, Some(&user), &id, Door::Moderate).await?;
    let room_id =
        RoomId::parse(&room.id).ok_or_else(|| AppError::NotFound("room not found".into()))?;
    let list = state
        .interaction
        .viewers(&room_id)
        .await
        .ok_or_else(|| AppError::Unavailable("the room is busy; try again".into()))?;
    Ok(Json(list))
}
