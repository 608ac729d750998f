//! The bridge's HTTP surface, an axum [`Router`] the server merges into its own:
//!
//! | Path | What | Content-Type |
//! | --- | --- | --- |
//! | `/live/{room}.flv` | HTTP-FLV, chunked, endless | `video/x-flv` |
//! | `/hls/{room}/index.m3u8`, `seg{N}.ts` | HLS (MPEG-TS) | `application/vnd.apple.mpegurl`, `video/mp2t` |
//! | `/llhls/{room}/index.m3u8[?_HLS_msn=&_HLS_part=]`, `init{N}.mp4`, `part{M}.{P}.mp4`, `seg{M}.mp4` | LL-HLS | `application/vnd.apple.mpegurl`, `video/mp4` |
//! | `/recordings/{room}/{id}/index.m3u8`, `NNNNNN.ts` | recordings (VOD) from disk | as above |
//!
//! Errors use the server's JSON shape `{"error":{"code","message"}}`: 404 `not_live` for a
//! room without a publisher, 422 `unsupported_codec` (with the reason) for a room whose
//! video cannot be bridged (VP8), 400 for a blocking reload too far ahead, 503 (with
//! `Retry-After`) while a stream is starting or a wait timed out. Every response carries
//! `Access-Control-Allow-Origin: *` so web players on other origins can fetch it.

use crate::recording::{recording_dir, valid_recording_id};
use crate::room::{HlsRequest, LlRequest, RoomCommand, Served};
use crate::service::{BridgeHandle, OutputError};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use sfu::RoomId;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Instant;

/// Playlist media type (RFC 8216).
pub const M3U8: &str = "application/vnd.apple.mpegurl";
/// MPEG-TS segment media type.
pub const MPEG_TS: &str = "video/mp2t";
/// fMP4 media type.
pub const MP4: &str = "video/mp4";
/// FLV media type.
pub const FLV: &str = "video/x-flv";

/// The bridge routes; `S` is the embedding router's state type (the bridge carries its
/// own).
pub fn router<S: Clone + Send + Sync + 'static>(bridge: BridgeHandle) -> Router<S> {
    Router::new()
        .route("/live/{file}", get(flv))
        .route("/hls/{room}/{file}", get(hls))
        .route("/llhls/{room}/{file}", get(llhls))
        .route("/recordings/{room}/{id}/{file}", get(recording))
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(bridge)
}

async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// An [`OutputError`] as an HTTP response.
pub struct HttpError(pub OutputError);

impl From<OutputError> for HttpError {
    fn from(err: OutputError) -> Self {
        HttpError(err)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            OutputError::NotLive(_) => (StatusCode::NOT_FOUND, "not_live"),
            OutputError::Unbridgeable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_codec"),
            OutputError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            OutputError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            OutputError::TooFarAhead(_) | OutputError::BadRequest(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            OutputError::Busy | OutputError::TooManyViewers => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            OutputError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        };
        let body = serde_json::json!({ "error": { "code": code, "message": self.0.to_string() } });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn parse_room(raw: &str) -> Result<RoomId, HttpError> {
    RoomId::parse(raw).ok_or_else(|| {
        HttpError(OutputError::NotFound(
            "room ids are 1-64 characters of A-Z a-z 0-9 _ -".into(),
        ))
    })
}

fn media(body: Bytes, content_type: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

const NO_CACHE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=3600, immutable";

async fn flv(
    State(bridge): State<BridgeHandle>,
    Path(file): Path<String>,
) -> Result<Response, HttpError> {
    let room = file.strip_suffix(".flv").ok_or_else(|| {
        HttpError(OutputError::NotFound(
            "HTTP-FLV is at /live/{room}.flv".into(),
        ))
    })?;
    let room = parse_room(room)?;
    let join = bridge
        .request(&room, |reply| RoomCommand::JoinFlv { rtmp: false, reply })
        .await??;
    let initial = futures::stream::iter(join.initial.into_iter().map(Ok::<Bytes, Infallible>));
    let live = futures::stream::unfold(join.live, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), rx))
    });
    let body = Body::from_stream(initial.chain(live));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(FLV)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            ),
            (
                header::HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response())
}

