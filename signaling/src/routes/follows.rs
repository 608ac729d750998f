//! Follows (关注), live notices for followed hosts, and blocks (拉黑: the client hides a
//! blocked user's chat).

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{LiveNotice, StoreError, UserCard};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/users/{id}/follow",
            get(follow_status).put(follow).delete(unfollow),
        )
        .route(
            "/api/users/{id}/block",
            axum::routing::put(block).delete(unblock),
        )
        .route("/api/me/follows", get(my_follows))
        .route("/api/me/blocks", get(my_blocks))
        .route("/api/me/notices", get(notices))
}

/// Whether I follow a user, and their follower count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FollowStatus {
    /// I follow them.
    pub following: bool,
    /// How many follow them.
    pub followers: i64,
}

/// Which notices to return.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct NoticesQuery {
    /// Only shows that started after this time (Unix ms); default: the last 24 hours.
    pub since: Option<String>,
}

/// The other user of a follow or block: an existing user other than me.
async fn other_user(state: &AppState, me: i64, raw: &str, action: &str) -> Result<i64, AppError> {
    let id: i64 = raw
        .parse()
        .map_err(|_| AppError::NotFound("user not found".into()))?;
    if id == me {
        return Err(AppError::invalid(
            "id",
            format!("you cannot {action} yourself"),
        ));
    }
    match state.store.user(id).await {
        Ok(_) => Ok(id),
        Err(StoreError::NotFound) => Err(AppError::NotFound("user not found".into())),
        Err(other) => Err(other.into()),
    }
}

async fn status(state: &AppState, me: i64, id: i64) -> Result<Json<FollowStatus>, AppError> {
    let (following, followers) = state.store.follow_status(me, id).await?;
    Ok(Json(FollowStatus {
        following,
        followers,
    }))
}

async fn follow_status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<FollowStatus>, AppError> {
    let id = other_user(&state, me.id, &id, "follow").await?;
    status(&state, me.id, id).await
}

async fn follow(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<FollowStatus>, AppError> {
    let id = other_user(&state, me.id, &id, "follow").await?;
    state.store.follow(me.id, id).await?;
    status(&state, me.id, id).await
}

async fn unfollow(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<FollowStatus>, AppError> {
    let id = other_user(&state, me.id, &id, "follow").await?;
    state.store.unfollow(me.id, id).await?;
    status(&state, me.id, id).await
}

async fn block(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<UserCard>>, AppError> {
    let id = other_user(&state, me.id, &id, "block").await?;
    state.store.block(me.id, id).await?;
    Ok(Json(state.store.blocks(me.id).await?))
}

async fn unblock(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<UserCard>>, AppError> {
    let id = other_user(&state, me.id, &id, "block").await?;
    state.store.unblock(me.id, id).await?;
    Ok(Json(state.store.blocks(me.id).await?))
}

async fn my_follows(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
) -> Result<Json<Vec<UserCard>>, AppError> {
    Ok(Json(state.store.follows(me.id).await?))
}

async fn my_blocks(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
) -> Result<Json<Vec<UserCard>>, AppError> {
    Ok(Json(state.store.blocks(me.id).await?))
}

async fn notices(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Query(query): Query<NoticesQuery>,
) -> Result<Json<Vec<LiveNotice>>, AppError> {
    let since = match query.since.as_deref() {
        None | Some("") => crate::store::now_ms() - 24 * 3600 * 1000,
        Some(raw) => raw
            .parse::<i64>()
            .map_err(|_| AppError::invalid("since", "a time in Unix milliseconds"))?,
    };
    Ok(Json(state.store.live_notices(me.id, since, 50).await?))
}
