//! Scheduled shows (预约): the host announces a show, viewers reserve it and are told when
//! the host goes live.

use crate::access::{Door, authorize, not_found};
use crate::api_json::ApiJson;
use crate::auth::{CurrentUser, MaybeUser};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::ScheduledShow;
use crate::validate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

/// How far ahead a show may be scheduled.
const MAX_AHEAD_SECS: i64 = 30 * 24 * 3600;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms/{id}/schedule", get(list).post(create))
        .route("/api/rooms/{id}/schedule/{sid}", delete(remove))
        .route(
            "/api/schedules/{sid}/reservation",
            post(reserve).delete(unreserve),
        )
        .route("/api/me/reservations", get(mine))
}

/// A show to schedule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// When it starts (Unix seconds, in the future, at most 30 days ahead).
    pub starts_at: i64,
    /// 1–60 characters.
    pub title: String,
}

fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

fn schedule_id(raw: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::NotFound("scheduled show not found".into()))
}

#[utoipa::path(post, path = "/api/rooms/{id}/schedule", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = ScheduleRequest,
    responses((status = 201, body = ScheduledShow), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleRequest>,
) -> Result<(StatusCode, Json<ScheduledShow>), AppError> {
    let room = authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    if room.closed {
        return Err(AppError::Conflict("the room is closed".into()));
    }
    let now = now_secs();
    if body.starts_at <= now || body.starts_at > now + MAX_AHEAD_SECS {
        return Err(AppError::invalid(
            "starts_at",
            "must be in the future and at most 30 days ahead (Unix seconds)",
        ));
    }
    let title = validate::text("title", &body.title, 1, 60)?;
    let show = state
        .store
        .create_schedule(&room.id, body.starts_at, &title, now)
        .await?;
    Ok((StatusCode::CREATED, Json(show)))
}

#[utoipa::path(get, path = "/api/rooms/{id}/schedule", tag = "rooms", params(("id" = String, Path)),
    responses((status = 200, body = [ScheduledShow]), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<ScheduledShow>>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::RoomRead).await?;
    let shows = state
        .store
        .upcoming_schedules(&room.id, now_secs(), user.as_ref().map(|u| u.id))
        .await?;
    Ok(Json(shows))
}

#[utoipa::path(delete, path = "/api/rooms/{id}/schedule/{sid}", tag = "rooms", security(("bearer" = [])),
    params(("id" = String, Path), ("sid" = i64, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, sid)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    state
        .store
        .delete_schedule(&room.id, schedule_id(&sid)?)
        .await
        .map_err(|e| not_found(e, "scheduled show"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The scheduled show `sid`, once `user` may know of its room.
async fn visible_schedule(
    state: &AppState,
    user: &crate::store::User,
    sid: &str,
) -> Result<i64, AppError> {
    let sid = schedule_id(sid)?;
    let show = state
        .store
        .schedule(sid, None)
        .await
        .map_err(|e| not_found(e, "scheduled show"))?;
    // A private room's show is as hidden as the room (404 from the policy).
    authorize(state, Some(user), &show.room_id, Door::RoomRead).await?;
    Ok(sid)
}

#[utoipa::path(post, path = "/api/schedules/{sid}/reservation", tag = "rooms", security(("bearer" = [])), params(("sid" = i64, Path)),
    responses((status = 200, body = ScheduledShow), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn reserve(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(sid): Path<String>,
) -> Result<Json<ScheduledShow>, AppError> {
    let sid = visible_schedule(&state, &user, &sid).await?;
    let show = state.store.schedule(sid, Some(user.id)).await?;
    if show.starts_at <= now_secs() {
        return Err(AppError::Conflict("the show has already started".into()));
    }
    state.store.reserve(sid, user.id).await?;
    Ok(Json(state.store.schedule(sid, Some(user.id)).await?))
}

#[utoipa::path(delete, path = "/api/schedules/{sid}/reservation", tag = "rooms", security(("bearer" = [])), params(("sid" = i64, Path)),
    responses((status = 200, body = ScheduledShow), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn unreserve(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(sid): Path<String>,
) -> Result<Json<ScheduledShow>, AppError> {
    let sid = visible_schedule(&state, &user, &sid).await?;
    state.store.unreserve(sid, user.id).await?;
    Ok(Json(state.store.schedule(sid, Some(user.id)).await?))
}

#[utoipa::path(get, path = "/api/me/reservations", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, body = [ScheduledShow]), (status = 401, body = crate::error::ErrorBody)))]
pub(super) async fn mine(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<ScheduledShow>>, AppError> {
    Ok(Json(
        state.store.my_reservations(user.id, now_secs()).await?,
    ))
}
