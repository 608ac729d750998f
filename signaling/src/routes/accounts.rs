//! Registration, login, one's own profile, and user administration.

use super::views::{AccountView, PageQuery, Paged, ProfileView};
use crate::access::{not_found, require_admin};
use crate::api_json::{ApiJson, double_option};
use crate::auth::{ClientIp, CurrentUser, MaybeUser, decoy_hash, hash_password, verify_password};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{NewUser, ProfileUpdate, Role, StoreError, User};
use crate::validate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/me", get(me).patch(update_me))
        .route("/api/me/password", put(change_password))
        .route("/api/users", get(list_users))
        .route("/api/users/{id}", get(profile))
        .route("/api/users/{id}/role", put(set_role))
        .route("/api/users/{id}/ban", post(ban).delete(unban))
}

/// Registration: a username or a phone (or both), a password and a profile.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–32 letters, digits, `_ . -`, starting with a letter.
    pub username: Option<String>,
    /// 6–20 digits, optional leading `+`.
    pub phone: Option<String>,
    /// 8–128 characters.
    pub password: String,
    /// 1–32 characters.
    pub nickname: String,
    /// http(s) URL.
    pub avatar_url: Option<String>,
    /// female, male or other.
    pub gender: Option<String>,
    /// Birth year (18+).
    pub birth_year: Option<i64>,
    /// City.
    pub city: Option<String>,
    /// Self-introduction, up to 500 characters.
    pub bio: Option<String>,
    /// Up to 10 tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Login with a username or phone.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or phone number.
    pub login: String,
    /// Password.
    pub password: String,
}

/// A token and the account it belongs to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthResponse {
    /// Bearer access token.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Expiry (Unix seconds).
    pub expires_at: u64,
    /// The account.
    pub user: AccountView,
}

/// A profile change; absent fields stay, `null` clears.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// Display name.
    pub nickname: Option<String>,
    /// Avatar URL.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Option<Option<String>>,
    /// female, male or other.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub gender: Option<Option<String>>,
    /// Birth year.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub birth_year: Option<Option<i64>>,
    /// City.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
    /// Self-introduction.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub bio: Option<Option<String>>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Height in centimetres (120–230).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub height_cm: Option<Option<i64>>,
    /// high_school, college, bachelor, master or doctorate.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub education: Option<Option<String>>,
    /// Partner preferences (择偶条件), up to 300 characters.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub partner_preferences: Option<Option<String>>,
    /// Up to 9 upload URLs (`/uploads/{id}.jpg`, uploaded by you); `null` or `[]` clears.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub photos: Option<Option<Vec<String>>>,
}

/// A password change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The current password.
    pub current_password: String,
    /// The new password (8–128 characters).
    pub new_password: String,
}

/// A role change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// viewer, host or admin.
    pub role: Role,
}

/// A ban.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// Why (shown to the user).
    pub reason: String,
}

#[utoipa::path(post, path = "/api/auth/register", tag = "accounts", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(super) async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthResponse>), AppError> {
    state.limits.check_registration(ip)?;
    let username = body
        .username
        .as_deref()
        .map(validate::username)
        .transpose()?;
    let phone = body.phone.as_deref().map(validate::phone).transpose()?;
    if username.is_none() && phone.is_none() {
        return Err(AppError::invalid(
            "username",
            "a username or a phone number is required",
        ));
    }
    validate::password(&body.password)?;
    let password_work = state.limits.password_work(ip).await?;
    let password_hash = hash_password(body.password).await?;
    drop(password_work);
    let new = NewUser {
        username,
        phone,
        password_hash,
        role: None,
        nickname: validate::text("nickname", &body.nickname, 1, 32)?,
        avatar_url: validate::url("avatar_url", body.avatar_url.as_deref())?,
        gender: validate::gender(body.gender.as_deref())?,
        birth_year: validate::birth_year(body.birth_year, validate::current_year())?,
        city: validate::optional_text("city", body.city.as_deref(), 32)?,
        bio: validate::optional_text("bio", body.bio.as_deref(), 500)?,
        tags: validate::tags("tags", &body.tags)?,
    };
    let user = state.store.create_user(&new).await.map_err(|e| match e {
        StoreError::Conflict(_) => AppError::AccountTaken,
        other => other.into(),
    })?;
    tracing::info!(user = user.id, "account registered");
    Ok((StatusCode::CREATED, Json(auth_response(&state, &user)?)))
}

