//! Rooms: create, edit, close, list (live first), playback URLs, show history, private
//! access grants, and stopping a live stream.

use super::views::{PageQuery, Paged, RoomView};
use crate::access::{Door, authorize};
use crate::api_json::{ApiJson, double_option};
use crate::auth::{CurrentUser, MaybeUser};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{NewRoom, Role, RoomFilter, RoomUpdate, Show, Visibility};
use crate::urls::{BridgeUrls, playback_token, public_base};
use crate::validate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms", get(list).post(create))
        .route("/api/rooms/{id}", get(detail).patch(update).delete(close))
        .route("/api/rooms/{id}/stream", get(stream))
        .route("/api/rooms/{id}/shows", get(shows))
        .route("/api/rooms/{id}/stop", post(stop))
        .route("/api/rooms/{id}/grants", get(grants).post(grant))
        .route("/api/rooms/{id}/grants/{user_id}", delete(revoke))
}

/// Room-list filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only this city.
    pub city: Option<String>,
    /// Only rooms with this tag.
    pub tag: Option<String>,
    /// Only live rooms.
    pub live: Option<bool>,
    /// Only this host's rooms.
    pub host: Option<i64>,
    /// 1-based page.
    pub page: Option<i64>,
    /// Items per page (1–100).
    pub per_page: Option<i64>,
}

/// A new room.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    /// 1–60 characters.
    pub title: String,
    /// Cover image URL.
    pub cover_url: Option<String>,
    /// Up to 10 tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// City.
    pub city: Option<String>,
    /// Scheduled start (Unix ms).
    pub scheduled_start: Option<i64>,
    /// public (default) or private.
    pub visibility: Option<Visibility>,
}

/// A room change; absent fields stay, `null` clears.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoomRequest {
    /// Title.
    pub title: Option<String>,
    /// Cover URL.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub cover_url: Option<Option<String>>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// City.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
    /// Scheduled start (Unix ms).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub scheduled_start: Option<Option<i64>>,
    /// public or private.
    pub visibility: Option<Visibility>,
}

/// Every way to play a room.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamUrls {
    /// The room.
    pub room: String,
    /// On air now.
    pub live: bool,
    /// WebRTC playback (WHEP endpoint: POST an SDP offer).
    pub whep: String,
    /// WebRTC publishing (WHIP endpoint), for the host.
    pub whip: String,
    /// The room-event WebSocket (chat, likes, gifts).
    pub websocket: String,
    /// HTTP-FLV, HLS and LL-HLS, when the bridge serves the room.
    #[serde(flatten)]
    pub bridge: BridgeUrls,
    /// Ephemeral TURN credentials (TURN REST API), when the server has a TURN secret.
    pub turn: Option<crate::access::TurnCredential>,
}

/// A grant of access to a private room.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The user to let in.
    pub user_id: i64,
}

#[utoipa::path(get, path = "/api/rooms", tag = "rooms", params(ListQuery),
    responses((status = 200, body = Paged<RoomView>)))]
pub(super) async fn list(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<Paged<RoomView>>, AppError> {
    let (page, per_page) = PageQuery {
        page: query.page,
        per_page: query.per_page,
    }
    .resolve();
    // Private rooms are listed for their host (filtering by themselves) and for admins.
    let include_private = user.as_ref().is_some_and(|u| {
        u.role == Role::Admin || (query.host.is_some() && query.host == Some(u.id))
    });
    let filter = RoomFilter {
        city: query.city.filter(|c| !c.is_empty()),
        tag: query.tag.filter(|t| !t.is_empty()),
        live_only: query.live.unwrap_or(false),
        host_id: query.host,
        include_private,
    };
    let result = state
        .store
        .list_rooms(&filter, per_page, (page - 1) * per_page)
        .await?;
    Ok(Json(Paged {
        items: result.rooms.iter().map(RoomView::from).collect(),
        page,
        per_page,
        total: result.total,
    }))
}

#[utoipa::path(post, path = "/api/rooms", tag = "rooms", security(("bearer" = [])), request_body = CreateRoomRequest,
    responses((status = 201, body = RoomView), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateRoomRequest>,
) -> Result<(StatusCode, Json<RoomView>), AppError> {
    if !matches!(user.role, Role::Host | Role::Admin) {
        return Err(AppError::Forbidden(
            "only hosts create rooms; ask an admin for the host role".into(),
        ));
    }
    if user.is_banned() {
        return Err(AppError::Forbidden(
            "banned accounts cannot create rooms".into(),
        ));
    }
    let mut new = NewRoom {
        id: new_room_id(),
        host_id: Some(user.id),
        title: validate::text("title", &body.title, 1, 60)?,
        cover_url: validate::url("cover_url", body.cover_url.as_deref())?,
        tags: validate::tags("tags", &body.tags)?,
        city: validate::optional_text("city", body.city.as_deref(), 32)?,
        scheduled_start: body
            .scheduled_start
            .map(|t| validate_time("scheduled_start", t))
            .transpose()?,
        visibility: body.visibility.unwrap_or(Visibility::Public),
    };
    // Ids are random; retry the (astronomically unlikely) collision.
    let room = loop {
        match state.store.create_room(&new).await {
            Err(crate::store::StoreError::Conflict(_)) => new.id = new_room_id(),
            other => break other?,
        }
    };
    tracing::info!(room = %room.id, host = user.id, "room created");
    Ok((StatusCode::CREATED, Json(RoomView::from(&room))))
}

#[utoipa::path(get, path = "/api/rooms/{id}", tag = "rooms", params(("id" = String, Path)),
    responses((status = 200, body = RoomView), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn detail(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Json<RoomView>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::RoomRead).await?;
    Ok(Json(RoomView::from(&room)))
}

#[utoipa::path(patch, path = "/api/rooms/{id}", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)), request_body = UpdateRoomRequest,
    responses((status = 200, body = RoomView), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateRoomRequest>,
) -> Result<Json<RoomView>, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    if room.closed {
        return Err(AppError::Conflict("the room is closed".into()));
    }
    let change = RoomUpdate {
        title: body
            .title
            .as_deref()
            .map(|t| validate::text("title", t, 1, 60))
            .transpose()?,
        cover_url: body
            .cover_url
            .map(|v| validate::url("cover_url", v.as_deref()))
            .transpose()?,
        tags: body
            .tags
            .as_deref()
            .map(|t| validate::tags("tags", t))
            .transpose()?,
        city: body
            .city
            .map(|v| validate::optional_text("city", v.as_deref(), 32))
            .transpose()?,
        scheduled_start: body
            .scheduled_start
            .map(|v| v.map(|t| validate_time("scheduled_start", t)).transpose())
            .transpose()?,
        visibility: body.visibility,
    };
    let room = state.store.update_room(&id, &change).await?;
    Ok(Json(RoomView::from(&room)))
}

