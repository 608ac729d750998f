//! # Queqiao signaling — the `queqiao` server
//!
//! The HTTP edge of the product. Requests arrive at [`routes::app`]; WHIP/WHEP offers
//! are handed to the media plane ([`sfu::SfuHandle`]), which negotiates them and owns the
//! resulting WebRTC sessions; every error leaves through one [`error::AppError`] that
//! decides the HTTP status and the JSON error body.
//!
//! ```text
//!  browser / OBS / app ──HTTP──► routes (whip_whep, rooms, health, metrics, web demo)
//!                                   │ SfuHandle (message passing)
//!                                   ▼
//!                                 sfu shard (UDP) ──► bridge taps
//!  OBS / ffmpeg / live-pusher ──RTMP──► rtmp_ingest ──► sfu (ingest seat) ──► viewers + bridge
//! ```

pub mod access;
pub mod api_json;
pub mod auth;
pub mod bridge_metrics;
pub mod bridge_sync;
pub mod config;
pub mod error;
pub mod images;
pub mod interaction;
pub mod limits;
pub mod live;
pub mod notify;
pub mod password;
pub mod payment;
pub mod retention;
pub mod routes;
pub mod rtmp_ingest;
pub mod server;
pub mod state;
pub mod store;
pub mod upload_cleanup;
pub mod urls;
pub mod validate;
pub mod webhooks;

pub use routes::app;
pub use state::AppState;
