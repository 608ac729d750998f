//! Server secrets (the token-signing key): generated on first run, stored, shared by every
//! node on the same database.

use super::{Store, StoreError, now_ms};
use sqlx::Row;

impl Store {
    /// The secret called `name`, created with `generate` if it does not exist yet. Two
    /// nodes racing on first start both end up with the one that was stored first.
    pub async fn secret(
        &self,
        name: &str,
        generate: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        if let Some(value) = self.read_secret(name).await? {
            return Ok(value);
        }
        let candidate = generate();
        let inserted = sqlx::query(
            &self.sql("INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3)"),
        )
        .bind(name.to_owned())
        .bind(candidate)
        .bind(now_ms())
        .execute(self.pool())
        .await;
        if let Err(err) = inserted {
            let conflict = matches!(super::conflict_or(err, name), StoreError::Conflict(_));
            if !conflict {
                return Err(StoreError::Corrupt(format!(
                    "could not store secret {name}"
                )));
            }
        }
        self.read_secret(name).await?.ok_or(StoreError::NotFound)
    }

    async fn read_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT value FROM secrets WHERE name = $1"))
            .bind(name.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("value")?),
            None => None,
        })
    }
}
