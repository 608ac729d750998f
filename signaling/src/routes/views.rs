//! The JSON shapes the API returns (stored rows are never serialized directly).

use crate::store::{Role, Room, User, Visibility};
use serde::Serialize;

/// A user as they see themselves (or as an admin sees them).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Identity.
    pub id: i64,
    /// Login name.
    pub username: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Role.
    pub role: Role,
    /// Display name.
    pub nickname: String,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// female, male or other.
    pub gender: Option<String>,
    /// Birth year.
    pub birth_year: Option<i64>,
    /// City.
    pub city: Option<String>,
    /// Self-introduction.
    pub bio: Option<String>,
    /// Interest tags.
    pub tags: Vec<String>,
    /// Height in centimetres.
    pub height_cm: Option<i64>,
    /// Education level.
    pub education: Option<String>,
    /// Partner preferences (择偶条件).
    pub partner_preferences: Option<String>,
    /// Profile photos (upload URLs).
    pub photos: Vec<String>,
    /// Whether the account is banned.
    pub banned: bool,
    /// Ban reason, if banned.
    pub ban_reason: Option<String>,
    /// Created at (ms).
    pub created_at: i64,
}

impl From<&User> for AccountView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            phone: u.phone.clone(),
            role: u.role,
            nickname: u.nickname.clone(),
            avatar_url: u.avatar_url.clone(),
            gender: u.gender.clone(),
            birth_year: u.birth_year,
            city: u.city.clone(),
            bio: u.bio.clone(),
            tags: u.tags.clone(),
            height_cm: u.height_cm,
            education: u.education.clone(),
            partner_preferences: u.partner_preferences.clone(),
            photos: u.photos.clone(),
            banned: u.is_banned(),
            ban_reason: u.ban_reason.clone(),
            created_at: u.created_at,
        }
    }
}

/// A user's public profile (资料卡: what others see on a dating platform).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    /// Identity.
    pub id: i64,
    /// Display name.
    pub nickname: String,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// female, male or other.
    pub gender: Option<String>,
    /// Birth year.
    pub birth_year: Option<i64>,
    /// Age this calendar year (from the birth year).
    pub age: Option<i64>,
    /// City.
    pub city: Option<String>,
    /// Height in centimetres.
    pub height_cm: Option<i64>,
    /// Education level.
    pub education: Option<String>,
    /// Self-introduction.
    pub bio: Option<String>,
    /// Partner preferences (择偶条件).
    pub partner_preferences: Option<String>,
    /// Profile photos (upload URLs).
    pub photos: Vec<String>,
    /// Interest tags.
    pub tags: Vec<String>,
    /// Role (hosts are marked in the UI).
    pub role: Role,
    /// How many follow this user.
    pub followers: i64,
    /// Whether the caller follows this user (only for a logged-in caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub following: Option<bool>,
    /// The public room this user is live in now, if any.
    pub live_room_id: Option<String>,
}

impl ProfileView {
    /// The profile of `u`, with the follow facts and live room gathered by the caller.
    pub fn new(
        u: &User,
        current_year: i64,
        followers: i64,
        following: Option<bool>,
        live_room_id: Option<String>,
    ) -> Self {
        Self {
            id: u.id,
            nickname: u.nickname.clone(),
            avatar_url: u.avatar_url.clone(),
            gender: u.gender.clone(),
            birth_year: u.birth_year,
            age: u.birth_year.map(|y| current_year - y),
            city: u.city.clone(),
            height_cm: u.height_cm,
            education: u.education.clone(),
            bio: u.bio.clone(),
            partner_preferences: u.partner_preferences.clone(),
            photos: u.photos.clone(),
            tags: u.tags.clone(),
            role: u.role,
            followers,
            following,
            live_room_id,
        }
    }
}

/// The host shown on a room card.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostView {
    /// Identity.
    pub id: i64,
    /// Display name.
    pub nickname: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
}

/// A room card / room page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoomView {
    /// Unique, URL-safe id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Cover image URL.
    pub cover_url: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// City.
    pub city: Option<String>,
    /// Scheduled start (ms).
    pub scheduled_start: Option<i64>,
    /// public or private.
    pub visibility: Visibility,
    /// A publisher is on air.
    pub live: bool,
    /// Current WebRTC viewers.
    pub viewers: i64,
    /// The host (absent for standalone-token rooms).
    pub host: Option<HostView>,
    /// Closed by its host.
    pub closed: bool,
    /// Created at (ms).
    pub created_at: i64,
}

impl From<&Room> for RoomView {
    fn from(r: &Room) -> Self {
        Self {
            id: r.id.clone(),
            title: r.title.clone(),
            cover_url: r.cover_url.clone(),
            tags: r.tags.clone(),
            city: r.city.clone(),
            scheduled_start: r.scheduled_start,
            visibility: r.visibility,
            live: r.live,
            viewers: r.viewers,
            host: r.host_id.map(|id| HostView {
                id,
                nickname: r.host_nickname.clone(),
                avatar_url: r.host_avatar_url.clone(),
            }),
            closed: r.closed,
            created_at: r.created_at,
        }
    }
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Paged<T> {
    /// The items.
    pub items: Vec<T>,
    /// 1-based page number.
    pub page: i64,
    /// Items per page.
    pub per_page: i64,
    /// Items in all pages.
    pub total: i64,
}

/// Paging query parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// 1-based page (default 1).
    pub page: Option<i64>,
    /// Items per page, 1–100 (default 20).
    pub per_page: Option<i64>,
}

impl PageQuery {
    /// `(page, per_page, limit, offset)`, clamped.
    pub fn resolve(&self) -> (i64, i64) {
        let page = self.page.unwrap_or(1).clamp(1, 1_000_000);
        let per_page = self.per_page.unwrap_or(20).clamp(1, 100);
        (page, per_page)
    }
}