#[utoipa::path(delete, path = "/api/rooms/{id}", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn close(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    stop_publisher(&state, &id, "room_closed").await;
    state.store.close_room(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/rooms/{id}/stream", tag = "rooms", params(("id" = String, Path)),
    responses((status = 200, body = StreamUrls), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn stream(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<StreamUrls>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::RoomRead).await?;
    let base = public_base(&state, &headers);
    let token = playback_token(&state, user.as_ref(), &room.id);
    let ws_base = base.replacen("http", "ws", 1);
    Ok(Json(StreamUrls {
        room: room.id.clone(),
        live: room.live,
        whep: format!("{base}/whep/{}", room.id),
        whip: format!("{base}/whip/{}", room.id),
        websocket: format!("{ws_base}/ws/rooms/{}", room.id),
        bridge: BridgeUrls::new(&state, &base, &room.id, token.as_deref()),
        turn: crate::access::turn_for(&state, user.as_ref()),
    }))
}

#[utoipa::path(get, path = "/api/rooms/{id}/shows", tag = "rooms", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Show>)))]
pub(super) async fn shows(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Show>>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::RoomRead).await?;
    Ok(Json(state.store.shows(&room.id, 100).await?))
}

#[utoipa::path(post, path = "/api/rooms/{id}/stop", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(super) async fn stop(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    let reason = if user.role == Role::Admin && room.host_id != Some(user.id) {
        "stopped_by_admin"
    } else {
        "stopped_by_host"
    };
    if stop_publisher(&state, &id, reason).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::Conflict("the room is not live".into()))
    }
}

#[utoipa::path(get, path = "/api/rooms/{id}/grants", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Vec<i64>)))]
pub(super) async fn grants(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<i64>>, AppError> {
    authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    Ok(Json(state.store.grants(&id).await?))
}

#[utoipa::path(post, path = "/api/rooms/{id}/grants", tag = "rooms", security(("bearer" = [])), params(("id" = String, Path)), request_body = GrantRequest,
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn grant(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GrantRequest>,
) -> Result<StatusCode, AppError> {
    authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    state
        .store
        .user(body.user_id)
        .await
        .map_err(|e| crate::access::not_found(e, "user"))?;
    state.store.grant_access(&id, body.user_id, user.id).await?;
    state.access.standings.forget(&id, body.user_id);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/rooms/{id}/grants/{user_id}", tag = "rooms", security(("bearer" = [])),
    params(("id" = String, Path), ("user_id" = i64, Path)), responses((status = 204)))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, user_id)): Path<(String, i64)>,
) -> Result<StatusCode, AppError> {
    let room = authorize(&state, Some(&user), &id, Door::RoomManage).await?;
    state.store.revoke_access(&room.id, user_id).await?;
    state.access.standings.forget(&room.id, user_id);
    // Without the grant they may not know of the room: their live sessions in it end.
    if room.visibility == Visibility::Private {
        crate::access::end_sessions_in_room(&state, &room.id, user_id).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the room's publisher session, if any. Returns whether one was live.
async fn stop_publisher(state: &AppState, room: &str, reason: &'static str) -> bool {
    let Ok(snapshot) = state.sfu.snapshot().await else {
        return false;
    };
    let Some(peer) = snapshot
        .rooms
        .iter()
        .find(|r| r.id == room)
        .and_then(|r| r.publisher.as_deref())
        .and_then(sfu::PeerId::parse)
    else {
        return false;
    };
    state.live.end_reason(room, reason).await;
    state.sfu.close(peer).await.is_ok()
}

/// A random 10-character room id (about 59 bits).
pub(crate) fn new_room_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn validate_time(field: &str, ms: i64) -> Result<i64, AppError> {
    // 2000-01-01 … 2100-01-01.
    if (946_684_800_000..4_102_444_800_000).contains(&ms) {
        Ok(ms)
    } else {
        Err(AppError::invalid(
            field,
            "must be a Unix time in milliseconds",
        ))
    }
}