#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), (status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub(super) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<AuthResponse>, AppError> {
    state.login_limiter.check(ip, body.login.trim())?;
    let wrong = || AppError::WrongCredentials;
    let found = match state.store.user_by_login(body.login.trim()).await {
        Ok(user) => Some(user),
        Err(StoreError::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    // Unknown users cost the same hash check, so timing does not reveal who exists.
    let hash = found
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    let password_work = state.limits.password_work(ip).await?;
    let matches = verify_password(body.password, hash).await?;
    drop(password_work);
    match found {
        Some(user) if matches && user.is_banned() => Err(AppError::Forbidden(format!(
            "{}: {}",
            crate::access::BANNED,
            user.ban_reason.as_deref().unwrap_or("no reason given")
        ))),
        Some(user) if matches => Ok(Json(auth_response(&state, &user)?)),
        _ => Err(wrong()),
    }
}

#[utoipa::path(get, path = "/api/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = AccountView), (status = 401, body = crate::error::ErrorBody)))]
pub(super) async fn me(CurrentUser(user): CurrentUser) -> Json<AccountView> {
    Json(AccountView::from(&user))
}

#[utoipa::path(patch, path = "/api/me", tag = "accounts", security(("bearer" = [])), request_body = ProfileRequest,
    responses((status = 200, body = AccountView), (status = 422, body = crate::error::ErrorBody)))]
pub(super) async fn update_me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<ProfileRequest>,
) -> Result<Json<AccountView>, AppError> {
    let change = ProfileUpdate {
        nickname: body
            .nickname
            .as_deref()
            .map(|n| validate::text("nickname", n, 1, 32))
            .transpose()?,
        avatar_url: body
            .avatar_url
            .map(|v| validate::url("avatar_url", v.as_deref()))
            .transpose()?,
        gender: body
            .gender
            .map(|v| validate::gender(v.as_deref()))
            .transpose()?,
        birth_year: body
            .birth_year
            .map(|v| validate::birth_year(v, validate::current_year()))
            .transpose()?,
        city: body
            .city
            .map(|v| validate::optional_text("city", v.as_deref(), 32))
            .transpose()?,
        bio: body
            .bio
            .map(|v| validate::optional_text("bio", v.as_deref(), 500))
            .transpose()?,
        tags: body
            .tags
            .as_deref()
            .map(|t| validate::tags("tags", t))
            .transpose()?,
        height_cm: body.height_cm.map(validate::height_cm).transpose()?,
        education: body
            .education
            .map(|v| validate::education(v.as_deref()))
            .transpose()?,
        partner_preferences: body
            .partner_preferences
            .map(|v| validate::optional_text("partner_preferences", v.as_deref(), 300))
            .transpose()?,
        photos: match body.photos {
            None => None,
            Some(list) => Some(own_uploads(&state, user.id, &list.unwrap_or_default()).await?),
        },
    };
    let updated = state.store.update_profile(user.id, &change).await?;
    Ok(Json(AccountView::from(&updated)))
}

/// Validated photo URLs, each an upload of `user`'s.
async fn own_uploads(
    state: &AppState,
    user: i64,
    urls: &[String],
) -> Result<Vec<String>, AppError> {
    let photos = validate::photos(urls)?;
    for url in &photos {
        let id = validate::upload_id(url).expect("validate::photos only keeps upload URLs");
        match state.store.upload(id).await {
            Ok(upload) if upload.user_id == user => {}
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(AppError::invalid(
                    "photos",
                    "each photo must be one of your own uploads",
                ));
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(photos)
}

#[utoipa::path(put, path = "/api/me/password", tag = "accounts", security(("bearer" = [])), request_body = PasswordRequest,
    responses((status = 204), (status = 401, body = crate::error::ErrorBody)))]
