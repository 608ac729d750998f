//! The HTTP surface: `app(state)` builds the whole router.

mod accounts;
mod bridge_out;
mod cors;
mod follows;
mod health;
mod ingest;
mod interaction;
mod metrics;
mod notify_ws;
mod openapi;
mod recordings;
mod restream;
mod rooms;
mod schedule;
mod sessions;
mod share;
mod uploads;
mod viewers;
pub mod views;
mod wallet;
mod web;
mod whip_whep;
mod ws;

use crate::error::AppError;
use crate::state::AppState;
use axum::Router;
use axum::body::Body;

/// Builds the router for a running server (tests call it directly with `oneshot`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(whip_whep::routes())
        .merge(rooms::routes())
        .merge(ingest::routes())
        .merge(interaction::routes())
        .merge(ws::routes())
        .merge(accounts::routes())
        .merge(sessions::routes())
        .merge(openapi::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(recordings::routes())
        .merge(restream::routes())
        .merge(bridge_out::routes(&state))
        .merge(web::routes(&state))
        .merge(wallet::routes())
        .merge(follows::routes())
        .merge(viewers::routes())
        .merge(uploads::routes())
        .merge(share::routes())
        .merge(schedule::routes())
        .merge(notify_ws::routes())
        .layer(axum::middleware::from_fn(cors::cors))
        .with_state(state)
}

/// Reads a request body up to `limit` bytes: 413 beyond, 408 when it arrives too slowly
/// ([`crate::limits::TimedBody`]), 400 if the stream fails.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, AppError> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        let mut too_large = false;
        let mut too_slow = None;
        while let Some(current) = source {
            too_large |= current.is::<http_body_util::LengthLimitError>();
            if let Some(timeout) = current.downcast_ref::<crate::limits::BodyTimedOut>() {
                too_slow = Some(timeout.secs);
            }
            source = current.source();
        }
        if let Some(secs) = too_slow {
            AppError::RequestTimeout { secs }
        } else if too_large {
            AppError::PayloadTooLarge { limit }
        } else {
            AppError::BadRequest(format!("could not read the request body: {err}"))
        }
    })
}
