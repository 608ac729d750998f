//! Show history: each time a room went live, for how long, and its peak audience.

use super::{Store, StoreError, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// One live session of a room.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Show {
    /// Identity.
    pub id: i64,
    /// The room.
    pub room_id: String,
    /// When media started (ms).
    pub started_at: i64,
    /// When it ended (ms), if it did.
    pub ended_at: Option<i64>,
    /// Most concurrent WebRTC viewers.
    pub peak_viewers: i64,
    /// Why it ended (`publisher_left`, `stopped_by_admin`, `server_restart`, …).
    pub end_reason: Option<String>,
}

fn show_from_row(row: &AnyRow) -> Result<Show, StoreError> {
    Ok(Show {
        id: row.try_get("id")?,
        room_id: row.try_get("room_id")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        peak_viewers: row.try_get("peak_viewers")?,
        end_reason: row.try_get("end_reason")?,
    })
}

impl Store {
    /// Starts a show and marks the room live, in one transaction.
    pub async fn start_show(&self, room: &str) -> Result<Show, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&self.sql(
            "INSERT INTO shows (room_id, started_at, peak_viewers) VALUES ($1, $2, 0) RETURNING id, room_id, started_at, ended_at, peak_viewers, end_reason",
        ))
        .bind(room.to_owned())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(&self.sql("UPDATE rooms SET live = 1 WHERE id = $1"))
            .bind(room.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        show_from_row(&row)
    }

    /// Raises a show's peak audience (never lowers it).
    pub async fn raise_peak(&self, show: i64, viewers: i64) -> Result<(), StoreError> {
        sqlx::query(
            &self.sql("UPDATE shows SET peak_viewers = $1 WHERE id = $2 AND peak_viewers < $1"),
        )
        .bind(viewers)
        .bind(show)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a show and marks the room offline, in one transaction.
    pub async fn end_show(
        &self,
        show: i64,
        peak_viewers: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&self.sql(
            "UPDATE shows SET ended_at = $1, end_reason = $2, peak_viewers = CASE WHEN peak_viewers < $3 THEN $3 ELSE peak_viewers END \
             WHERE id = $4 AND ended_at IS NULL RETURNING room_id",
        ))
        .bind(now_ms())
        .bind(reason.to_owned())
        .bind(peak_viewers)
        .bind(show)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let room: String = row.try_get("room_id")?;
            sqlx::query(&self.sql("UPDATE rooms SET live = 0, viewers = 0 WHERE id = $1"))
                .bind(room)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Closes shows left open by a previous process (crash or restart).
    pub async fn end_dangling_shows(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql(
            "UPDATE shows SET ended_at = $1, end_reason = 'server_restart' WHERE ended_at IS NULL",
        ))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        self.reset_live_rooms().await?;
        Ok(done.rows_affected())
    }

    /// A room's shows, newest first.
    pub async fn shows(&self, room: &str, limit: i64) -> Result<Vec<Show>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT id, room_id, started_at, ended_at, peak_viewers, end_reason FROM shows WHERE room_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        ))
        .bind(room.to_owned())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(show_from_row).collect()
    }
}
