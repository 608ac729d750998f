//! Uploaded images: one row per stored file (the bytes live on disk, named by the id).

use super::{Store, StoreError, conflict_or, now_ms};
use sqlx::Row;

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Random id (the file is `uploads/{id}.jpg`).
    pub id: String,
    /// Who uploaded it.
    pub user_id: i64,
    /// `avatar`, `photo` or `cover`.
    pub kind: String,
    /// Pixel width.
    pub width: i64,
    /// Pixel height.
    pub height: i64,
    /// File size.
    pub bytes: i64,
}

impl Store {
    /// Records an upload whose file is already on disk.
    pub async fn record_upload(&self, upload: &UploadRecord) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO uploads (id, user_id, kind, width, height, bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ))
        .bind(upload.id.clone())
        .bind(upload.user_id)
        .bind(upload.kind.clone())
        .bind(upload.width)
        .bind(upload.height)
        .bind(upload.bytes)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|e| conflict_or(e, "upload id"))?;
        Ok(())
    }

    /// An upload by id.
    pub async fn upload(&self, id: &str) -> Result<UploadRecord, StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT id, user_id, kind, width, height, bytes FROM uploads WHERE id = $1"),
        )
        .bind(id.to_owned())
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(UploadRecord {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            kind: row.try_get("kind")?,
            width: row.try_get("width")?,
            height: row.try_get("height")?,
            bytes: row.try_get("bytes")?,
        })
    }

    /// Ids of uploads stored before `cutoff_ms` (candidates for orphan cleanup).
    pub async fn uploads_created_before(&self, cutoff_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT id FROM uploads WHERE created_at < $1"))
            .bind(cutoff_ms)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| row.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// Every stored text that may name an upload: avatars, profile photo lists and room
    /// covers (a referenced upload is one whose URL appears in one of them).
    pub async fn upload_references(&self) -> Result<Vec<String>, StoreError> {
        let mut texts = Vec::new();
        let users = sqlx::query(&self.sql(
            "SELECT avatar_url, photos FROM users WHERE avatar_url LIKE '%/uploads/%' OR photos <> '[]'",
        ))
        .fetch_all(self.pool())
        .await?;
        for row in &users {
            let avatar: Option<String> = row.try_get("avatar_url")?;
            texts.extend(avatar);
            texts.push(row.try_get("photos")?);
        }
        let rooms = sqlx::query(
            &self.sql("SELECT cover_url FROM rooms WHERE cover_url LIKE '%/uploads/%'"),
        )
        .fetch_all(self.pool())
        .await?;
        for row in &rooms {
            let cover: Option<String> = row.try_get("cover_url")?;
            texts.extend(cover);
        }
        Ok(texts)
    }

    /// Forgets an upload (its file is deleted first by the caller).
    pub async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM uploads WHERE id = $1"))
            .bind(id.to_owned())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
