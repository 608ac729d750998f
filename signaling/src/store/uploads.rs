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
}
