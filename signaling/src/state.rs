//! Shared application state: cheap to clone, every field an `Arc` or a handle.

use crate::config::Config;
use sfu::SfuHandle;
use std::sync::Arc;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The media plane.
    pub sfu: SfuHandle,
    /// The effective configuration.
    pub config: Arc<Config>,
}

impl AppState {
    /// Bundles the parts.
    pub fn new(sfu: SfuHandle, config: Config) -> Self {
        Self {
            sfu,
            config: Arc::new(config),
        }
    }
}
