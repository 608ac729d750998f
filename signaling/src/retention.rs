//! Recording retention: recordings older than `recordings_max_age_days` are deleted, then
//! the oldest ones while all of them take more than `recordings_max_total_bytes` (files
//! first, then the row). Runs at start and every few minutes.
//!
//! [`plan`] decides on values (sans-IO, unit-tested); [`enforce`] measures the
//! directories, deletes and updates the rows.

use crate::store::{Recording, Store, StoreError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the policy runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

/// The policy (0 disables a bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Recordings that started more than this many days ago are deleted.
    pub max_age_days: u64,
    /// While the recordings take more bytes than this, the oldest is deleted.
    pub max_total_bytes: u64,
}

impl RetentionPolicy {
    /// Whether any bound is set.
    pub fn is_active(&self) -> bool {
        self.max_age_days > 0 || self.max_total_bytes > 0
    }
}

/// Which recordings to delete: `recordings` are `(started_at ms, bytes)` oldest first;
/// returns their indices.
pub fn plan(recordings: &[(i64, u64)], now_ms: i64, policy: RetentionPolicy) -> Vec<usize> {
    let cutoff = (policy.max_age_days > 0)
        .then(|| now_ms - (policy.max_age_days as i64).saturating_mul(86_400_000));
    let mut total: u64 = recordings.iter().map(|(_, bytes)| bytes).sum();
    let mut doomed = Vec::new();
    for (index, &(started_at, bytes)) in recordings.iter().enumerate() {
        let too_old = cutoff.is_some_and(|cutoff| started_at < cutoff);
        let over_budget = policy.max_total_bytes > 0 && total > policy.max_total_bytes;
        if too_old || over_budget {
            doomed.push(index);
            total -= bytes;
        }
    }
    doomed
}

fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Applies the policy once; returns how many recordings were deleted.
pub async fn enforce(
    store: &Store,
    recordings_root: &Path,
    policy: RetentionPolicy,
) -> Result<usize, StoreError> {
    if !policy.is_active() {
        return Ok(0);
    }
    let recordings = store.finished_recordings().await?;
    let dirs: Vec<PathBuf> = recordings
        .iter()
        .map(|r| bridge::recording::recording_dir(recordings_root, &r.room_id, &r.id))
        .collect();
    let sizes = {
        let dirs = dirs.clone();
        tokio::task::spawn_blocking(move || dirs.iter().map(|d| directory_bytes(d)).collect())
            .await
            .unwrap_or_else(|_| vec![0; recordings.len()])
    };
    let measured: Vec<(i64, u64)> = recordings
        .iter()
        .zip(sizes)
        .map(|(r, bytes): (&Recording, u64)| (r.started_at, bytes))
        .collect();
    let doomed = plan(&measured, crate::store::now_ms(), policy);
    for &index in &doomed {
        let (recording, dir) = (&recordings[index], dirs[index].clone());
        let safe = sfu::RoomId::parse(&recording.room_id).is_some()
            && bridge::recording::valid_recording_id(&recording.id);
        if safe {
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
            if let Ok(Err(err)) = removed
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(room = %recording.room_id, id = %recording.id, %err, "cannot delete an expired recording");
                continue;
            }
        }
        store
            .delete_recording(&recording.room_id, &recording.id)
            .await?;
        tracing::info!(room = %recording.room_id, id = %recording.id, "recording deleted by the retention policy");
    }
    Ok(doomed.len())
}

/// Runs [`enforce`] now and every [`RETENTION_INTERVAL`] until the task is aborted.
pub async fn run(store: Store, recordings_root: PathBuf, policy: RetentionPolicy) {
    if !policy.is_active() {
        return;
    }
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(err) = enforce(&store, &recordings_root, policy).await {
            tracing::warn!(%err, "recording retention failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn deletes_the_too_old_then_the_oldest_over_budget() {
        let now = 100 * DAY;
        let recordings = [
            (now - 40 * DAY, 10),
            (now - 20 * DAY, 50),
            (now - 10 * DAY, 30),
            (now - DAY, 40),
        ];
        let off = RetentionPolicy {
            max_age_days: 0,
            max_total_bytes: 0,
        };
        assert!(plan(&recordings, now, off).is_empty());
        let by_age = RetentionPolicy {
            max_age_days: 30,
            max_total_bytes: 0,
        };
        assert_eq!(plan(&recordings, now, by_age), vec![0]);
        let by_size = RetentionPolicy {
            max_age_days: 0,
            max_total_bytes: 80,
        };
        // 130 bytes: dropping the oldest (10) leaves 120, the next (50) leaves 70 ≤ 80.
        assert_eq!(plan(&recordings, now, by_size), vec![0, 1]);
        let both = RetentionPolicy {
            max_age_days: 15,
            max_total_bytes: 60,
        };
        assert_eq!(plan(&recordings, now, both), vec![0, 1, 2]);
    }
}
