//! Sharing a room: the web link, the mini-program page and a QR code (分享海报) of the link.
//! Only callers who may watch the room get them (a private room stays hidden, 404).

use crate::access::{Door, authorize};
use crate::auth::MaybeUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::urls::public_base;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms/{id}/share", get(share))
        .route("/api/rooms/{id}/share.svg", get(share_svg))
}

/// The ways to open a room from outside.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShareLinks {
    /// The web room (the web demo's hash route `#/room/{id}`), absolute.
    pub web_url: String,
    /// The mini-program page (`wx.navigateTo` / the share card's `path`).
    pub miniprogram_path: String,
    /// An SVG QR code of `web_url`.
    pub qr_svg_url: String,
}

/// The room's share links, once the caller may watch it.
async fn links(
    state: &AppState,
    user: Option<&crate::store::User>,
    headers: &HeaderMap,
    id: &str,
) -> Result<ShareLinks, AppError> {
    let room = authorize(state, user, id, Door::Whep).await?;
    // Room ids are URL-safe (letters, digits, `-`, `_`), so they go in the links as they are.
    Ok(ShareLinks {
        web_url: format!("{}/#/room/{}", public_base(state, headers), room.id),
        miniprogram_path: format!("pages/room/room?id={}", room.id),
        qr_svg_url: format!("/api/rooms/{}/share.svg", room.id),
    })
}

#[utoipa::path(get, path = "/api/rooms/{id}/share", tag = "rooms", params(("id" = String, Path)),
    responses((status = 200, body = ShareLinks), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn share(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ShareLinks>, AppError> {
    Ok(Json(links(&state, user.as_ref(), &headers, &id).await?))
}

#[utoipa::path(get, path = "/api/rooms/{id}/share.svg", tag = "rooms", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn share_svg(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let links = links(&state, user.as_ref(), &headers, &id).await?;
    let code = qrcode::QrCode::new(links.web_url.as_bytes())
        .map_err(|e| AppError::Internal(format!("QR code of the room link: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build();
    let mut response = svg.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(response)
}
