//! Follows, live notices and blocks between users.
//!
//! A live notice is derived, not queued: it is a show of a followed host that started
//! after the follow (and after the `since` the client last saw), so there is nothing to
//! deliver or clean up when a host goes live.

use super::{Store, StoreError, conflict_or, now_ms};
use serde::Serialize;
use sqlx::Row;

/// A user as listed in follows and blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserCard {
    /// User id.
    pub user_id: i64,
    /// Nickname.
    pub nickname: String,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// When the follow or block was made (ms).
    pub since: i64,
}

/// A followed host went live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LiveNotice {
    /// The show.
    pub show_id: i64,
    /// The room to open.
    pub room_id: String,
    /// The room's title.
    pub title: String,
    /// The host.
    pub host_id: i64,
    /// The host's nickname.
    pub host_nickname: String,
    /// When the show started (ms).
    pub started_at: i64,
    /// Whether the show is still live.
    pub live: bool,
}

fn fk_to_not_found(err: sqlx::Error, what: &str) -> StoreError {
    match conflict_or(err, what) {
        StoreError::Database(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
            StoreError::NotFound
        }
        other => other,
    }
}

impl Store {
    /// `follower` follows `host` (again: no change). `NotFound` for an unknown host.
    pub async fn follow(&self, follower: i64, host: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql("INSERT INTO follows (follower_id, host_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (follower_id, host_id) DO NOTHING"))
            .bind(follower)
            .bind(host)
            .bind(now_ms())
            .execute(self.pool())
            .await
            .map_err(|e| fk_to_not_found(e, "follow"))?;
        Ok(())
    }

    /// Ends a follow (absent: no change).
    pub async fn unfollow(&self, follower: i64, host: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM follows WHERE follower_id = $1 AND host_id = $2"))
            .bind(follower)
            .bind(host)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether `follower` follows `host`, and how many followers `host` has.
    pub async fn follow_status(&self, follower: i64, host: i64) -> Result<(bool, i64), StoreError> {
        let row = sqlx::query(&self.sql("SELECT CAST(COUNT(*) AS BIGINT) AS followers, CAST(COALESCE(SUM(CASE WHEN follower_id = $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS mine FROM follows WHERE host_id = $2"))
            .bind(follower)
            .bind(host)
            .fetch_one(self.pool())
            .await?;
        let mine: i64 = row.try_get("mine")?;
        Ok((mine > 0, row.try_get("followers")?))
    }

    /// The users `follower` follows, newest follow first.
    pub async fn follows(&self, follower: i64) -> Result<Vec<UserCard>, StoreError> {
        self.cards("SELECT u.id AS user_id, u.nickname, u.avatar_url, f.created_at AS since FROM follows f JOIN users u ON u.id = f.host_id WHERE f.follower_id = $1 ORDER BY f.created_at DESC, u.id", follower).await
    }

    /// The users `user` blocked, newest first.
    pub async fn blocks(&self, user: i64) -> Result<Vec<UserCard>, StoreError> {
        self.cards("SELECT u.id AS user_id, u.nickname, u.avatar_url, b.created_at AS since FROM blocks b JOIN users u ON u.id = b.blocked_id WHERE b.user_id = $1 ORDER BY b.created_at DESC, u.id", user).await
    }

    async fn cards(&self, sql: &str, user: i64) -> Result<Vec<UserCard>, StoreError> {
        let rows = sqlx::query(&self.sql(sql))
            .bind(user)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UserCard {
                    user_id: r.try_get("user_id")?,
                    nickname: r.try_get("nickname")?,
                    avatar_url: r.try_get("avatar_url")?,
                    since: r.try_get("since")?,
                })
            })
            .collect()
    }

    /// `user` blocks `blocked` (again: no change). `NotFound` for an unknown user.
    pub async fn block(&self, user: i64, blocked: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql("INSERT INTO blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id, blocked_id) DO NOTHING"))
            .bind(user)
            .bind(blocked)
            .bind(now_ms())
            .execute(self.pool())
            .await
            .map_err(|e| fk_to_not_found(e, "block"))?;
        Ok(())
    }

    /// Ends a block (absent: no change).
    pub async fn unblock(&self, user: i64, blocked: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2"))
            .bind(user)
            .bind(blocked)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Shows of hosts `follower` follows that started after the follow and after `since`
    /// (ms), newest first.
    pub async fn live_notices(
        &self,
        follower: i64,
        since: i64,
        limit: i64,
    ) -> Result<Vec<LiveNotice>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT s.id AS show_id, r.id AS room_id, r.title, u.id AS host_id, u.nickname, s.started_at, s.ended_at \
             FROM follows f JOIN rooms r ON r.host_id = f.host_id JOIN shows s ON s.room_id = r.id JOIN users u ON u.id = f.host_id \
             WHERE f.follower_id = $1 AND s.started_at >= f.created_at AND s.started_at > $2 \
             ORDER BY s.started_at DESC, s.id DESC LIMIT $3",
        ))
        .bind(follower)
        .bind(since)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let ended: Option<i64> = r.try_get("ended_at")?;
                Ok(LiveNotice {
                    show_id: r.try_get("show_id")?,
                    room_id: r.try_get("room_id")?,
                    title: r.try_get("title")?,
                    host_id: r.try_get("host_id")?,
                    host_nickname: r.try_get("nickname")?,
                    started_at: r.try_get("started_at")?,
                    live: ended.is_none(),
                })
            })
            .collect()
    }
}
