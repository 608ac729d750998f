//! `GET /ws/me`: the logged-in user's own socket, delivering live notices
//! (`{"type":"notice","notice":{…}}`) as they happen. Log in with `?token=…` or an
//! `Authorization` header, as on the room socket. The first frame, `{"type":"ready"}`,
//! says the socket is subscribed.

use crate::auth::bearer_token;
use crate::error::AppError;
use crate::state::AppState;
use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use std::time::Duration;

/// Clients send nothing but pings and closes here.
const MAX_WS_MESSAGE: usize = 4 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ws/me", get(connect))
}

#[derive(Debug, serde::Deserialize)]
struct ConnectQuery {
    token: Option<String>,
}

async fn connect(
    State(state): State<AppState>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let token = match query.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(token),
        None => bearer_token(&headers)?,
    };
    let token = token.ok_or_else(|| {
        AppError::Unauthorized("log in first: ?token=<token> or Authorization: Bearer".into())
    })?;
    let user = state.auth.user_for_token(&state.store, token).await?;
    if user.is_banned() {
        return Err(AppError::Forbidden(crate::access::BANNED.into()));
    }
    // Counted with the room sockets: per address and per account (429).
    let slot = state.limits.admit_websocket(ip, Some(user.id))?;
    Ok(upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            session(state, user.id, socket).await;
        }))
}

async fn session(state: AppState, user: i64, mut socket: WebSocket) {
    let Some(mut notices) = state.notices.subscribe(user).await else {
        return;
    };
    if socket
        .send(Message::Text(Utf8Bytes::from_static(r#"{"type":"ready"}"#)))
        .await
        .is_err()
    {
        return;
    }
    let mut keepalive = tokio::time::interval(Duration::from_secs(20));
    keepalive.reset();
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Some(frame) => {
                    let Ok(text) = Utf8Bytes::try_from(frame) else { continue };
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = keepalive.tick() => {
                if socket.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
}
