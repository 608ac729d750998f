//! REST around the live interaction: the gift catalogue, wallets and top-ups, sending a
//! gift without a socket, leaderboards, gap fetch by sequence number, chat history, and
//! moderation (mute, kick, delete a message).

use crate::access::{Door, authorize, not_found, require_admin};
use crate::api_json::ApiJson;
use crate::auth::{CurrentUser, MaybeUser};
use crate::error::AppError;
use crate::interaction::UserSummary;
use crate::interaction::hub::HubCommand;
use crate::interaction::protocol::ErrorCode;
use crate::state::AppState;
use crate::store::{Gift, Gifter, Room, Wallet};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sfu::RoomId;
use std::time::{Duration, Instant};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/gifts", get(gifts))
        .route("/api/me/wallet", get(wallet))
        .route("/api/users/{id}/coins", post(top_up))
        .route("/api/rooms/{id}/gifts", post(send_gift))
        .route("/api/rooms/{id}/leaderboard", get(leaderboard))
        .route("/api/rooms/{id}/events", get(events))
        .route("/api/rooms/{id}/chat", get(chat))
        .route("/api/rooms/{id}/mutes", post(mute))
        .route("/api/rooms/{id}/mutes/{user_id}", delete(unmute))
        .route("/api/rooms/{id}/kick", post(kick))
        .route("/api/rooms/{id}/messages/{seq}", delete(delete_message))
}

/// An admin top-up (no payment provider is wired).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// Coins to add (1–10,000,000).
    pub amount: i64,
    /// The same key is applied at most once.
    pub idempotency_key: String,
}

/// A top-up's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopUpResponse {
    /// The wallet after.
    pub wallet: Wallet,
    /// Whether this key had been applied before (nothing added this time).
    pub duplicate: bool,
}

/// A gift sent over REST.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GiftRequestBody {
    /// Catalogue id.
    pub gift: String,
    /// How many (1–99, default 1).
    pub count: Option<i64>,
    /// Charged at most once per key.
    pub idempotency_key: String,
}

/// Leaderboard scope.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LeaderboardQuery {
    /// A show id, or `current` for the live show; absent for the room's all-time board.
    pub show: Option<String>,
    /// Rows (1–100, default 20).
    pub limit: Option<i64>,
}

/// Gap fetch.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// Return events with a sequence number above this.
    pub after: i64,
}

/// Events after a sequence number.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventsResponse {
    /// The events, oldest first (the same JSON objects the sockets carry).
    pub events: Vec<Value>,
    /// The newest sequence number of the room.
    pub last_seq: i64,
    /// False when older events are no longer kept: reload the history instead.
    pub complete: bool,
}

/// A mute.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    /// Who.
    pub user_id: i64,
    /// For how long (1 s – 7 days).
    pub seconds: u64,
}

/// A kick.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KickRequest {
    /// Who.
    pub user_id: i64,
    /// How long they stay out (default 300 s, at most 7 days).
    pub seconds: Option<u64>,
}

#[utoipa::path(get, path = "/api/gifts", tag = "interaction", responses((status = 200, body = Vec<Gift>)))]
pub(super) async fn gifts(State(state): State<AppState>) -> Result<Json<Vec<Gift>>, AppError> {
    Ok(Json(state.interaction.catalogue().await?))
}

#[utoipa::path(get, path = "/api/me/wallet", tag = "interaction", security(("bearer" = [])), responses((status = 200, body = Wallet)))]
pub(super) async fn wallet(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Wallet>, AppError> {
    Ok(Json(state.store.wallet(user.id).await?))
}

#[utoipa::path(post, path = "/api/users/{id}/coins", tag = "admin", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = TopUpRequest, responses((status = 200, body = TopUpResponse), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn top_up(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<TopUpRequest>,
) -> Result<Json<TopUpResponse>, AppError> {
    require_admin(&admin)?;
    if !(1..=10_000_000).contains(&body.amount) {
        return Err(AppError::invalid("amount", "must be 1–10,000,000 coins"));
    }
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > 64 {
        return Err(AppError::invalid(
            "idempotency_key",
            "must be 1–64 characters",
        ));
    }
    state
        .store
        .user(id)
        .await
        .map_err(|e| not_found(e, "user"))?;
    let (wallet, duplicate) = state
        .store
        .top_up(id, body.amount, &body.idempotency_key, Some(admin.id))
        .await?;
    tracing::info!(
        admin = admin.id,
        user = id,
        amount = body.amount,
        duplicate,
        "coins topped up"
    );
    Ok(Json(TopUpResponse { wallet, duplicate }))
}

