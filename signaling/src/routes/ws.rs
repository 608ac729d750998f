//! `GET /ws/rooms/{room}`: the room event protocol over WebSocket, for viewers without a
//! WebRTC data channel (mini-programs, HLS/FLV players). Log in with `?token=…`, an
//! `Authorization` header, or an `auth` message after connecting.

use crate::auth::bearer_token;
use crate::error::AppError;
use crate::interaction::UserSummary;
use crate::interaction::hub::{HubCommand, Outbound, Sink};
use crate::state::AppState;
use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use futures::SinkExt;
use sfu::RoomId;
use std::time::Duration;
use tokio::sync::mpsc;

/// Frames a WebSocket member may have queued before it counts as too slow.
const MEMBER_QUEUE: usize = 512;
/// WebSocket messages above this size are refused by the protocol layer (the room
/// protocol's own limit is much lower and answered with an `error` event).
const MAX_WS_MESSAGE: usize = 64 * 1024;
/// Read buffer per connection. Members send little (chat lines, taps), and the library's
/// 128 KiB default, allocated for every socket, was most of a member's memory (137 → see
/// BENCHMARKS.md); a larger message still arrives, the buffer just grows for it.
const WS_READ_BUFFER: usize = 4 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ws/rooms/{room}", get(connect))
}

#[derive(Debug, serde::Deserialize)]
struct ConnectQuery {
    token: Option<String>,
}

async fn connect(
    State(state): State<AppState>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    Path(room): Path<String>,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let room = RoomId::parse(&room)
        .ok_or_else(|| AppError::BadRequest(format!("invalid room id {room:?}")))?;
    let token = match query.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(token),
        None => bearer_token(&headers)?,
    };
    let user = match token {
        Some(token) => Some(state.auth.user_for_token(&state.store, token).await?),
        None => None,
    };
    crate::access::authorize(
        &state,
        user.as_ref(),
        room.as_str(),
        crate::access::Door::WebSocket,
    )
    .await?;
    // Sockets per address and per account (429); held until the socket closes.
    let slot = state
        .limits
        .admit_websocket(ip, user.as_ref().map(|u| u.id))?;
    let summary = user.as_ref().map(UserSummary::from);
    Ok(upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            session(state, room, summary, socket).await;
        }))
}

async fn session(state: AppState, room: RoomId, mut user: Option<UserSummary>, socket: WebSocket) {
    let interaction = state.interaction.clone();
    let member = interaction.socket_member();
    let (outbound, mut queue) = mpsc::channel::<Outbound>(MEMBER_QUEUE);
    if interaction
        .hub(&room)
        .send(HubCommand::Join {
            member,
            user: user.clone(),
            sink: Sink::Socket(outbound.clone()),
        })
        .await
        .is_err()
    {
        return;
    }
    // One task per member, reading and writing the same socket (no split, no second task):
    // `recv` is cancel-safe, so the select can drop it whenever the queue wins.
    let mut socket = socket;
    let mut keepalive = tokio::time::interval(Duration::from_secs(20));
    keepalive.reset();
    loop {
        tokio::select! {
            next = queue.recv() => match next {
                Some(Outbound::Frame(bytes)) => {
                    let Ok(text) = Utf8Bytes::try_from(bytes) else { continue };
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Batch(frames)) => {
                    // Write the batch with one flush (one socket write for all of it).
                    let mut failed = false;
                    for bytes in frames.iter() {
                        let Ok(text) = Utf8Bytes::try_from(bytes.clone()) else { continue };
                        if socket.feed(Message::Text(text)).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed || socket.flush().await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(reason)) => {
                    let frame = axum::extract::ws::CloseFrame { code: 4000, reason: Utf8Bytes::from_static(reason) };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = interaction.handle_text(&room, member, &mut user, text.as_str()).await
                        && outbound.try_send(Outbound::Frame(bytes::Bytes::from(reply))).is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let error = crate::interaction::protocol::ProtocolError::new(
                        crate::interaction::protocol::ErrorCode::Binary,
                        "send JSON text frames",
                    );
                    let _ = outbound.try_send(Outbound::Frame(bytes::Bytes::from(error.to_frame(None))));
                }
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
    let _ = interaction
        .hub(&room)
        .send(HubCommand::Leave { member })
        .await;
    drop(outbound);
}
