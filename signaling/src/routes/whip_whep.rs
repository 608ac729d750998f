//! WHIP (RFC 9725) and WHEP endpoints.
//!
//! `POST /whip/{room}` and `POST /whep/{room}` take an SDP offer and answer `201 Created`
//! with the SDP answer, a `Location` for the session, an `ETag`, and one
//! `Link: <url>; rel="ice-server"` per configured STUN/TURN server. The session resource
//! takes `DELETE` (end) and `PATCH` (trickle ICE fragments are accepted and ignored — our
//! side is ICE-lite and learns addresses from connectivity checks — ICE restarts are
//! refused with 422, the client starts a new session instead).

use crate::access::Door;
use crate::auth::bearer_token;
use crate::error::AppError;
use crate::live::SessionInfo;
use crate::state::AppState;
use crate::store::{User, Visibility};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sfu::offer::MAX_OFFER_BYTES;
use sfu::{PeerRole, RoomId, Session};

const SDP: &str = "application/sdp";
const TRICKLE: &str = "application/trickle-ice-sdpfrag";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/whip/{room}", post(whip).options(endpoint_options))
        .route("/whep/{room}", post(whep).options(endpoint_options))
        .route(
            "/whip/{room}/{session}",
            axum::routing::delete(whip_delete)
                .patch(session_patch)
                .options(session_options),
        )
        .route(
            "/whep/{room}/{session}",
            axum::routing::delete(whep_delete)
                .patch(session_patch)
                .options(session_options),
        )
}

async fn whip(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let room = parse_room(&room)?;
    let publisher = authorize_publish(&state, &headers, &room, false).await?;
    let offer = read_sdp(&headers, body).await?;
    let session = state.sfu.publish(room.clone(), &offer).await?;
    let resource = record_session(
        &state,
        &session,
        &room,
        publisher.as_ref(),
        PeerRole::Publisher,
        false,
    )
    .await;
    Ok(created(
        &state,
        "whip",
        &room,
        &session,
        &resource,
        publisher.as_ref(),
    ))
}

async fn whep(
    State(state): State<AppState>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    // Per-address creation rate and concurrent sessions (429), before any work.
    let slot = state.limits.admit_whep(ip)?;
    let room = parse_room(&room)?;
    let (viewer, private) = authorize_view(&state, &headers, &room).await?;
    let offer = read_sdp(&headers, body).await?;
    let session = state
        .sfu
        .view(room.clone(), &offer)
        .await
        .map_err(|err| match err {
            sfu::SfuError::RoomNotFound(_) => {
                AppError::NotFound(format!("room {room} is not live"))
            }
            other => other.into(),
        })?;
    let resource = record_session(
        &state,
        &session,
        &room,
        viewer.as_ref(),
        PeerRole::Viewer,
        private,
    )
    .await;
    state.limits.bind_whep(session.peer, slot);
    Ok(created(
        &state,
        "whep",
        &room,
        &session,
        &resource,
        viewer.as_ref(),
    ))
}

async fn whip_delete(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    let room_id = parse_room(&room)?;
    authorize_publish(&state, &headers, &room_id, true).await?;
    end_session(&state, &room, &session, PeerRole::Publisher).await
}

async fn whep_delete(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    let found = find_session(&state, &room, &session, PeerRole::Viewer).await?;
    authorize_viewer_session(&state, &headers, &found).await?;
    state.sfu.close(found.peer).await?;
    Ok(StatusCode::OK)
}

/// A viewer's session resource is ended or patched only with its resource id and, when
/// the viewer was logged in, that same viewer's token.
async fn authorize_viewer_session(
    state: &AppState,
    headers: &HeaderMap,
    session: &SessionInfo,
) -> Result<(), AppError> {
    let Some(owner) = session.user_id else {
        return Ok(());
    };
    let token = bearer_token(headers)?.ok_or_else(|| {
        AppError::Unauthorized(
            "this session belongs to a logged-in viewer: send their token".into(),
        )
    })?;
    let user = state.auth.user_for_token(&state.store, token).await?;
    if user.id != owner {
        return Err(AppError::Forbidden(
            "this session belongs to another viewer".into(),
        ));
    }
    Ok(())
}

