//! What a public profile shows beyond the user row: the live room the user hosts now.

use super::{Store, StoreError};
use sqlx::Row;

impl Store {
    /// The public, open room `host` is live in now, if any (private rooms are not told).
    pub async fn live_room_of(&self, host: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT id FROM rooms WHERE host_id = $1 AND live = 1 AND status = 'open' AND visibility = 'public' ORDER BY updated_at DESC, id LIMIT 1",
        ))
        .bind(host)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| r.try_get("id")).transpose().map_err(Into::into)
    }
}
