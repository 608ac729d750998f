//! The HTTP surface: `app(state)` builds the whole router.

mod health;
mod metrics;
mod rooms;
mod web;
mod whip_whep;

use crate::state::AppState;
use axum::Router;
use axum::http::{HeaderName, Method, header};
use tower_http::cors::{Any, CorsLayer};

/// Builds the router for a running server (tests call it directly with `oneshot`).
pub fn app(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            HeaderName::from_static("accept-patch"),
        ]);
    Router::new()
        .merge(whip_whep::routes())
        .merge(rooms::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(web::routes(&state))
        .layer(cors)
        .with_state(state)
}