async fn end_session(
    state: &AppState,
    room: &str,
    session: &str,
    role: PeerRole,
) -> Result<StatusCode, AppError> {
    let found = find_session(state, room, session, role).await?;
    state.sfu.close(found.peer).await?;
    Ok(StatusCode::OK)
}

/// Who may publish: in standalone mode the configured token (unknown rooms are created);
/// otherwise the room's host, with a valid token, not banned, still a host. `managing`
/// (ending or patching a session) also lets admins in.
async fn authorize_publish(
    state: &AppState,
    headers: &HeaderMap,
    room: &RoomId,
    managing: bool,
) -> Result<Option<User>, AppError> {
    if state.config.standalone {
        let expected = state.config.publish_token.as_deref().unwrap_or_default();
        let presented = bearer_token(headers)?.ok_or_else(|| {
            AppError::Unauthorized("publishing needs an Authorization: Bearer token".into())
        })?;
        if expected.is_empty()
            || !crate::auth::constant_time_eq(presented.as_bytes(), expected.as_bytes())
        {
            return Err(AppError::Unauthorized("invalid publish token".into()));
        }
        crate::access::ensure_standalone_room(state, room).await?;
        return Ok(None);
    }
    let token = bearer_token(headers)?.ok_or_else(|| {
        AppError::Unauthorized("publishing needs the host's Authorization: Bearer token".into())
    })?;
    let user = state.auth.user_for_token(&state.store, token).await?;
    let door = if managing {
        Door::RoomManage
    } else {
        Door::Whip
    };
    let stored = crate::access::authorize(state, Some(&user), room.as_str(), door).await?;
    if stored.closed && !managing {
        return Err(AppError::Conflict("the room is closed".into()));
    }
    Ok(Some(user))
}

/// Who may watch: anyone for public rooms (unless anonymous viewing is off), the host,
/// admins and granted users for private ones. Returns the viewer and whether the room is
/// private.
async fn authorize_view(
    state: &AppState,
    headers: &HeaderMap,
    room: &RoomId,
) -> Result<(Option<User>, bool), AppError> {
    let user = match bearer_token(headers)? {
        Some(token) => Some(state.auth.user_for_token(&state.store, token).await?),
        None => None,
    };
    let stored = crate::access::authorize(state, user.as_ref(), room.as_str(), Door::Whep).await?;
    Ok((user, stored.visibility == Visibility::Private))
}

async fn record_session(
    state: &AppState,
    session: &Session,
    room: &RoomId,
    user: Option<&User>,
    role: PeerRole,
    private: bool,
) -> String {
    state
        .interaction
        .attach_peer(session.peer, room.clone(), user)
        .await;
    let resource = crate::live::new_resource_id();
    let info = SessionInfo {
        id: session.peer.to_string(),
        room: room.to_string(),
        user_id: user.map(|u| u.id),
        role,
        private,
        opened_at: crate::store::now_ms(),
        peer: session.peer,
        resource: resource.clone(),
    };
    state.live.session_opened(session.peer, info).await;
    resource
}

async fn session_patch(
    State(state): State<AppState>,
    Path((room, session)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, AppError> {
    let role = if uri.path().starts_with("/whip/") {
        PeerRole::Publisher
    } else {
        PeerRole::Viewer
    };
    if role == PeerRole::Publisher {
        authorize_publish(&state, &headers, &parse_room(&room)?, true).await?;
    }
    let found = find_session(&state, &room, &session, role).await?;
    if role == PeerRole::Viewer {
        authorize_viewer_session(&state, &headers, &found).await?;
    }
    if content_type(&headers) != Some(TRICKLE) {
        return Err(AppError::UnsupportedMediaType { expected: TRICKLE });
    }
    let fragment = super::read_body(body, MAX_OFFER_BYTES).await?;
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match if_match {
        Some("*") => {
            return Err(AppError::Unprocessable(
                "ICE restarts are not supported; DELETE this session and start a new one".into(),
            ));
        }
        Some(tag) if tag != etag(&found.resource) => {
            return Err(AppError::PreconditionFailed(
                "If-Match does not match this session's ETag".into(),
            ));
        }
        _ => {}
    }
    std::str::from_utf8(&fragment)
        .map_err(|_| AppError::BadRequest("the SDP fragment is not UTF-8".into()))?;
    // Our ICE agent is ICE-lite: the client's checks reach us from whatever address it
    // has, so its trickled candidates need no action.
    Ok(StatusCode::NO_CONTENT)
}

async fn endpoint_options(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    headers.insert("accept-post", HeaderValue::from_static(SDP));
    add_ice_server_links(&state, headers);
    response
}

async fn session_options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ALLOW,
        HeaderValue::from_static("DELETE, PATCH, OPTIONS"),
    );
    headers.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    response
}

