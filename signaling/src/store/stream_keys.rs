//! Per-room RTMP stream keys: what an encoder (OBS, ffmpeg, WeChat `live-pusher`) presents
//! instead of an account token. One key per room, created on first use, replaced by a
//! rotation (the old key stops working for new connections at once).

use super::{Store, StoreError, now_ms};
use sqlx::Row;

impl Store {
    /// The room's stream key, created with `generate` if it has none yet.
    pub async fn stream_key(
        &self,
        room: &str,
        generate: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        if let Some(key) = self.read_stream_key(room).await? {
            return Ok(key);
        }
        let inserted =
            sqlx::query(&self.sql(
                "INSERT INTO stream_keys (room_id, stream_key, created_at) VALUES ($1, $2, $3)",
            ))
            .bind(room.to_owned())
            .bind(generate())
            .bind(now_ms())
            .execute(self.pool())
            .await;
        if let Err(err) = inserted {
            // Two requests racing on the first key: both return the one stored first.
            if !matches!(super::conflict_or(err, room), StoreError::Conflict(_)) {
                return Err(StoreError::Corrupt(format!(
                    "could not store the stream key of room {room}"
                )));
            }
        }
        self.read_stream_key(room)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Replaces the room's stream key with `key` and returns it.
    pub async fn rotate_stream_key(&self, room: &str, key: String) -> Result<String, StoreError> {
        let updated = sqlx::query(
            &self.sql("UPDATE stream_keys SET stream_key = $1, created_at = $2 WHERE room_id = $3"),
        )
        .bind(key.clone())
        .bind(now_ms())
        .bind(room.to_owned())
        .execute(self.pool())
        .await?;
        if updated.rows_affected() == 0 {
            return self.stream_key(room, || key).await;
        }
        Ok(key)
    }

    /// The room whose stream key is `key`, if any.
    pub async fn room_of_stream_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT room_id FROM stream_keys WHERE stream_key = $1"))
            .bind(key.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("room_id")?),
            None => None,
        })
    }

    async fn read_stream_key(&self, room: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT stream_key FROM stream_keys WHERE room_id = $1"))
            .bind(room.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("stream_key")?),
            None => None,
        })
    }
}
