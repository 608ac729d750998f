//! Bridge storage: every show's recording (written by the bridge on local disk, listed
//! from here) and each room's RTMP push targets with their last reported status.

use super::{Store, StoreError, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// One show's recording.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recording {
    /// The room.
    pub room_id: String,
    /// Unique within the room.
    pub id: String,
    /// The show it recorded, when known.
    pub show_id: Option<i64>,
    /// Start (Unix ms).
    pub started_at: i64,
    /// End (Unix ms); `None` while the show is still being recorded.
    pub ended_at: Option<i64>,
    /// Recorded media duration in milliseconds.
    pub duration_ms: i64,
    /// Segments written.
    pub segments: i64,
    /// Video width at the start (0 without video).
    pub width: i64,
    /// Video height at the start.
    pub height: i64,
    /// Has H.264 video.
    pub video: bool,
    /// Has AAC audio.
    pub audio: bool,
    /// The playlist's path on this server.
    pub playlist_path: String,
    /// Why the recording is incomplete, if it is.
    pub error: Option<String>,
}

/// A room's RTMP push target.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RtmpTargetRow {
    /// Identity.
    pub id: i64,
    /// The room.
    pub room_id: String,
    /// `rtmp://host[:port]/app/key`.
    pub url: String,
    /// Who added it.
    pub created_by: Option<i64>,
    /// When (Unix ms).
    pub created_at: i64,
    /// Last state reported by the bridge.
    pub last_state: Option<String>,
    /// Last error reported by the bridge.
    pub last_error: Option<String>,
    /// When the status was last reported (Unix ms).
    pub updated_at: Option<i64>,
}

const RECORDING_COLUMNS: &str = "room_id, id, show_id, started_at, ended_at, duration_ms, segments, width, height, has_video, has_audio, playlist_path, error";
const TARGET_COLUMNS: &str =
    "id, room_id, url, created_by, created_at, last_state, last_error, updated_at";

fn recording_from_row(row: &AnyRow) -> Result<Recording, StoreError> {
    let video: i64 = row.try_get("has_video")?;
    let audio: i64 = row.try_get("has_audio")?;
    Ok(Recording {
        room_id: row.try_get("room_id")?,
        id: row.try_get("id")?,
        show_id: row.try_get("show_id")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        duration_ms: row.try_get("duration_ms")?,
        segments: row.try_get("segments")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
        video: video != 0,
        audio: audio != 0,
        playlist_path: row.try_get("playlist_path")?,
        error: row.try_get("error")?,
    })
}

