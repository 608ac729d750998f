//! # Queqiao test kit
//!
//! Real WebRTC clients (the async `webrtc` crate) that publish the committed clip by WHIP
//! and watch by WHEP, an in-process server on free ports, and small HTTP helpers. The
//! end-to-end tests in `tests/tests/` and the load generator are built on it.

pub mod api;
pub mod bridge;
pub mod chatload;
pub mod clip;
pub mod http;
pub mod load;
pub mod offers;
pub mod postgres;
pub mod scenario;
pub mod server;
pub mod whep;
pub mod whip;
pub mod ws;

use std::sync::{Arc, OnceLock};

/// The async runtime the WebRTC clients use (the current tokio runtime).
pub fn runtime() -> Arc<dyn webrtc::runtime::Runtime> {
    static RUNTIME: OnceLock<Arc<dyn webrtc::runtime::Runtime>> = OnceLock::new();
    Arc::clone(RUNTIME.get_or_init(|| {
        webrtc::runtime::default_runtime().expect("the tokio runtime feature is enabled")
    }))
}

/// Logs to the test output at `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error")),
        )
        .with_test_writer()
        .try_init();
}