async fn hls(
    State(bridge): State<BridgeHandle>,
    Path((room, file)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let room = parse_room(&room)?;
    let request = if file == "index.m3u8" {
        HlsRequest::Playlist
    } else if let Some(n) = file
        .strip_prefix("seg")
        .and_then(|f| f.strip_suffix(".ts"))
        .and_then(|n| n.parse::<u64>().ok())
    {
        HlsRequest::Segment(n)
    } else {
        return Err(HttpError(OutputError::NotFound(format!(
            "no such HLS resource: {file}"
        ))));
    };
    let timeout = bridge.config().blocking_reload_timeout;
    let served = tokio::time::timeout(
        timeout,
        bridge.request(&room, |reply| RoomCommand::Hls { request, reply }),
    )
    .await
    .map_err(|_| HttpError(OutputError::NotReady))???;
    Ok(match request {
        HlsRequest::Playlist => media(served.body, M3U8, NO_CACHE),
        HlsRequest::Segment(_) => media(served.body, MPEG_TS, IMMUTABLE),
    })
}

fn parse_ll_file(file: &str) -> Option<LlRequest> {
    if let Some(n) = file
        .strip_prefix("init")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        return n.parse().ok().map(LlRequest::Init);
    }
    if let Some(rest) = file
        .strip_prefix("part")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        let (msn, part) = rest.split_once('.')?;
        return Some(LlRequest::Part {
            msn: msn.parse().ok()?,
            part: part.parse().ok()?,
        });
    }
    if let Some(n) = file
        .strip_prefix("seg")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        return n.parse().ok().map(LlRequest::Segment);
    }
    None
}

async fn llhls(
    State(bridge): State<BridgeHandle>,
    Path((room, file)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let room = parse_room(&room)?;
    let request = if file == "index.m3u8" {
        let bad = |what: &str| {
            HttpError(OutputError::BadRequest(format!(
                "{what} must be a non-negative integer"
            )))
        };
        let msn = query
            .get("_HLS_msn")
            .map(|v| v.parse::<u64>().map_err(|_| bad("_HLS_msn")))
            .transpose()?;
        let part = query
            .get("_HLS_part")
            .map(|v| v.parse::<u32>().map_err(|_| bad("_HLS_part")))
            .transpose()?;
        if part.is_some() && msn.is_none() {
            return Err(HttpError(OutputError::BadRequest(
                "_HLS_part needs _HLS_msn".into(),
            )));
        }
        LlRequest::Playlist { msn, part }
    } else {
        parse_ll_file(&file).ok_or_else(|| {
            HttpError(OutputError::NotFound(format!(
                "no such LL-HLS resource: {file}"
            )))
        })?
    };
    let timeout = bridge.config().blocking_reload_timeout;
    let served: Served = tokio::time::timeout(
        timeout,
        bridge.request(&room, |reply| RoomCommand::LlHls { request, reply }),
    )
    .await
    .map_err(|_| HttpError(OutputError::Timeout))???;
    if let (true, Some(ready)) = (served.waited, served.ready_at) {
        bridge
            .stats()
            .llhls_reload_answer
            .observe(Instant::now().saturating_duration_since(ready));
    }
    Ok(match request {
        LlRequest::Playlist { msn: Some(_), .. } if !served.ended => {
            media(served.body, M3U8, "public, max-age=6")
        }
        LlRequest::Playlist { .. } => media(served.body, M3U8, NO_CACHE),
        _ => media(served.body, MP4, IMMUTABLE),
    })
}

async fn recording(
    State(bridge): State<BridgeHandle>,
    Path((room, id, file)): Path<(String, String, String)>,
) -> Result<Response, HttpError> {
    let room = parse_room(&room)?;
    let not_found = || HttpError(OutputError::NotFound("no such recording file".into()));
    if !valid_recording_id(&id) {
        return Err(not_found());
    }
    let (content_type, cache) = if file == "index.m3u8" {
        (M3U8, NO_CACHE)
    } else if file.len() >= 9
        && file.len() <= 16
        && file.ends_with(".ts")
        && file[..file.len() - 3].bytes().all(|b| b.is_ascii_digit())
    {
        (MPEG_TS, IMMUTABLE)
    } else {
        return Err(not_found());
    };
    let path = recording_dir(&bridge.config().recordings_dir(), room.as_str(), &id).join(&file);
    let data = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    Ok(media(Bytes::from(data), content_type, cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llhls_file_names() {
        assert!(matches!(
            parse_ll_file("init0.mp4"),
            Some(LlRequest::Init(0))
        ));
        assert!(matches!(
            parse_ll_file("part12.3.mp4"),
            Some(LlRequest::Part { msn: 12, part: 3 })
        ));
        assert!(matches!(
            parse_ll_file("seg7.mp4"),
            Some(LlRequest::Segment(7))
        ));
        for bad in [
            "part1.mp4",
            "partx.1.mp4",
            "seg.mp4",
            "init-1.mp4",
            "index.m3u8",
            "seg1.ts",
        ] {
            assert!(parse_ll_file(bad).is_none(), "{bad}");
        }
    }
}