fn target_from_row(row: &AnyRow) -> Result<RtmpTargetRow, StoreError> {
    Ok(RtmpTargetRow {
        id: row.try_get("id")?,
        room_id: row.try_get("room_id")?,
        url: row.try_get("url")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        last_state: row.try_get("last_state")?,
        last_error: row.try_get("last_error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Inserts or updates a recording (the bridge reports it at start and at the end).
    /// The show it belongs to is the room's latest show that started before it.
    pub async fn upsert_recording(&self, recording: &Recording) -> Result<(), StoreError> {
        let show: Option<i64> = match recording.show_id {
            Some(id) => Some(id),
            None => sqlx::query(&self.sql(
                "SELECT id FROM shows WHERE room_id = $1 AND started_at <= $2 ORDER BY started_at DESC, id DESC LIMIT 1",
            ))
            .bind(recording.room_id.clone())
            .bind(recording.started_at + 10_000)
            .fetch_optional(self.pool())
            .await?
            .map(|row| row.try_get::<i64, _>("id"))
            .transpose()?,
        };
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(&self.sql(
            "UPDATE recordings SET show_id = COALESCE(show_id, $3), ended_at = $4, duration_ms = $5, segments = $6, width = $7, height = $8, error = $9 \
             WHERE room_id = $1 AND id = $2",
        ))
        .bind(recording.room_id.clone())
        .bind(recording.id.clone())
        .bind(show)
        .bind(recording.ended_at)
        .bind(recording.duration_ms)
        .bind(recording.segments)
        .bind(recording.width)
        .bind(recording.height)
        .bind(recording.error.clone())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(&self.sql(&format!(
                "INSERT INTO recordings ({RECORDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )))
            .bind(recording.room_id.clone())
            .bind(recording.id.clone())
            .bind(show)
            .bind(recording.started_at)
            .bind(recording.ended_at)
            .bind(recording.duration_ms)
            .bind(recording.segments)
            .bind(recording.width)
            .bind(recording.height)
            .bind(i64::from(recording.video))
            .bind(i64::from(recording.audio))
            .bind(recording.playlist_path.clone())
            .bind(recording.error.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A room's recordings, newest first.
    pub async fn recordings(&self, room: &str, limit: i64) -> Result<Vec<Recording>, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE room_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
        )))
        .bind(room.to_owned())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Every finished recording, oldest first (for the retention policy).
    pub async fn finished_recordings(&self) -> Result<Vec<Recording>, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE ended_at IS NOT NULL ORDER BY started_at ASC, id ASC"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Deletes a recording's row (its files are the caller's).
    pub async fn delete_recording(&self, room: &str, id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM recordings WHERE room_id = $1 AND id = $2"))
            .bind(room.to_owned())
            .bind(id.to_owned())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Finishes the recordings a crash left open (run at start, before any new show):
    /// each one's playlist gets `EXT-X-ENDLIST` (see
    /// [`bridge::recording::finalize_unfinished`]) and its row the real duration and
    /// segment count, ending at `started_at + duration`. Rows whose files are gone are
    /// marked `server_restart`. Returns how many rows were finished.
    pub async fn recover_recordings(
        &self,
        recordings_root: &std::path::Path,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE ended_at IS NULL"
        )))
        .fetch_all(self.pool())
        .await?;
        let mut finished = 0;
        for row in &rows {
            let recording = recording_from_row(row)?;
            let safe = sfu::RoomId::parse(&recording.room_id).is_some()
                && bridge::recording::valid_recording_id(&recording.id);
            if !safe {
                continue;
            }
            let dir = bridge::recording::recording_dir(
                recordings_root,
                &recording.room_id,
                &recording.id,
            );
            let recovered =
                tokio::task::spawn_blocking(move || bridge::recording::finalize_unfinished(&dir))
                    .await
                    .map_err(|err| StoreError::Corrupt(format!("recording recovery: {err}")))?;
            let (duration_ms, segments, error) = match recovered {
                Ok(Some(found)) if found.segments > 0 => (
                    (found.duration_secs * 1000.0).round() as i64,
                    found.segments as i64,
                    None,
                ),
                Ok(_) => (0, 0, Some("server_restart".to_owned())),
                Err(err) => {
                    tracing::warn!(room = %recording.room_id, id = %recording.id, %err, "cannot finish the recording's playlist");
                    (0, 0, Some("server_restart".to_owned()))
                }
            };
            sqlx::query(&self.sql(
                "UPDATE recordings SET ended_at = $3, duration_ms = $4, segments = $5, error = $6 WHERE room_id = $1 AND id = $2 AND ended_at IS NULL",
            ))
            .bind(recording.room_id.clone())
            .bind(recording.id.clone())
            .bind(recording.started_at + duration_ms)
            .bind(duration_ms)
            .bind(segments)
            .bind(error)
            .execute(self.pool())
            .await?;
            tracing::info!(room = %recording.room_id, id = %recording.id, duration_ms, segments, "recording left open by a crash finished");
            finished += 1;
        }
        Ok(finished + self.end_dangling_recordings().await?)
    }

    /// Marks recordings left unfinished by a previous process as ended (their files stay
    /// playable up to the last segment written).
    pub async fn end_dangling_recordings(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql(
            "UPDATE recordings SET ended_at = $1, error = COALESCE(error, 'server_restart') WHERE ended_at IS NULL",
        ))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Adds an RTMP push target to a room.
    pub async fn add_rtmp_target(
        &self,
        room: &str,
        url: &str,
        created_by: Option<i64>,
    ) -> Result<RtmpTargetRow, StoreError> {
        let row = sqlx::query(&self.sql(&format!(
            "INSERT INTO rtmp_targets (room_id, url, created_by, created_at) VALUES ($1, $2, $3, $4) RETURNING {TARGET_COLUMNS}"
        )))
        .bind(room.to_owned())
        .bind(url.to_owned())
        .bind(created_by)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        target_from_row(&row)
    }

    /// A room's RTMP push targets, oldest first.
    pub async fn rtmp_targets(&self, room: &str) -> Result<Vec<RtmpTargetRow>, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {TARGET_COLUMNS} FROM rtmp_targets WHERE room_id = $1 ORDER BY id"
        )))
        .bind(room.to_owned())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(target_from_row).collect()
    }

    /// Every room's RTMP push targets (at start-up).
    pub async fn all_rtmp_targets(&self) -> Result<Vec<RtmpTargetRow>, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT {TARGET_COLUMNS} FROM rtmp_targets ORDER BY room_id, id"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(target_from_row).collect()
    }

    /// Removes a target. `NotFound` if the room has no such target.
    pub async fn delete_rtmp_target(&self, room: &str, id: i64) -> Result<(), StoreError> {
        let done =
            sqlx::query(&self.sql("DELETE FROM rtmp_targets WHERE room_id = $1 AND id = $2"))
                .bind(room.to_owned())
                .bind(id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Stores the bridge's last report on a target.
    pub async fn set_rtmp_target_status(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "UPDATE rtmp_targets SET last_state = $1, last_error = $2, updated_at = $3 WHERE id = $4",
        ))
        .bind(state.to_owned())
        .bind(error.map(str::to_owned))
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
