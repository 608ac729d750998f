//! `GET /api/rooms/{id}/recordings`: every show's recording (HLS VOD kept by the bridge on
//! local disk), with start, duration and a playable URL.

use crate::access::{Door, authorize};
use crate::auth::MaybeUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::Recording;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/rooms/{id}/recordings", get(list))
}

/// A recording as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingView {
    /// Unique within the room.
    pub id: String,
    /// The room.
    pub room: String,
    /// The show it recorded, when known.
    pub show_id: Option<i64>,
    /// Start (Unix ms).
    pub started_at: i64,
    /// End (Unix ms); `null` while the show is being recorded.
    pub ended_at: Option<i64>,
    /// Recorded duration in seconds.
    pub duration_secs: f64,
    /// Still being recorded (the playlist grows; `EXT-X-ENDLIST` comes at the end).
    pub recording: bool,
    /// Segments.
    pub segments: i64,
    /// Video size at the start (0 without video).
    pub width: i64,
    /// Video height at the start.
    pub height: i64,
    /// Has H.264 video.
    pub video: bool,
    /// Has AAC audio.
    pub audio: bool,
    /// The HLS (MPEG-TS) VOD playlist.
    pub url: String,
    /// Why the recording is incomplete, if it is.
    pub error: Option<String>,
}

impl RecordingView {
    fn new(recording: Recording, base: &str, token: Option<&str>) -> Self {
        RecordingView {
            url: crate::urls::with_token(format!("{base}{}", recording.playlist_path), token),
            recording: recording.ended_at.is_none(),
            duration_secs: recording.duration_ms as f64 / 1000.0,
            id: recording.id,
            room: recording.room_id,
            show_id: recording.show_id,
            started_at: recording.started_at,
            ended_at: recording.ended_at,
            segments: recording.segments,
            width: recording.width,
            height: recording.height,
            video: recording.video,
            audio: recording.audio,
            error: recording.error,
        }
    }
}

#[utoipa::path(get, path = "/api/rooms/{id}/recordings", tag = "rooms", params(("id" = String, Path)),
    responses((status = 200, body = Vec<RecordingView>), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<RecordingView>>, AppError> {
    let room = authorize(&state, user.as_ref(), &id, Door::Recordings).await?;
    let base = crate::urls::public_base(&state, &headers);
    // A logged-in caller's links carry a playback token (a private room's recordings open
    // only with one; a public room's need none, but the token keeps kicks holding).
    let token = crate::urls::playback_token(&state, user.as_ref(), &room.id);
    let recordings = state.store.recordings(&room.id, 200).await?;
    Ok(Json(
        recordings
            .into_iter()
            .map(|r| RecordingView::new(r, &base, token.as_deref()))
            .collect(),
    ))
}
