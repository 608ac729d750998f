//! The webhook outbox: events are written here first (durable), then delivered by
//! [`crate::webhooks`] with retries until the receiver accepts them or they give out.

use super::{Store, StoreError, conflict_or, now_ms};
use sqlx::Row;

/// An event waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The event id (the receiver's dedupe key).
    pub id: String,
    /// The event type (`host_live`, …).
    pub event_type: String,
    /// The JSON body, exactly as signed and sent.
    pub body: String,
    /// Delivery attempts so far.
    pub attempts: i64,
}

impl Store {
    /// Adds an event to the outbox, due at once.
    pub async fn enqueue_webhook(
        &self,
        id: &str,
        event_type: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(&self.sql(
            "INSERT INTO webhook_outbox (id, event_type, body, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, 0, $4, $4)",
        ))
        .bind(id.to_owned())
        .bind(event_type.to_owned())
        .bind(body.to_owned())
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(|e| conflict_or(e, "webhook event id"))?;
        Ok(())
    }

    /// Events due for an attempt at `now` (ms), oldest first.
    pub async fn due_webhooks(&self, now: i64, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT id, event_type, body, attempts FROM webhook_outbox \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, created_at LIMIT $2",
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEvent {
                    id: r.try_get("id")?,
                    event_type: r.try_get("event_type")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// The receiver accepted the event.
    pub async fn webhook_delivered(&self, id: &str, attempts: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "UPDATE webhook_outbox SET delivered_at = $1, attempts = $2, last_error = NULL WHERE id = $3",
        ))
        .bind(now_ms())
        .bind(attempts)
        .bind(id.to_owned())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An attempt failed: try again at `next_attempt_at` (ms), or give up (`None`).
    pub async fn webhook_failed(
        &self,
        id: &str,
        attempts: i64,
        next_attempt_at: Option<i64>,
        error: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(&self.sql(
            "UPDATE webhook_outbox SET attempts = $1, next_attempt_at = $2, failed_at = $3, last_error = $4 WHERE id = $5",
        ))
        .bind(attempts)
        .bind(next_attempt_at.unwrap_or(now))
        .bind(if next_attempt_at.is_none() { Some(now) } else { None })
        .bind(error.chars().take(500).collect::<String>())
        .bind(id.to_owned())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Delivery state of one event: `(attempts, delivered, gave up)` (tests, operators).
    pub async fn webhook_state(&self, id: &str) -> Result<(i64, bool, bool), StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT attempts, delivered_at, failed_at FROM webhook_outbox WHERE id = $1"),
        )
        .bind(id.to_owned())
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        let delivered: Option<i64> = row.try_get("delivered_at")?;
        let failed: Option<i64> = row.try_get("failed_at")?;
        Ok((
            row.try_get("attempts")?,
            delivered.is_some(),
            failed.is_some(),
        ))
    }
}
