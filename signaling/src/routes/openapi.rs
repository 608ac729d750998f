//! `GET /api/openapi.json`: the REST API described from the handlers' own annotations.

use super::{
    accounts, ingest, interaction, recordings, restream, rooms, schedule, sessions, share, uploads,
    viewers, views,
};
use crate::state::AppState;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Queqiao API", description = "Rooms, accounts and live streams of the Queqiao live-streaming server. Errors are always `{\"error\":{\"code\",\"message\"}}`."),
    paths(
        accounts::register, accounts::login, accounts::me, accounts::update_me, accounts::change_password,
        accounts::profile, accounts::list_users, accounts::set_role, accounts::ban, accounts::unban,
        rooms::list, rooms::create, rooms::detail, rooms::update, rooms::close, rooms::stream, rooms::shows,
        rooms::stop, rooms::grants, rooms::grant, rooms::revoke, ingest::ingest, ingest::rotate,
        sessions::list,
        recordings::list, restream::list, restream::add, restream::remove,
        interaction::gifts, interaction::wallet, interaction::top_up, interaction::send_gift, interaction::leaderboard,
        interaction::events, interaction::chat, interaction::mute, interaction::unmute, interaction::kick,
        interaction::delete_message,
        viewers::viewers, uploads::upload, share::share, share::share_svg,
        schedule::create, schedule::list, schedule::remove, schedule::reserve, schedule::unreserve, schedule::mine,
    ),
    components(schemas(
        crate::error::ErrorBody, crate::error::ErrorDetail, views::AccountView, views::ProfileView, views::RoomView,
        views::HostView, crate::store::Role, crate::store::Visibility, crate::store::Show, crate::live::SessionInfo,
        crate::store::Gift, crate::store::Wallet, crate::store::Gifter,
        recordings::RecordingView, restream::TargetView, restream::NewTargetRequest,
        crate::interaction::hub::ViewerList, crate::interaction::hub::OnlineViewer, uploads::UploadView, share::ShareLinks,
        schedule::ScheduleRequest, crate::store::ScheduledShow, ingest::IngestInfo, ingest::RtmpIngestInfo,
    )),
    modifiers(&BearerAuth),
    tags((name = "accounts"), (name = "rooms"), (name = "interaction"), (name = "moderation"), (name = "admin"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}