fn parse_room(raw: &str) -> Result<RoomId, AppError> {
    RoomId::parse(raw).ok_or_else(|| {
        AppError::BadRequest(format!(
            "invalid room id {raw:?}: use 1-64 characters of A-Z a-z 0-9 _ -"
        ))
    })
}

/// The open session behind a `Location` resource id (exactly that id: the media plane's
/// own peer ids are never accepted).
async fn find_session(
    state: &AppState,
    room: &str,
    session: &str,
    role: PeerRole,
) -> Result<SessionInfo, AppError> {
    let not_found = || AppError::NotFound("session not found".into());
    let found = state.live.resolve(session).await.ok_or_else(not_found)?;
    if found.room != room || found.role != role {
        return Err(not_found());
    }
    Ok(found)
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .split(';')
        .next()
        .map(str::trim)
}

async fn read_sdp(headers: &HeaderMap, body: Body) -> Result<String, AppError> {
    if !content_type(headers).is_some_and(|t| t.eq_ignore_ascii_case(SDP)) {
        return Err(AppError::UnsupportedMediaType { expected: SDP });
    }
    let bytes = super::read_body(body, MAX_OFFER_BYTES).await?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| AppError::BadRequest("the SDP offer is not UTF-8".into()))
}

fn etag(resource: &str) -> String {
    format!("\"{}\"", &resource[..resource.len().min(16)])
}

fn created(
    state: &AppState,
    kind: &str,
    room: &RoomId,
    session: &Session,
    resource: &str,
    user: Option<&User>,
) -> Response {
    let location = format!("/{kind}/{room}/{resource}");
    let mut response = (StatusCode::CREATED, session.answer.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag(resource)) {
        headers.insert(header::ETAG, value);
    }
    headers.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    add_ice_server_links(state, headers);
    add_turn_link(state, headers, user);
    response
}

/// `Link: <stun:host:port>; rel="ice-server"` per configured server. An entry may carry
/// credentials after the URL: `turn:host:3478 username=u credential=p`.
fn add_ice_server_links(state: &AppState, headers: &mut HeaderMap) {
    for entry in &state.config.ice_servers {
        if let Some(link) = ice_server_link(entry)
            && let Ok(value) = HeaderValue::from_str(&link)
        {
            headers.append(header::LINK, value);
        }
    }
}

/// The ephemeral TURN credential (TURN REST API) as one more `Link`, when configured.
fn add_turn_link(state: &AppState, headers: &mut HeaderMap, user: Option<&User>) {
    let Some(turn) = crate::access::turn_for(state, user) else {
        return;
    };
    for url in &turn.urls {
        let entry = format!(
            "{url} username={} credential={}",
            turn.username, turn.credential
        );
        if let Some(link) = ice_server_link(&entry)
            && let Ok(value) = HeaderValue::from_str(&link)
        {
            headers.append(header::LINK, value);
        }
    }
}

fn ice_server_link(entry: &str) -> Option<String> {
    let mut parts = entry.split_whitespace();
    let url = parts.next()?;
    let mut link = format!("<{url}>; rel=\"ice-server\"");
    for part in parts {
        if let Some((key, value)) = part.split_once('=') {
            match key {
                "username" => link.push_str(&format!("; username=\"{value}\"")),
                "credential" => link.push_str(&format!(
                    "; credential=\"{value}\"; credential-type=\"password\""
                )),
                _ => {}
            }
        }
    }
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_server_links_are_formatted_per_rfc_9725() {
        assert_eq!(
            ice_server_link("stun:stun.example.net:3478").unwrap(),
            "<stun:stun.example.net:3478>; rel=\"ice-server\""
        );
        assert_eq!(
            ice_server_link("turn:t.example.net:3478?transport=udp username=u credential=p")
                .unwrap(),
            "<turn:t.example.net:3478?transport=udp>; rel=\"ice-server\"; username=\"u\"; credential=\"p\"; credential-type=\"password\""
        );
        assert!(ice_server_link("   ").is_none());
    }
}
