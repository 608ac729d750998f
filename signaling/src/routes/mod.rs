//! The HTTP surface: `app(state)` builds the whole router.

mod cors;
mod health;
mod metrics;
mod rooms;
mod web;
mod whip_whep;

use crate::state::AppState;
use axum::Router;

/// Builds the router for a running server (tests call it directly with `oneshot`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(whip_whep::routes())
        .merge(rooms::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(web::routes(&state))
        .layer(axum::middleware::from_fn(cors::cors))
        .with_state(state)
}
