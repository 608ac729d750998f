//! Scheduled shows (预约) of a room and the users who reserved them.
//!
//! Times of scheduled shows are Unix seconds (what clients send), unlike the rest of the
//! store (milliseconds).

use super::{Store, StoreError, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A scheduled show as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScheduledShow {
    /// Schedule id.
    pub id: i64,
    /// The room.
    pub room_id: String,
    /// When the show starts (Unix seconds).
    pub starts_at: i64,
    /// What the show is called.
    pub title: String,
    /// How many reserved it.
    pub reservations: i64,
    /// Whether the caller reserved it (only when listed for a logged-in caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved: Option<bool>,
}

/// Most upcoming scheduled shows a room may have.
pub const MAX_UPCOMING_PER_ROOM: i64 = 20;

const SCHEDULE_SELECT: &str = "SELECT s.id, s.room_id, s.starts_at, s.title, \
    (SELECT CAST(COUNT(*) AS BIGINT) FROM reservations r WHERE r.schedule_id = s.id) AS reservations, \
    (SELECT CAST(COUNT(*) AS BIGINT) FROM reservations m WHERE m.schedule_id = s.id AND m.user_id = $1) AS mine \
    FROM scheduled_shows s";

fn from_row(row: &AnyRow, with_mine: bool) -> Result<ScheduledShow, StoreError> {
    let mine: i64 = row.try_get("mine")?;
    Ok(ScheduledShow {
        id: row.try_get("id")?,
        room_id: row.try_get("room_id")?,
        starts_at: row.try_get("starts_at")?,
        title: row.try_get("title")?,
        reservations: row.try_get("reservations")?,
        reserved: with_mine.then_some(mine > 0),
    })
}

impl Store {
    /// Schedules a show. `Conflict` when the room already has
    /// [`MAX_UPCOMING_PER_ROOM`] upcoming shows.
    pub async fn create_schedule(
        &self,
        room: &str,
        starts_at: i64,
        title: &str,
        now_secs: i64,
    ) -> Result<ScheduledShow, StoreError> {
        let mut tx = self.begin_write().await?;
        let upcoming: i64 = sqlx::query(&self.sql(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM scheduled_shows WHERE room_id = $1 AND starts_at > $2",
        ))
        .bind(room.to_owned())
        .bind(now_secs)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if upcoming >= MAX_UPCOMING_PER_ROOM {
            return Err(StoreError::Conflict(format!(
                "a room may have at most {MAX_UPCOMING_PER_ROOM} upcoming scheduled shows"
            )));
        }
        let row = sqlx::query(&self.sql(
            "INSERT INTO scheduled_shows (room_id, starts_at, title, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        ))
        .bind(room.to_owned())
        .bind(starts_at)
        .bind(title.to_owned())
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ScheduledShow {
            id: row.try_get("id")?,
            room_id: room.to_owned(),
            starts_at,
            title: title.to_owned(),
            reservations: 0,
            reserved: None,
        })
    }

    /// One scheduled show, with whether `caller` reserved it (`None`: nobody asks).
    pub async fn schedule(
        &self,
        id: i64,
        caller: Option<i64>,
    ) -> Result<ScheduledShow, StoreError> {
        let sql = format!("{SCHEDULE_SELECT} WHERE s.id = $2");
        let row = sqlx::query(&self.sql(&sql))
            .bind(caller.unwrap_or(0))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        from_row(&row, caller.is_some())
    }

    /// A room's shows starting after `now_secs`, soonest first.
    pub async fn upcoming_schedules(
        &self,
        room: &str,
        now_secs: i64,
        caller: Option<i64>,
    ) -> Result<Vec<ScheduledShow>, StoreError> {
        let sql = format!(
            "{SCHEDULE_SELECT} WHERE s.room_id = $2 AND s.starts_at > $3 ORDER BY s.starts_at, s.id LIMIT $4"
        );
        let rows = sqlx::query(&self.sql(&sql))
            .bind(caller.unwrap_or(0))
            .bind(room.to_owned())
            .bind(now_secs)
            .bind(MAX_UPCOMING_PER_ROOM)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| from_row(r, caller.is_some())).collect()
    }

    /// Deletes a room's scheduled show (and its reservations). `NotFound` if the room has
    /// no such show.
    pub async fn delete_schedule(&self, room: &str, id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&self.sql(
            "DELETE FROM reservations WHERE schedule_id IN (SELECT id FROM scheduled_shows WHERE id = $1 AND room_id = $2)",
        ))
        .bind(id)
        .bind(room.to_owned())
        .execute(&mut *tx)
        .await?;
        let done =
            sqlx::query(&self.sql("DELETE FROM scheduled_shows WHERE id = $1 AND room_id = $2"))
                .bind(id)
                .bind(room.to_owned())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// `user` reserves the show (again: no change).
    pub async fn reserve(&self, schedule: i64, user: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO reservations (schedule_id, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (schedule_id, user_id) DO NOTHING",
        ))
        .bind(schedule)
        .bind(user)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// `user` cancels a reservation (absent: no change).
    pub async fn unreserve(&self, schedule: i64, user: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM reservations WHERE schedule_id = $1 AND user_id = $2"))
            .bind(schedule)
            .bind(user)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The upcoming shows `user` reserved (starting after `now_secs`), soonest first.
    pub async fn my_reservations(
        &self,
        user: i64,
        now_secs: i64,
    ) -> Result<Vec<ScheduledShow>, StoreError> {
        let sql = format!(
            "{SCHEDULE_SELECT} JOIN reservations v ON v.schedule_id = s.id AND v.user_id = $1 \
             WHERE s.starts_at > $2 ORDER BY s.starts_at, s.id LIMIT 100"
        );
        let rows = sqlx::query(&self.sql(&sql))
            .bind(user)
            .bind(now_secs)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| from_row(r, true)).collect()
    }

    /// Who reserved a show of `room` starting in `[from_secs, to_secs]`, with that show's
    /// title (the soonest one a user reserved), for the live notice.
    pub async fn reservers_between(
        &self,
        room: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT v.user_id, s.title, s.starts_at FROM reservations v JOIN scheduled_shows s ON s.id = v.schedule_id \
             WHERE s.room_id = $1 AND s.starts_at >= $2 AND s.starts_at <= $3 ORDER BY s.starts_at, s.id",
        ))
        .bind(room.to_owned())
        .bind(from_secs)
        .bind(to_secs)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<(i64, String)> = Vec::new();
        for row in &rows {
            let user: i64 = row.try_get("user_id")?;
            if !out.iter().any(|(u, _)| *u == user) {
                out.push((user, row.try_get("title")?));
            }
        }
        Ok(out)
    }

    /// The ids of `host`'s followers.
    pub async fn follower_ids(&self, host: i64) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            &self.sql("SELECT follower_id FROM follows WHERE host_id = $1 ORDER BY follower_id"),
        )
        .bind(host)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| r.try_get("follower_id").map_err(Into::into))
            .collect()
    }
}
