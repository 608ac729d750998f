//! Operator webhooks: events for the operator's own push channel (APNs, 个推, WeChat
//! subscription messages, …), delivered at least once from a durable outbox.
//!
//! [`Webhooks::emit`] writes the event to the outbox table (so a restart loses nothing);
//! one delivery task POSTs due events to `[webhooks] url` as JSON, signed with
//! `X-Queqiao-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! (Stripe's scheme: the receiver recomputes it over the raw body and rejects old `t`).
//! A non-2xx answer or a transport error is retried with exponential backoff up to
//! `max_attempts`; the event `id` (also `X-Queqiao-Event-Id`) is the receiver's dedupe key,
//! since a retry after a lost answer delivers an event twice.

use crate::store::{OutboxEvent, Store, StoreError};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// `[webhooks]` in the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where events are POSTed (`https://…`); unset: no webhooks.
    pub url: Option<String>,
    /// The HMAC-SHA256 key of the signature. Never shown.
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// Attempts per event before it is given up (kept in the outbox with its last error).
    pub max_attempts: u32,
    /// The first retry's delay in milliseconds; each next one doubles (at most 15 min).
    pub retry_base_ms: u64,
    /// How long one attempt may take, seconds.
    pub timeout_secs: f64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            max_attempts: 12,
            retry_base_ms: 1000,
            timeout_secs: 10.0,
        }
    }
}

/// Events the operator is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A host went live: `recipients` are the users to push a notice to (followers, and
    /// those who reserved one of the room's scheduled shows).
    HostLive {
        /// The room.
        room_id: String,
        /// The host.
        host_id: i64,
        /// Users to notify.
        recipients: Vec<i64>,
    },
}

impl WebhookEvent {
    /// The `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            WebhookEvent::HostLive { .. } => "host_live",
        }
    }

    /// The JSON body for event `id` at `at` (Unix ms).
    pub fn body(&self, id: &str, at: i64) -> serde_json::Value {
        match self {
            WebhookEvent::HostLive {
                room_id,
                host_id,
                recipients,
            } => serde_json::json!({
                "id": id, "type": self.type_name(), "at": at,
                "room_id": room_id, "host_id": host_id, "recipients": recipients,
            }),
        }
    }
}

/// The `X-Queqiao-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},v1={digest}")
}

/// The delay before attempt `attempts + 1`, after `attempts` failures.
pub fn backoff(base_ms: u64, attempts: i64) -> Duration {
    let exponent = attempts.clamp(1, 20) as u32 - 1;
    let ms = base_ms.max(1).saturating_mul(1u64 << exponent);
    Duration::from_millis(ms.min(15 * 60 * 1000))
}

/// Emits events into the outbox and wakes the delivery task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Webhooks {
    store: Store,
    wake: Arc<Notify>,
    enabled: bool,
}

impl Webhooks {
    /// Starts the delivery task when `settings` has a URL (events already in the outbox
    /// from before a restart are delivered too).
    pub fn start(store: Store, settings: &WebhookSettings) -> Webhooks {
        let wake = Arc::new(Notify::new());
        let enabled = settings.url.as_deref().is_some_and(|u| !u.is_empty());
        if enabled {
            tokio::spawn(deliver(store.clone(), settings.clone(), Arc::clone(&wake)));
        }
        Webhooks {
            store,
            wake,
            enabled,
        }
    }

    /// Queues `event`; returns its id (`None` when webhooks are not configured).
    pub async fn emit(&self, event: &WebhookEvent) -> Result<Option<String>, StoreError> {
        if !self.enabled {
            return Ok(None);
        }
        let id: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = event.body(&id, crate::store::now_ms()).to_string();
        self.store
            .enqueue_webhook(&id, event.type_name(), &body)
            .await?;
        self.wake.notify_one();
        Ok(Some(id))
    }
}

/// How often the outbox is looked at when nothing wakes the task.
const POLL: Duration = Duration::from_millis(500);

async fn deliver(store: Store, settings: WebhookSettings, wake: Arc<Notify>) {
    let Some(url) = settings.url.clone() else {
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(
            settings.timeout_secs.clamp(0.1, 300.0),
        ))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("queqiao-webhooks")
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "webhooks: cannot build the HTTP client; no deliveries");
            return;
        }
    };
    let secret = settings.secret.clone().unwrap_or_default();
    loop {
        match store.due_webhooks(crate::store::now_ms(), 20).await {
            Ok(due) => {
                for event in due {
                    attempt(&store, &client, &url, &secret, &settings, event).await;
                }
            }
            Err(err) => tracing::warn!(%err, "webhooks: cannot read the outbox"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn attempt(
    store: &Store,
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    settings: &WebhookSettings,
    event: OutboxEvent,
) {
    let attempts = event.attempts + 1;
    let timestamp = crate::store::now_ms() / 1000;
    let result = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            "X-Queqiao-Signature",
            signature(secret, timestamp, &event.body),
        )
        .header("X-Queqiao-Event-Id", event.id.as_str())
        .body(event.body.clone())
        .send()
        .await;
    let error = match result {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("HTTP {}", response.status().as_u16())),
        Err(err) => Some(err.to_string()),
    };
    let saved = match &error {
        None => store.webhook_delivered(&event.id, attempts).await,
        Some(error) => {
            let next = (attempts < i64::from(settings.max_attempts.max(1))).then(|| {
                crate::store::now_ms()
                    + backoff(settings.retry_base_ms, attempts).as_millis() as i64
            });
            tracing::warn!(event = %event.id, kind = %event.event_type, attempts, %error, gave_up = next.is_none(), "webhook delivery failed");
            store.webhook_failed(&event.id, attempts, next, error).await
        }
    };
    if let Err(err) = saved {
        tracing::warn!(event = %event.id, %err, "webhooks: cannot record the attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_backoff() {
        // HMAC-SHA256("secret", "1700000000.{}"), computed independently with Python's hmac.
        assert_eq!(
            signature("secret", 1_700_000_000, "{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_eq!(backoff(1000, 1), Duration::from_secs(1));
        assert_eq!(backoff(1000, 3), Duration::from_secs(4));
        assert_eq!(backoff(1000, 50), Duration::from_secs(15 * 60));
        let body = WebhookEvent::HostLive {
            room_id: "r".into(),
            host_id: 7,
            recipients: vec![1, 2],
        }
        .body("abc", 5);
        assert_eq!(body["type"], "host_live");
        assert_eq!(body["recipients"], serde_json::json!([1, 2]));
    }
}
