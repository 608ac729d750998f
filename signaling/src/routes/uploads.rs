//! Image uploads (avatar, profile photos, room covers) and serving them back.
//!
//! `POST /api/uploads?kind=…` takes the image as the raw body (`image/jpeg|png|webp`) or
//! as the `file` field of `multipart/form-data` (what WeChat's `wx.uploadFile` sends). The
//! bytes are checked and re-encoded by [`crate::images`] on a blocking thread, written to
//! `data_dir/uploads/{id}.jpg` (directory 0700, file 0600) under a random id, and recorded
//! in storage. `GET /uploads/{id}.jpg` serves the file as immutable.

use crate::auth::{ClientIp, CurrentUser};
use crate::error::AppError;
use crate::images::{ImageKind, MAX_UPLOAD_BYTES, ProcessedImage};
use crate::state::AppState;
use crate::store::UploadRecord;
use crate::validate;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tokio::sync::Semaphore;

/// Images decoded at once (each may take ~100 MiB and a core for a moment).
static DECODE_WORK: Semaphore = Semaphore::const_new(2);

/// Multipart framing allowed on top of the image itself.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/uploads",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD)),
        )
        .route("/uploads/{file}", get(serve))
}

/// What the upload is for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// avatar (stored ≤ 400 px), photo or cover (≤ 1280 px).
    pub kind: Option<String>,
}

/// A stored upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadView {
    /// Random id.
    pub id: String,
    /// Where it is served: `/uploads/{id}.jpg` (use as `avatar_url`, a photo, a `cover_url`).
    pub url: String,
    /// Pixel width after re-encoding.
    pub width: u32,
    /// Pixel height after re-encoding.
    pub height: u32,
}

fn kind(raw: Option<&str>) -> Result<ImageKind, AppError> {
    match raw {
        Some("avatar") => Ok(ImageKind::Avatar),
        Some("photo") => Ok(ImageKind::Photo),
        Some("cover") => Ok(ImageKind::Cover),
        _ => Err(AppError::invalid("kind", "must be avatar, photo or cover")),
    }
}

/// The uploads directory (created 0700 on first use).
fn upload_dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("uploads")
}

/// The image bytes of the request: the raw body or the multipart `file` field.
async fn image_bytes(state: &AppState, request: Request) -> Result<bytes::Bytes, AppError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence {
        "multipart/form-data" => {
            let mut form = Multipart::from_request(request, state)
                .await
                .map_err(|e| AppError::BadRequest(e.body_text()))?;
            loop {
                let field = form.next_field().await.map_err(multipart_error)?;
                let Some(mut field) = field else {
                    return Err(AppError::invalid("file", "the form has no `file` field"));
                };
                if field.name() != Some("file") {
                    continue;
                }
                let mut out = bytes::BytesMut::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if out.len() + chunk.len() > MAX_UPLOAD_BYTES {
                        return Err(AppError::PayloadTooLarge {
                            limit: MAX_UPLOAD_BYTES,
                        });
                    }
                    out.extend_from_slice(&chunk);
                }
                return Ok(out.freeze());
            }
        }
        "image/jpeg" | "image/png" | "image/webp" => {
            super::read_body(request.into_body(), MAX_UPLOAD_BYTES).await
        }
        _ => Err(AppError::UnsupportedMediaType {
            expected: "image/jpeg, image/png, image/webp or multipart/form-data",
        }),
    }
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> AppError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge {
            limit: MAX_UPLOAD_BYTES,
        }
    } else {
        AppError::BadRequest(format!("malformed multipart body: {}", err.body_text()))
    }
}

/// Writes the file (0600) into the uploads directory (0700) under a fresh random id.
async fn store_file(dir: PathBuf, jpeg: Vec<u8>) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let id: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let temp = dir.join(format!(".{id}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&jpeg)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(format!("{id}.jpg")))?;
        Ok(id)
    })
    .await
    .map_err(|e| AppError::Internal(format!("upload writer: {e}")))?
    .map_err(|e| AppError::Internal(format!("cannot store the upload: {e}")))
}

#[utoipa::path(post, path = "/api/uploads", tag = "accounts", security(("bearer" = [])), params(UploadQuery),
    request_body(content = Vec<u8>, description = "The image (JPEG, PNG or WebP, ≤ 5 MiB) as the body, or multipart/form-data with a `file` field", content_type = "image/jpeg"),
    responses((status = 201, body = UploadView), (status = 401, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub(super) async fn upload(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    CurrentUser(user): CurrentUser,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<UploadView>), AppError> {
    if user.is_banned() {
        return Err(AppError::Forbidden(crate::access::BANNED.into()));
    }
    let kind = kind(query.kind.as_deref())?;
    state.limits.check_upload(ip, user.id)?;
    let bytes = image_bytes(&state, request).await?;
    let work = DECODE_WORK
        .acquire()
        .await
        .map_err(|_| AppError::Unavailable("the server is shutting down".into()))?;
    let processed: ProcessedImage =
        tokio::task::spawn_blocking(move || crate::images::process(&bytes, kind))
            .await
            .map_err(|e| AppError::Internal(format!("image decoder: {e}")))??;
    drop(work);
    let size = processed.jpeg.len() as i64;
    let id = store_file(upload_dir(&state), processed.jpeg).await?;
    state
        .store
        .record_upload(&UploadRecord {
            id: id.clone(),
            user_id: user.id,
            kind: kind.as_str().to_owned(),
            width: i64::from(processed.width),
            height: i64::from(processed.height),
            bytes: size,
        })
        .await?;
    tracing::info!(user = user.id, upload = %id, kind = kind.as_str(), "image uploaded");
    Ok((
        StatusCode::CREATED,
        Json(UploadView {
            url: format!("/uploads/{id}.jpg"),
            id,
            width: processed.width,
            height: processed.height,
        }),
    ))
}

pub(super) async fn serve(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let missing = || AppError::NotFound("upload not found".into());
    let path = format!("/uploads/{file}");
    let id = validate::upload_id(&path).ok_or_else(missing)?;
    let bytes = tokio::fs::read(upload_dir(&state).join(format!("{id}.jpg")))
        .await
        .map_err(|_| missing())?;
    let mut response = Body::from(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
