//! Recording writer: one small task per recording owns its [`HlsRecorder`] and does the
//! file I/O on tokio's blocking pool, so the room task never waits for the disk.
//!
//! Layout: `{data_dir}/recordings/{room}/{recording id}/index.m3u8` + `000000.ts` …,
//! served at `/recordings/{room}/{recording id}/…` by [`crate::http`].

use crate::hls::{DirectorySink, HlsRecorder, RECORDING_PLAYLIST};
use crate::media_unit::Tracks;
use crate::room::SharedSegment;
use crate::service::{BridgeEvent, BridgeStats, RecordingInfo, Shared, unix_ms};
use sfu::RoomId;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Segments queued for the writer before new ones are dropped (counted as errors).
const RECORDER_QUEUE: usize = 256;

enum RecorderMsg {
    Segment(SharedSegment),
    Finish { size: (u32, u32) },
}

/// The room task's end of a recording.
#[derive(Debug)]
pub(crate) struct RecorderHandle {
    tx: mpsc::Sender<RecorderMsg>,
}

impl std::fmt::Debug for RecorderMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecorderMsg::Segment(s) => write!(f, "Segment({})", s.sequence),
            RecorderMsg::Finish { .. } => f.write_str("Finish"),
        }
    }
}

impl RecorderHandle {
    /// Queues a finished segment (never waits).
    pub(crate) fn segment(&self, segment: SharedSegment, stats: &BridgeStats) {
        if self.tx.try_send(RecorderMsg::Segment(segment)).is_err() {
            BridgeStats::add(&stats.recording_errors, 1);
            tracing::warn!("recording writer is behind; a segment was not recorded");
        }
    }

    /// Ends the recording (`EXT-X-ENDLIST`); `size` is the show's largest video size.
    pub(crate) fn finish(self, size: (u32, u32)) {
        let tx = self.tx;
        // The queue may be full; finishing must not be lost, so wait off the media path.
        tokio::spawn(async move {
            let _ = tx.send(RecorderMsg::Finish { size }).await;
        });
    }
}

/// The directory of one recording.
pub fn recording_dir(recordings_root: &Path, room: &str, id: &str) -> PathBuf {
    recordings_root.join(room).join(id)
}

/// Whether a string is a valid recording id (`{digits}-{digits}`), safe in paths.
pub fn valid_recording_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 40
        && id.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Starts the writer task of a new recording and reports it.
pub(crate) fn spawn_recorder(
    shared: Arc<Shared>,
    room: &RoomId,
    id: &str,
    started: SystemTime,
    tracks: &Tracks,
) -> RecorderHandle {
    let dir = recording_dir(&shared.config.recordings_dir(), room.as_str(), id);
    let mut info = RecordingInfo {
        room: room.to_string(),
        id: id.to_owned(),
        playlist_path: format!("/recordings/{room}/{id}/{RECORDING_PLAYLIST}"),
        dir: dir.clone(),
        started_at: unix_ms(started),
        ended_at: None,
        duration_secs: 0.0,
        segments: 0,
        video: tracks.video,
        audio: tracks.audio.is_some(),
        width: 0,
        height: 0,
        error: None,
    };
    BridgeStats::add(&shared.stats.recordings_started, 1);
    BridgeStats::add(&shared.stats.recordings_active, 1);
    shared.emit(BridgeEvent::RecordingStarted(info.clone()));
    let (tx, mut rx) = mpsc::channel(RECORDER_QUEUE);
    tokio::spawn(async move {
        let opened = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || DirectorySink::new(dir)).await
        };
        let mut recorder = match opened {
            Ok(Ok(sink)) => Some(HlsRecorder::new(sink)),
            Ok(Err(err)) => {
                tracing::warn!(dir = %dir.display(), %err, "cannot create the recording directory");
                info.error = Some(err.to_string());
                BridgeStats::add(&shared.stats.recording_errors, 1);
                None
            }
            Err(err) => {
                info.error = Some(err.to_string());
                None
            }
        };
        let mut size = (0, 0);
        while let Some(msg) = rx.recv().await {
            match msg {
                RecorderMsg::Segment(segment) => {
                    let Some(current) = recorder.take() else {
                        continue;
                    };
                    let duration = segment.duration_secs();
                    let written = tokio::task::spawn_blocking(move || {
                        let mut current = current;
                        let result = current.add_segment(&segment.ts);
                        (current, result)
                    })
                    .await;
                    match written {
                        Ok((current, Ok(()))) => {
                            recorder = Some(current);
                            info.segments += 1;
                            info.duration_secs += duration;
                            BridgeStats::add(&shared.stats.recording_segments, 1);
                        }
                        Ok((current, Err(err))) => {
                            tracing::warn!(room = %info.room, id = %info.id, %err, "recording write failed");
                            BridgeStats::add(&shared.stats.recording_errors, 1);
                            info.error = Some(err.to_string());
                            recorder = Some(current);
                        }
                        Err(err) => {
                            info.error = Some(err.to_string());
                            BridgeStats::add(&shared.stats.recording_errors, 1);
                        }
                    }
                }
                RecorderMsg::Finish { size: s } => {
                    size = s;
                    break;
                }
            }
        }
        if let Some(mut current) = recorder.take() {
            let finished = tokio::task::spawn_blocking(move || current.finish()).await;
            if let Ok(Err(err)) = finished {
                BridgeStats::add(&shared.stats.recording_errors, 1);
                info.error = Some(err.to_string());
            }
        }
        info.width = size.0;
        info.height = size.1;
        info.ended_at = Some(unix_ms(SystemTime::now()));
        tracing::info!(room = %info.room, id = %info.id, segments = info.segments, duration = info.duration_secs, "recording finished");
        shared.emit(BridgeEvent::RecordingFinished(info));
        shared.recorder_exited();
    });
    RecorderHandle { tx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_ids_are_path_safe() {
        assert!(valid_recording_id("1764000000000-1"));
        assert!(!valid_recording_id(""));
        assert!(!valid_recording_id("../x"));
        assert!(!valid_recording_id("-1"));
        assert!(!valid_recording_id("1/2"));
    }
}