pub(super) async fn change_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> Result<StatusCode, AppError> {
    if !verify_password(body.current_password, user.password_hash.clone()).await? {
        return Err(AppError::Unauthorized("wrong current password".into()));
    }
    validate::password(&body.new_password)
        .map_err(|_| AppError::invalid("new_password", "must be 8–128 characters"))?;
    let hash = hash_password(body.new_password).await?;
    state.store.set_password(user.id, &hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "accounts", params(("id" = i64, Path)),
    responses((status = 200, body = ProfileView), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn profile(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    MaybeUser(caller): MaybeUser,
    Path(id): Path<i64>,
) -> Result<Json<ProfileView>, AppError> {
    state.access.profile_reads.check(ip)?;
    let user = state
        .store
        .user(id)
        .await
        .map_err(|e| not_found(e, "user"))?;
    let (following, followers) = state
        .store
        .follow_status(caller.as_ref().map_or(0, |c| c.id), id)
        .await?;
    let live_room = state.store.live_room_of(id).await?;
    Ok(Json(ProfileView::new(
        &user,
        validate::current_year(),
        followers,
        caller.is_some().then_some(following),
        live_room,
    )))
}

#[utoipa::path(get, path = "/api/users", tag = "admin", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paged<AccountView>), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn list_users(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Query(paging): Query<PageQuery>,
) -> Result<Json<Paged<AccountView>>, AppError> {
    require_admin(&admin)?;
    let (page, per_page) = paging.resolve();
    let (users, total) = state
        .store
        .list_users(per_page, (page - 1) * per_page)
        .await?;
    Ok(Json(Paged {
        items: users.iter().map(AccountView::from).collect(),
        page,
        per_page,
        total,
    }))
}

#[utoipa::path(put, path = "/api/users/{id}/role", tag = "admin", security(("bearer" = [])), params(("id" = i64, Path)), request_body = RoleRequest,
    responses((status = 200, body = AccountView), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(super) async fn set_role(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<RoleRequest>,
) -> Result<Json<AccountView>, AppError> {
    require_admin(&admin)?;
    if id == admin.id && body.role != Role::Admin {
        return Err(AppError::Conflict(
            "an admin cannot demote themselves".into(),
        ));
    }
    let user = state
        .store
        .set_role(id, body.role)
        .await
        .map_err(|e| not_found(e, "user"))?;
    tracing::info!(
        admin = admin.id,
        user = id,
        role = body.role.as_str(),
        "role changed"
    );
    Ok(Json(AccountView::from(&user)))
}

#[utoipa::path(post, path = "/api/users/{id}/ban", tag = "admin", security(("bearer" = [])), params(("id" = i64, Path)), request_body = BanRequest,
    responses((status = 200, body = AccountView), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn ban(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<BanRequest>,
) -> Result<Json<AccountView>, AppError> {
    require_admin(&admin)?;
    let reason = validate::text("reason", &body.reason, 1, 200)?;
    let last_admin = || {
        AppError::Conflict(
            "the last active admin cannot be banned; make another admin first".into(),
        )
    };
    let target = state
        .store
        .user(id)
        .await
        .map_err(|e| not_found(e, "user"))?;
    if target.role == Role::Admin && !target.is_banned() && state.store.active_admins().await? <= 1
    {
        return Err(last_admin());
    }
    if id == admin.id {
        return Err(AppError::Conflict("an admin cannot ban themselves".into()));
    }
    let user = state
        .store
        .ban_keeping_an_admin(id, &reason)
        .await
        .map_err(|e| not_found(e, "user"))?
        .ok_or_else(last_admin)?;
    // A banned user cannot chat: close their room connections (their token is revoked, so
    // they come back anonymous at most).
    for peer in state.interaction.disconnect_user(id).await {
        let _ = state.sfu.close(peer).await;
    }
    // A banned user keeps no power at all: every media session of theirs ends.
    for session in state.live.sessions(Some(id)).await {
        let _ = state.sfu.close(session.peer).await;
    }
    tracing::info!(admin = admin.id, user = id, "user banned");
    Ok(Json(AccountView::from(&user)))
}

#[utoipa::path(delete, path = "/api/users/{id}/ban", tag = "admin", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = AccountView), (status = 403, body = crate::error::ErrorBody)))]
pub(super) async fn unban(
    State(state): State<AppState>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<AccountView>, AppError> {
    require_admin(&admin)?;
    let user = state
        .store
        .set_ban(id, None)
        .await
        .map_err(|e| not_found(e, "user"))?;
    Ok(Json(AccountView::from(&user)))
}

fn auth_response(state: &AppState, user: &User) -> Result<AuthResponse, AppError> {
    let (token, expires_at) = state.auth.issue(user)?;
    Ok(AuthResponse {
        token,
        token_type: "Bearer",
        expires_at,
        user: AccountView::from(user),
    })
}
