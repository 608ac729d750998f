//! Orphan upload cleanup: an image uploaded but never used as an avatar, a profile
//! photo or a room cover (or no longer used: replaced, removed) is deleted once it is
//! older than `orphan_upload_grace_hours`, file first, then its row. Runs at start and
//! every hour, so abandoned uploads cannot fill the disk.
//!
//! [`orphans`] decides on values (sans-IO, unit-tested); [`enforce`] reads storage and
//! deletes.

use crate::store::{Store, StoreError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the cleanup runs.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);

/// The upload ids named in `text`: every `/uploads/{id}.jpg` in it (a relative URL, an
/// absolute one, or inside a JSON list of photos).
pub fn upload_ids_in(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("/uploads/").filter_map(|(at, _)| {
        let rest = &text[at..];
        let end = rest.find(".jpg")? + ".jpg".len();
        crate::validate::upload_id(&rest[..end])
    })
}

/// Which of `candidates` (ids of uploads past the grace period) no text in `references`
/// names.
pub fn orphans(candidates: &[String], references: &[String]) -> Vec<String> {
    let referenced: HashSet<&str> = references
        .iter()
        .flat_map(|text| upload_ids_in(text))
        .collect();
    candidates
        .iter()
        .filter(|id| !referenced.contains(id.as_str()))
        .cloned()
        .collect()
}

/// Deletes the orphans older than `grace`; returns how many were deleted.
pub async fn enforce(
    store: &Store,
    uploads_dir: &Path,
    grace: Duration,
) -> Result<usize, StoreError> {
    let cutoff = crate::store::now_ms() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let candidates = store.uploads_created_before(cutoff).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let references = store.upload_references().await?;
    let doomed = orphans(&candidates, &references);
    let mut deleted = 0;
    for id in doomed {
        // Ids come from our own CSPRNG, but a row is outside data: check before joining.
        if crate::validate::upload_id(&format!("/uploads/{id}.jpg")).is_some() {
            let file = uploads_dir.join(format!("{id}.jpg"));
            match tokio::fs::remove_file(&file).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(upload = %id, %err, "cannot delete an orphan upload");
                    continue;
                }
            }
        }
        store.delete_upload(&id).await?;
        deleted += 1;
        tracing::info!(upload = %id, "orphan upload deleted");
    }
    Ok(deleted)
}

/// Runs [`enforce`] now and every [`CLEANUP_INTERVAL`] until the task is aborted
/// (`grace` zero: never).
pub async fn run(store: Store, uploads_dir: PathBuf, grace: Duration) {
    if grace.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(CLEANUP_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(err) = enforce(&store, &uploads_dir, grace).await {
            tracing::warn!(%err, "orphan upload cleanup failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";
    const C: &str = "00000000000000000000000000000000";

    #[test]
    fn ids_are_found_in_relative_absolute_and_json_texts() {
        let text = format!(r#"["/uploads/{A}.jpg","https://cdn.example/uploads/{B}.jpg"]"#);
        assert_eq!(upload_ids_in(&text).collect::<Vec<_>>(), vec![A, B]);
        assert_eq!(upload_ids_in("/uploads/../etc/passwd.jpg").count(), 0);
        assert_eq!(upload_ids_in("/uploads/").count(), 0);
        assert_eq!(upload_ids_in("/uploads/x.jpg/uploads/").count(), 0);
    }

    #[test]
    fn only_unreferenced_candidates_are_orphans() {
        let candidates = vec![A.to_owned(), B.to_owned(), C.to_owned()];
        let references = vec![
            format!("/uploads/{A}.jpg"),
            format!(r#"["/uploads/{C}.jpg"]"#),
        ];
        assert_eq!(orphans(&candidates, &references), vec![B.to_owned()]);
        assert!(orphans(&[], &references).is_empty());
    }
}
