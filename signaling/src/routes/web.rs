//! The web demo at `/`: built into the binary, or served from `--web-dir` during
//! development.

use crate::error::AppError;
use crate::state::AppState;
use axum::Router;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

#[derive(rust_embed::RustEmbed)]
#[folder = "../web-demo/"]
#[exclude = "node_modules/*"]
#[exclude = "miniprogram/*"]
struct WebDemo;

pub(super) fn routes(state: &AppState) -> Router<AppState> {
    match &state.config.web_dir {
        Some(dir) => Router::new()
            .fallback_service(ServeDir::new(dir).append_index_html_on_directories(true)),
        None => Router::new().fallback(embedded),
    }
}

async fn embedded(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    match WebDemo::get(&path) {
        Some(file) => {
            let mime = mime_guess::from_path(&path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => AppError::NotFound(format!("no such path: /{path}")).into_response(),
    }
}