#[utoipa::path(post, path = "/api/rooms/{id}/gifts", tag = "interaction", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = GiftRequestBody, responses((status = 200, description = "gift_ack"), (status = 402, body = crate::error::ErrorBody)))]
pub(super) async fn send_gift(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GiftRequestBody>,
) -> Result<Json<Value>, AppError> {
    let (user, stored) =
        crate::access::authorize_bearer(&state, &headers, &id, Door::Speak).await?;
    let room = room_id(&stored.id)?;
    let count = body.count.unwrap_or(1);
    if !(1..=99).contains(&count) {
        return Err(AppError::invalid("count", "must be 1–99"));
    }
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > 64 {
        return Err(AppError::invalid(
            "idempotency_key",
            "must be 1–64 characters",
        ));
    }
    let summary = UserSummary::from(&user);
    match state
        .interaction
        .send_gift(&room, &summary, &body.gift, count, &body.idempotency_key)
        .await
    {
        Ok((_, ack)) => Ok(Json(serde_json::from_str(&ack).unwrap_or(Value::Null))),
        Err(err) => Err(match err.code {
            ErrorCode::InsufficientCoins => AppError::Conflict(err.message),
            ErrorCode::UnknownGift => AppError::invalid("gift", err.message),
            ErrorCode::RateLimited => AppError::TooManyRequests {
                retry_after_secs: 1,
            },
            ErrorCode::Forbidden => AppError::Forbidden(err.message),
            ErrorCode::KeyReused => AppError::Conflict(err.message),
            ErrorCode::NoRecipient => AppError::Unprocessable(err.message),
            _ => AppError::Internal(err.message),
        }),
    }
}

#[utoipa::path(get, path = "/api/rooms/{id}/leaderboard", tag = "interaction", params(("id" = String, Path), LeaderboardQuery),
    responses((status = 200, body = Vec<Gifter>)))]
pub(super) async fn leaderboard(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    Query(query): Query<LeaderboardQuery>,
) -> Result<Json<Vec<Gifter>>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::Leaderboard).await?;
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let show = match query.show.as_deref() {
        None | Some("") => None,
        Some("current") => match state.store.shows(&room.id, 1).await?.into_iter().next() {
            Some(show) if show.ended_at.is_none() => Some(show.id),
            _ => return Ok(Json(Vec::new())),
        },
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| AppError::invalid("show", "a show id or \"current\""))?,
        ),
    };
    Ok(Json(state.store.leaderboard(&room.id, show, limit).await?))
}

#[utoipa::path(get, path = "/api/rooms/{id}/events", tag = "interaction", params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = EventsResponse)))]
pub(super) async fn events(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<EventsResponse>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::Events).await?;
    let page = state
        .interaction
        .events(&room_id(&room.id)?, query.after)
        .await
        .ok_or_else(|| AppError::Unavailable("the room is restarting; retry".into()))?;
    let events = page
        .events
        .iter()
        .filter_map(|frame| serde_json::from_slice(frame).ok())
        .collect();
    Ok(Json(EventsResponse {
        events,
        last_seq: page.last_seq,
        complete: page.complete,
    }))
}

#[utoipa::path(get, path = "/api/rooms/{id}/chat", tag = "interaction", params(("id" = String, Path)),
    responses((status = 200, description = "the latest chat messages, oldest first")))]
