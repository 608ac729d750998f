//! Users: accounts, profiles, roles and bans.

use super::{Store, StoreError, conflict_or, decode_tags, encode_tags, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watches, chats, sends gifts.
    Viewer,
    /// May create rooms and go live.
    Host,
    /// Manages users and rooms.
    Admin,
}

impl Role {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Host => "host",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "viewer" => Some(Role::Viewer),
            "host" => Some(Role::Host),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A stored user (never serialized directly: the API has its own views).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Identity.
    pub id: i64,
    /// Login name as typed at registration.
    pub username: Option<String>,
    /// Phone number (login alternative).
    pub phone: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Display name.
    pub nickname: String,
    /// Avatar image URL.
    pub avatar_url: Option<String>,
    /// Gender as the user states it.
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
    /// Education level (`high_school`, `college`, `bachelor`, `master`, `doctorate`).
    pub education: Option<String>,
    /// Partner preferences (择偶条件).
    pub partner_preferences: Option<String>,
    /// Profile photos: upload URLs, at most 9.
    pub photos: Vec<String>,
    /// When the user was banned, if they are.
    pub banned_at: Option<i64>,
    /// Why.
    pub ban_reason: Option<String>,
    /// Bumped on ban or password change: older tokens stop working.
    pub token_version: i64,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
}

impl User {
    /// A plain viewer account with every other field empty (unit tests).
    #[cfg(test)]
    pub(crate) fn for_tests() -> User {
        User {
            id: 0,
            username: None,
            phone: None,
            password_hash: String::new(),
            role: Role::Viewer,
            nickname: String::new(),
            avatar_url: None,
            gender: None,
            birth_year: None,
            city: None,
            bio: None,
            tags: Vec::new(),
            height_cm: None,
            education: None,
            partner_preferences: None,
            photos: Vec::new(),
            banned_at: None,
            ban_reason: None,
            token_version: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Whether the user is banned.
    pub fn is_banned(&self) -> bool {
        self.banned_at.is_some()
    }
}

/// Fields of a new account (already validated).
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Login name.
    pub username: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Option<Role>,
    /// Display name.
    pub nickname: String,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Gender.
    pub gender: Option<String>,
    /// Birth year.
    pub birth_year: Option<i64>,
    /// City.
    pub city: Option<String>,
    /// Self-introduction.
    pub bio: Option<String>,
    /// Interest tags.
    pub tags: Vec<String>,
}

/// A profile change: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    /// Display name.
    pub nickname: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<Option<String>>,
    /// Gender.
    pub gender: Option<Option<String>>,
    /// Birth year.
    pub birth_year: Option<Option<i64>>,
    /// City.
    pub city: Option<Option<String>>,
    /// Self-introduction.
    pub bio: Option<Option<String>>,
    /// Interest tags.
    pub tags: Option<Vec<String>>,
    /// Height in centimetres.
    pub height_cm: Option<Option<i64>>,
    /// Education level.
    pub education: Option<Option<String>>,
    /// Partner preferences.
    pub partner_preferences: Option<Option<String>>,
    /// Profile photos (`Some(vec![])` clears).
    pub photos: Option<Vec<String>>,
}

