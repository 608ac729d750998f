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
    let min_free = shared.config.recordings_min_free_bytes;
    let root = shared.config.recordings_dir();
    tokio::spawn(async move {
        let opened = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                refuse_when_disk_full(&root, min_free)?;
                DirectorySink::new(dir)
            })
            .await
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

/// Refuses a new recording while the disk holding `root` has less than `min_free` bytes
/// free (a full disk must not also starve the database).
fn refuse_when_disk_full(root: &Path, min_free: u64) -> std::io::Result<()> {
    if min_free == 0 {
        return Ok(());
    }
    std::fs::create_dir_all(root)?;
    let free = free_bytes(root)?;
    if free < min_free {
        tracing::warn!(free, min_free, dir = %root.display(), "disk almost full: new recording refused");
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("disk almost full ({free} bytes free, {min_free} required)"),
        ));
    }
    Ok(())
}

/// Bytes available to this process on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: statvfs(3) with a NUL-terminated path and a zeroed out-struct it fills.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ between platforms (u32 on some 32-bit targets).
    #[allow(clippy::unnecessary_cast)]
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    Ok(free)
}

/// What [`finalize_unfinished`] found in a recording's playlist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecoveredRecording {
    /// Sum of the segments' durations.
    pub duration_secs: f64,
    /// Segments listed.
    pub segments: u64,
    /// Whether the playlist had to be ended now (it lacked `EXT-X-ENDLIST`).
    pub ended_now: bool,
}

/// Ends the playlist of a recording that a crash left open: `EXT-X-PLAYLIST-TYPE:VOD`
/// and `EXT-X-ENDLIST`, written to a temporary file and renamed (a second crash leaves
/// either the old or the new playlist). Segments are written before the playlist names
/// them, so every listed segment is complete. `Ok(None)` when there is no playlist.
pub fn finalize_unfinished(dir: &Path) -> std::io::Result<Option<RecoveredRecording>> {
    let path = dir.join(RECORDING_PLAYLIST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let (fixed, recovered) = end_playlist(&text);
    if recovered.ended_now {
        let tmp = dir.join(format!(".{RECORDING_PLAYLIST}.tmp"));
        std::fs::write(&tmp, fixed)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(Some(recovered))
}

/// The ended playlist text and what it holds (pure; see [`finalize_unfinished`]).
fn end_playlist(text: &str) -> (String, RecoveredRecording) {
    let mut duration_secs = 0.0;
    let mut segments = 0;
    let mut ended = false;
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let seconds = rest.split(',').next().unwrap_or("0").trim();
            duration_secs += seconds.parse::<f64>().unwrap_or(0.0);
        } else if !line.is_empty() && !line.starts_with('#') {
            segments += 1;
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        }
        if line == "#EXT-X-PLAYLIST-TYPE:EVENT" {
            out.push_str("#EXT-X-PLAYLIST-TYPE:VOD");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    (
        out,
        RecoveredRecording {
            duration_secs,
            segments,
            ended_now: !ended,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crashed_playlist_is_ended_with_its_real_duration() {
        let live = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXTINF:2.000,\n000000.ts\n#EXTINF:1.500,\n000001.ts\n";
        let (fixed, recovered) = end_playlist(live);
        assert_eq!(recovered.segments, 2);
        assert!((recovered.duration_secs - 3.5).abs() < 1e-9);
        assert!(recovered.ended_now);
        assert!(fixed.ends_with("000001.ts\n#EXT-X-ENDLIST\n"));
        assert!(fixed.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        let (again, second) = end_playlist(&fixed);
        assert!(!second.ended_now, "an ended playlist is left alone");
        assert_eq!(again, fixed);
    }

    #[test]
    fn recording_ids_are_path_safe() {
        assert!(valid_recording_id("1764000000000-1"));
        assert!(!valid_recording_id(""));
        assert!(!valid_recording_id("../x"));
        assert!(!valid_recording_id("-1"));
        assert!(!valid_recording_id("1/2"));
    }
}