pub(super) async fn chat(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::ChatHistory).await?;
    let history = state.store.chat_history(&room.id, 50).await?;
    Ok(Json(
        history
            .into_iter()
            .map(|m| {
                serde_json::json!({
                    "type": "chat", "seq": m.record.seq, "ts": m.record.created_at, "text": m.record.text,
                    "user": { "id": m.record.user_id, "nickname": m.nickname, "avatar_url": m.avatar_url, "role": m.role },
                })
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/rooms/{id}/mutes", tag = "moderation", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = MuteRequest, responses((status = 204), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn mute(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MuteRequest>,
) -> Result<StatusCode, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::Moderate).await?;
    if !(1..=7 * 86_400).contains(&body.seconds) {
        return Err(AppError::invalid("seconds", "must be 1 s – 7 days"));
    }
    let until = Instant::now() + Duration::from_secs(body.seconds);
    state
        .store
        .user(body.user_id)
        .await
        .map_err(|e| not_found(e, "user"))?;
    // Stored, so the mute holds across restarts for its duration.
    state
        .store
        .mute(
            &room.id,
            body.user_id,
            crate::store::now_ms() + (body.seconds as i64) * 1000,
            user.id,
        )
        .await?;
    send(
        &state,
        &room,
        HubCommand::Mute {
            user: body.user_id,
            until,
        },
    )?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/rooms/{id}/mutes/{user_id}", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path), ("user_id" = i64, Path)), responses((status = 204)))]
pub(super) async fn unmute(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, target)): Path<(String, i64)>,
) -> Result<StatusCode, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::Moderate).await?;
    state.store.unmute(&room.id, target).await?;
    send(&state, &room, HubCommand::Unmute { user: target })?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/rooms/{id}/kick", tag = "moderation", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = KickRequest, responses((status = 204)))]
pub(super) async fn kick(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KickRequest>,
) -> Result<StatusCode, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::Moderate).await?;
    if room.host_id == Some(body.user_id) {
        return Err(AppError::Conflict(
            "the host cannot be kicked from their own room".into(),
        ));
    }
    let seconds = body.seconds.unwrap_or(300).clamp(1, 7 * 86_400);
    let until = Instant::now() + Duration::from_secs(seconds);
    state
        .store
        .user(body.user_id)
        .await
        .map_err(|e| not_found(e, "user"))?;
    state.access.standings.forget(&room.id, body.user_id);
    // Stored, so the kick holds at every door and across restarts for its duration.
    state
        .store
        .kick(
            &room.id,
            body.user_id,
            crate::store::now_ms() + (seconds as i64) * 1000,
            user.id,
        )
        .await?;
    let peers = state
        .interaction
        .ask(&room_id(&room.id)?, |reply| HubCommand::Kick {
            user: body.user_id,
            until,
            reply,
        })
        .await
        .unwrap_or_default();
    // Their open HTTP-FLV streams and WebRTC sessions in this room end too.
    state.access.cut(Some(&room.id), body.user_id);
    for session in state.live.sessions(Some(body.user_id)).await {
        if session.room == room.id {
            let _ = state.sfu.close(session.peer).await;
        }
    }
    for peer in peers {
        let _ = state.sfu.close(peer).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/rooms/{id}/messages/{seq}", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path), ("seq" = i64, Path)), responses((status = 204)))]
pub(super) async fn delete_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, seq)): Path<(String, i64)>,
) -> Result<StatusCode, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::Moderate).await?;
    send(&state, &room, HubCommand::DeleteMessage { seq })?;
    Ok(StatusCode::NO_CONTENT)
}

fn room_id(raw: &str) -> Result<RoomId, AppError> {
    RoomId::parse(raw).ok_or_else(|| AppError::NotFound("room not found".into()))
}

fn send(state: &AppState, room: &Room, command: HubCommand) -> Result<(), AppError> {
    state
        .interaction
        .send(&room_id(&room.id)?, command)
        .map_err(|e| AppError::Unavailable(e.message))
}