const USER_COLUMNS: &str = "id, username, phone, password_hash, role, nickname, avatar_url, gender, birth_year, city, bio, tags, height_cm, education, partner_preferences, photos, banned_at, ban_reason, token_version, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    let tags: String = row.try_get("tags")?;
    let photos: String = row.try_get("photos")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        phone: row.try_get("phone")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        nickname: row.try_get("nickname")?,
        avatar_url: row.try_get("avatar_url")?,
        gender: row.try_get("gender")?,
        birth_year: row.try_get("birth_year")?,
        city: row.try_get("city")?,
        bio: row.try_get("bio")?,
        tags: decode_tags(&tags)?,
        height_cm: row.try_get("height_cm")?,
        education: row.try_get("education")?,
        partner_preferences: row.try_get("partner_preferences")?,
        photos: decode_tags(&photos)?,
        banned_at: row.try_get("banned_at")?,
        ban_reason: row.try_get("ban_reason")?,
        token_version: row.try_get("token_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Creates an account. A taken username or phone is a [`StoreError::Conflict`].
    pub async fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO users (username, username_key, phone, password_hash, role, nickname, avatar_url, gender, birth_year, city, bio, tags, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&self.sql(&sql))
            .bind(new.username.clone())
            .bind(new.username.as_ref().map(|u| u.to_lowercase()))
            .bind(new.phone.clone())
            .bind(new.password_hash.clone())
            .bind(new.role.unwrap_or(Role::Viewer).as_str())
            .bind(new.nickname.clone())
            .bind(new.avatar_url.clone())
            .bind(new.gender.clone())
            .bind(new.birth_year)
            .bind(new.city.clone())
            .bind(new.bio.clone())
            .bind(encode_tags(&new.tags))
            .bind(now)
            .fetch_one(self.pool())
            .await
            .map_err(|e| conflict_or(e, "username or phone is taken"))?;
        user_from_row(&row)
    }

    /// A user by id.
    pub async fn user(&self, id: i64) -> Result<User, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&self.sql(&sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    /// A user by login: the username (case-insensitive) or the phone number.
    pub async fn user_by_login(&self, login: &str) -> Result<User, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = $1 OR phone = $2");
        let row = sqlx::query(&self.sql(&sql))
            .bind(login.to_lowercase())
            .bind(login.to_owned())
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    /// Users, newest first.
    pub async fn list_users(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<User>, i64), StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id DESC LIMIT $1 OFFSET $2");
        let rows = sqlx::query(&self.sql(&sql))
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await?;
        let total: i64 = sqlx::query(&self.sql("SELECT COUNT(*) AS n FROM users"))
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        Ok((
            rows.iter().map(user_from_row).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// Applies a profile change and returns the updated user.
    pub async fn update_profile(
        &self,
        id: i64,
        change: &ProfileUpdate,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&self.sql(&sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut user = user_from_row(&row)?;
        if let Some(v) = &change.nickname {
            user.nickname = v.clone();
        }
        if let Some(v) = &change.avatar_url {
            user.avatar_url = v.clone();
        }
        if let Some(v) = &change.gender {
            user.gender = v.clone();
        }
        if let Some(v) = change.birth_year {
            user.birth_year = v;
        }
        if let Some(v) = &change.city {
            user.city = v.clone();
        }
        if let Some(v) = &change.bio {
            user.bio = v.clone();
        }
        if let Some(v) = &change.tags {
            user.tags = v.clone();
        }
        if let Some(v) = change.height_cm {
            user.height_cm = v;
        }
        if let Some(v) = &change.education {
            user.education = v.clone();
        }
        if let Some(v) = &change.partner_preferences {
            user.partner_preferences = v.clone();
        }
        if let Some(v) = &change.photos {
            user.photos = v.clone();
        }
        user.updated_at = now_ms();
        sqlx::query(&self.sql(
            "UPDATE users SET nickname = $1, avatar_url = $2, gender = $3, birth_year = $4, city = $5, bio = $6, tags = $7, updated_at = $8, \
             height_cm = $10, education = $11, partner_preferences = $12, photos = $13 WHERE id = $9",
        ))
        .bind(user.nickname.clone())
        .bind(user.avatar_url.clone())
        .bind(user.gender.clone())
        .bind(user.birth_year)
        .bind(user.city.clone())
        .bind(user.bio.clone())
        .bind(encode_tags(&user.tags))
        .bind(user.updated_at)
        .bind(id)
        .bind(user.height_cm)
        .bind(user.education.clone())
        .bind(user.partner_preferences.clone())
        .bind(encode_tags(&user.photos))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Changes a user's role.
    pub async fn set_role(&self, id: i64, role: Role) -> Result<User, StoreError> {
        let done =
            sqlx::query(&self.sql("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3"))
                .bind(role.as_str())
                .bind(now_ms())
                .bind(id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.user(id).await
    }

    /// Bans (`Some(reason)`) or unbans (`None`) a user. A ban also revokes their tokens.
    pub async fn set_ban(&self, id: i64, reason: Option<&str>) -> Result<User, StoreError> {
        let now = now_ms();
        let done = match reason {
            Some(reason) => sqlx::query(&self.sql(
                "UPDATE users SET banned_at = $1, ban_reason = $2, token_version = token_version + 1, updated_at = $1 WHERE id = $3",
            ))
            .bind(now)
            .bind(reason.to_owned())
            .bind(id)
            .execute(self.pool())
            .await?,
            None => sqlx::query(&self.sql("UPDATE users SET banned_at = NULL, ban_reason = NULL, updated_at = $1 WHERE id = $2"))
                .bind(now)
                .bind(id)
                .execute(self.pool())
                .await?,
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.user(id).await
    }

    /// Bans `id` unless that would leave no active (unbanned) admin. `Ok(None)` when
    /// refused for that reason. Two admins banning each other at once cannot both
    /// succeed: the check and the ban are one statement, which SQLite runs alone, and on
    /// PostgreSQL the transaction first locks every active admin's row (in id order, so
    /// two bans cannot deadlock) — the second ban waits, then its statement's fresh
    /// snapshot sees the first.
    pub async fn ban_keeping_an_admin(
        &self,
        id: i64,
        reason: &str,
    ) -> Result<Option<User>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        if self.backend() == super::Backend::Postgres {
            sqlx::query(
                "SELECT id FROM users WHERE role = $1 AND banned_at IS NULL ORDER BY id FOR UPDATE",
            )
            .bind(Role::Admin.as_str())
            .fetch_all(&mut *tx)
            .await?;
        }
        let done = sqlx::query(&self.sql(
            "UPDATE users SET banned_at = $1, ban_reason = $2, token_version = token_version + 1, updated_at = $1 \
             WHERE id = $3 AND (role <> $4 OR banned_at IS NOT NULL OR \
               (SELECT COUNT(*) FROM users WHERE role = $4 AND banned_at IS NULL AND id <> $3) > 0)",
        ))
        .bind(now)
        .bind(reason.to_owned())
        .bind(id)
        .bind(Role::Admin.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            // Either no such user (the caller checked) or the last active admin.
            self.user(id).await?;
            return Ok(None);
        }
        self.user(id).await.map(Some)
    }

    /// How many admin accounts are not banned.
    pub async fn active_admins(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT COUNT(*) AS n FROM users WHERE role = $1 AND banned_at IS NULL"),
        )
        .bind(Role::Admin.as_str())
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Replaces the password hash and revokes older tokens.
    pub async fn set_password(&self, id: i64, password_hash: &str) -> Result<(), StoreError> {
        let done = sqlx::query(&self.sql(
            "UPDATE users SET password_hash = $1, token_version = token_version + 1, updated_at = $2 WHERE id = $3",
        ))
        .bind(password_hash.to_owned())
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
