//! Live HLS over MPEG-TS, and VOD recordings of the same segments.
//!
//! [`HlsMuxer`] = [`TsMuxer`] + a sliding-window segment store serving
//! `index.m3u8` and `seg{N}.ts`: `EXT-X-MEDIA-SEQUENCE` counts segments dropped from the
//! window, `EXT-X-DISCONTINUITY` (and `EXT-X-DISCONTINUITY-SEQUENCE`) marks resolution
//! changes and publisher reconnects, and every segment carries
//! `EXT-X-PROGRAM-DATE-TIME`. The playlist text is rendered once per segment and shared.
//!
//! [`HlsRecorder`] keeps the segments of a live session as a VOD playlist on disk
//! (through a [`RecordingSink`]; [`DirectorySink`] writes files with `std::fs`), ending
//! with `EXT-X-ENDLIST` when the show ends.

use crate::error::BridgeError;
use crate::media_unit::{MediaUnit, Tracks};
use crate::ts::{TsConfig, TsMuxer, TsSegment, segment_seconds};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Live HLS settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    /// Segmenting.
    pub ts: TsConfig,
    /// Segments listed in the live playlist.
    pub window: usize,
    /// Segments kept servable after they leave the playlist (for slow clients).
    pub retain_after_window: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            ts: TsConfig::default(),
            window: 6,
            retain_after_window: 3,
        }
    }
}

/// One segment of the live playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSegment {
    /// Media sequence number (the `N` of `seg{N}.ts`).
    pub sequence: u64,
    /// The segment as muxed.
    pub ts: TsSegment,
}

impl HlsSegment {
    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        segment_seconds(self.ts.duration)
    }

    /// The URI used in the live playlist.
    pub fn uri(&self) -> String {
        format!("seg{}.ts", self.sequence)
    }
}

/// Formats a wall-clock time as ISO 8601 / RFC 3339 UTC with milliseconds
/// (`2025-01-02T03:04:05.678Z`), as `EXT-X-PROGRAM-DATE-TIME` wants.
pub fn format_program_date_time(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs() as i64;
    let millis = since_epoch.subsec_millis();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The sliding-window live playlist and its segments.
#[derive(Debug)]
pub struct LivePlaylist {
    window: usize,
    retain: usize,
    segments: VecDeque<Arc<HlsSegment>>,
    next_sequence: u64,
    /// Discontinuities that left the window (`EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuity_sequence: u64,
    target_duration: u64,
    ended: bool,
    text: Bytes,
    version: u64,
}

impl LivePlaylist {
    /// An empty playlist announcing `EXT-X-TARGETDURATION` of at least
    /// `target_duration_secs` (rounded up; raised if a longer segment ever arrives).
    pub fn new(window: usize, retain_after_window: usize, target_duration_secs: f64) -> Self {
        let mut playlist = LivePlaylist {
            window: window.max(1),
            retain: retain_after_window,
            segments: VecDeque::new(),
            next_sequence: 0,
            discontinuity_sequence: 0,
            target_duration: target_duration_secs.ceil().max(1.0) as u64,
            ended: false,
            text: Bytes::new(),
            version: 0,
        };
        playlist.render();
        playlist
    }

    /// Adds a finished segment; returns it with its sequence number.
    pub fn push(&mut self, segment: TsSegment) -> Arc<HlsSegment> {
        let segment = Arc::new(HlsSegment {
            sequence: self.next_sequence,
            ts: segment,
        });
        self.next_sequence += 1;
        // EXTINF rounded to the nearest integer must not exceed the target duration.
        let rounded = segment.duration_secs().round() as u64;
        self.target_duration = self.target_duration.max(rounded);
        self.segments.push_back(Arc::clone(&segment));
        while self.segments.len() > self.window + self.retain {
            self.segments.pop_front();
        }
        self.render();
        segment
    }

    /// Marks the stream ended (`EXT-X-ENDLIST`).
    pub fn end(&mut self) {
        self.ended = true;
        self.render();
    }

    /// The playlist text (shared).
    pub fn text(&self) -> Bytes {
        self.text.clone()
    }

    /// Increases every time the playlist changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Segments listed in the playlist, oldest first.
    pub fn listed(&self) -> impl Iterator<Item = &Arc<HlsSegment>> {
        let skip = self.segments.len().saturating_sub(self.window);
        self.segments.iter().skip(skip)
    }

    /// A segment by sequence number, if still retained.
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let first = self.segments.front()?.sequence;
        let index = usize::try_from(sequence.checked_sub(first)?).ok()?;
        self.segments.get(index).map(|s| s.ts.data.clone())
    }

    fn render(&mut self) {
        // Discontinuities before the first listed segment count into the sequence.
        let skip = self.segments.len().saturating_sub(self.window);
        let dropped_discontinuities = self
            .segments
            .iter()
            .take(skip)
            .filter(|s| s.ts.discontinuity)
            .count() as u64;
        let listed: Vec<&Arc<HlsSegment>> = self.segments.iter().skip(skip).collect();
        let media_sequence = listed.first().map_or(self.next_sequence, |s| s.sequence);
        let mut text = String::with_capacity(256 + 96 * listed.len());
        text.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(text, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        let _ = writeln!(text, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
        let discontinuity_sequence = self.discontinuity_sequence + dropped_discontinuities;
        if discontinuity_sequence > 0 {
            let _ = writeln!(
                text,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}"
            );
        }
        for (i, segment) in listed.iter().enumerate() {
            if segment.ts.discontinuity && i > 0 {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                text,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_program_date_time(segment.ts.program_date_time)
            );
            let _ = writeln!(
                text,
                "#EXTINF:{:.3},\n{}",
                segment.duration_secs(),
                segment.uri()
            );
        }
        if self.ended {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        self.text = Bytes::from(text);
        self.version += 1;
    }
}

/// Live HLS (MPEG-TS) for one room: segmenter + playlist.
#[derive(Debug)]
pub struct HlsMuxer {
    ts: TsMuxer,
    playlist: LivePlaylist,
}

impl HlsMuxer {
    /// A muxer for `tracks`. The playlist announces `EXT-X-TARGETDURATION` of 1.5 × the
    /// segment target from the start (3 s for 2 s segments): a segment ends at the first
    /// IDR after the target, and the keyframe asked for may take up to a second to come
    /// (PLIs are coalesced), so the target duration should not have to be raised mid-stream
    /// (RFC 8216 §4.3.3.1 says it must not change).
    pub fn new(tracks: Tracks, config: HlsConfig) -> Self {
        let target = config.ts.target_segment_duration.as_secs_f64() * 1.5;
        HlsMuxer {
            ts: TsMuxer::new(tracks, config.ts),
            playlist: LivePlaylist::new(config.window, config.retain_after_window, target),
        }
    }

    /// Adds a unit; returns the segment it completed (hand it to an [`HlsRecorder`]).
    pub fn write(&mut self, unit: &MediaUnit) -> Option<Arc<HlsSegment>> {
        let segment = self.ts.write(unit)?;
        Some(self.playlist.push(segment))
    }

    /// End of stream: closes the last segment and ends the playlist.
    pub fn finish(&mut self) -> Option<Arc<HlsSegment>> {
        let last = self.ts.finish().map(|segment| self.playlist.push(segment));
        self.playlist.end();
        last
    }

    /// `index.m3u8` (shared bytes).
    pub fn playlist(&self) -> Bytes {
        self.playlist.text()
    }

    /// Changes whenever the playlist changes.
    pub fn version(&self) -> u64 {
        self.playlist.version()
    }

    /// `seg{sequence}.ts`, while retained.
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        self.playlist.segment(sequence)
    }

    /// Whether to ask the publisher for a keyframe now (segment nearly full).
    pub fn keyframe_wanted(&self) -> bool {
        self.ts.keyframe_wanted()
    }

    /// The segmenter (stats, config).
    pub fn ts(&self) -> &TsMuxer {
        &self.ts
    }

    /// The playlist store.
    pub fn live_playlist(&self) -> &LivePlaylist {
        &self.playlist
    }
}

/// Where a recording's files go. Names are plain file names (`000001.ts`,
/// `index.m3u8`); a sink must replace an existing file of the same name.
pub trait RecordingSink {
    /// Writes (or replaces) a whole file.
    fn write_file(&mut self, name: &str, data: &[u8]) -> std::io::Result<()>;
}

/// Writes recordings into a local directory (created if missing). Files are written to
/// a temporary name and renamed, so a reader never sees half a playlist.
#[derive(Debug, Clone)]
pub struct DirectorySink {
    dir: PathBuf,
}

impl DirectorySink {
    /// A sink writing under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(DirectorySink { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl RecordingSink for DirectorySink {
    fn write_file(&mut self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, &path)
    }
}

#[derive(Debug, Clone)]
struct RecordedSegment {
    name: String,
    duration_secs: f64,
    discontinuity: bool,
    program_date_time: SystemTime,
}

/// A VOD recording of a live session: every segment as a file and `index.m3u8`
/// (`EXT-X-PLAYLIST-TYPE:EVENT` while live, `VOD` + `EXT-X-ENDLIST` once finished).
#[derive(Debug)]
pub struct HlsRecorder<S: RecordingSink> {
    sink: S,
    segments: Vec<RecordedSegment>,
    target_duration: u64,
    finished: bool,
}

/// The recording's playlist file name.
pub const RECORDING_PLAYLIST: &str = "index.m3u8";

impl<S: RecordingSink> HlsRecorder<S> {
    /// A recording into `sink`.
    pub fn new(sink: S) -> Self {
        HlsRecorder {
            sink,
            segments: Vec::new(),
            target_duration: 1,
            finished: false,
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Segments recorded so far.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Writes a segment and the updated playlist.
    pub fn add_segment(&mut self, segment: &TsSegment) -> Result<(), BridgeError> {
        if self.finished {
            return Err(BridgeError::RecordingFinished);
        }
        let name = format!("{:06}.ts", self.segments.len());
        self.sink.write_file(&name, &segment.data)?;
        let duration_secs = segment_seconds(segment.duration);
        self.target_duration = self
            .target_duration
            .max(duration_secs.round().max(1.0) as u64);
        self.segments.push(RecordedSegment {
            name,
            duration_secs,
            discontinuity: segment.discontinuity,
            program_date_time: segment.program_date_time,
        });
        self.write_playlist()
    }

    /// Ends the recording (`EXT-X-ENDLIST`). Idempotent.
    pub fn finish(&mut self) -> Result<(), BridgeError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.write_playlist()
    }

    fn write_playlist(&mut self) -> Result<(), BridgeError> {
        let mut text = String::with_capacity(128 + 80 * self.segments.len());
        text.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(text, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        text.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
        let _ = writeln!(
            text,
            "#EXT-X-PLAYLIST-TYPE:{}",
            if self.finished { "VOD" } else { "EVENT" }
        );
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.discontinuity && i > 0 {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                text,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_program_date_time(segment.program_date_time)
            );
            let _ = writeln!(
                text,
                "#EXTINF:{:.3},\n{}",
                segment.duration_secs, segment.name
            );
        }
        if self.finished {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        self.sink.write_file(RECORDING_PLAYLIST, text.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tests::{audio, video};
    use crate::media_unit::AacConfig;
    use crate::media_unit::test_support::{params_320, params_640};
    use m3u8_rs::{MediaPlaylist, Playlist};
    use std::time::Duration;

    fn parse(text: &[u8]) -> MediaPlaylist {
        match m3u8_rs::parse_playlist_res(text) {
            Ok(Playlist::MediaPlaylist(playlist)) => playlist,
            other => panic!(
                "not a media playlist: {other:?}\n{}",
                String::from_utf8_lossy(text)
            ),
        }
    }

    fn segment(start: i64, duration: i64, discontinuity: bool) -> TsSegment {
        TsSegment {
            data: Bytes::from(vec![0x47; 188]),
            start_pts: start,
            duration,
            discontinuity,
            independent: true,
            program_date_time: SystemTime::UNIX_EPOCH
                + Duration::from_secs(1_700_000_000)
                + Duration::from_millis(start as u64 / 90),
        }
    }

    #[test]
    fn formats_program_date_time() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_program_date_time(time), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            format_program_date_time(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_program_date_time(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn sliding_window_with_discontinuity_sequence() {
        let mut playlist = LivePlaylist::new(3, 1, 2.0);
        let empty = parse(&playlist.text());
        assert!(empty.segments.is_empty());
        for i in 0..6 {
            playlist.push(segment(i * 180_000, 180_000, i == 2));
        }
        let parsed = parse(&playlist.text());
        assert_eq!(parsed.target_duration, 2);
        assert_eq!(parsed.media_sequence, 3);
        assert_eq!(
            parsed.discontinuity_sequence, 1,
            "the discontinuity of seg2 left the window"
        );
        let uris: Vec<_> = parsed.segments.iter().map(|s| s.uri.clone()).collect();
        assert_eq!(uris, ["seg3.ts", "seg4.ts", "seg5.ts"]);
        assert!(
            parsed
                .segments
                .iter()
                .all(|s| (s.duration - 2.0).abs() < 1e-6)
        );
        assert!(
            parsed
                .segments
                .iter()
                .all(|s| s.program_date_time.is_some())
        );
        assert!(!parsed.end_list);
        // seg2 is retained (one after the window), seg1 is gone.
        assert!(playlist.segment(2).is_some());
        assert!(playlist.segment(1).is_none());
        assert!(playlist.segment(6).is_none());
        let version = playlist.version();
        playlist.end();
        assert!(parse(&playlist.text()).end_list);
        assert!(playlist.version() > version);
    }

    #[test]
    fn muxer_playlist_marks_resolution_change() {
        let aac = Arc::new(AacConfig::lc(48_000, 2).unwrap());
        let mut muxer = HlsMuxer::new(
            Tracks {
                video: true,
                audio: Some(Arc::clone(&aac)),
            },
            HlsConfig::default(),
        );
        let (big, small) = (params_640(), params_320());
        let mut completed = Vec::new();
        for i in 0..180i64 {
            let params = if i < 90 { &big } else { &small };
            let mut unit = video(i * 3000, i % 30 == 0, params);
            if let MediaUnit::Video(au) = &mut unit {
                au.discontinuity = i == 90;
            }
            completed.extend(muxer.write(&unit));
            completed.extend(muxer.write(&audio(i * 3000, &aac)));
        }
        completed.extend(muxer.finish());
        let parsed = parse(&muxer.playlist());
        assert!(parsed.end_list);
        let flags: Vec<_> = parsed.segments.iter().map(|s| s.discontinuity).collect();
        // Segments: [0,2s) [2,3s) cut early by the change, [3,5s) [5,6s).
        assert_eq!(flags, [false, false, true, false]);
        assert!((parsed.segments[1].duration - 1.0).abs() < 1e-6);
        assert!(muxer.segment(completed[2].sequence).is_some());
        assert!(
            parsed
                .segments
                .iter()
                .all(|s| s.duration <= parsed.target_duration as f32 + 0.5)
        );
    }

    #[derive(Default)]
    struct MemorySink(std::collections::BTreeMap<String, Vec<u8>>);
    impl RecordingSink for MemorySink {
        fn write_file(&mut self, name: &str, data: &[u8]) -> std::io::Result<()> {
            self.0.insert(name.to_string(), data.to_vec());
            Ok(())
        }
    }

    #[test]
    fn recorder_writes_event_then_vod_playlist() {
        let mut recorder = HlsRecorder::new(MemorySink::default());
        recorder.add_segment(&segment(0, 180_000, false)).unwrap();
        recorder
            .add_segment(&segment(180_000, 270_000, true))
            .unwrap();
        let live = parse(&recorder.sink().0[RECORDING_PLAYLIST]);
        assert_eq!(live.playlist_type, Some(m3u8_rs::MediaPlaylistType::Event));
        assert!(!live.end_list);
        recorder.finish().unwrap();
        recorder.finish().unwrap();
        let done = parse(&recorder.sink().0[RECORDING_PLAYLIST]);
        assert_eq!(done.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
        assert!(done.end_list);
        assert_eq!(done.target_duration, 3);
        assert_eq!(done.segments.len(), 2);
        assert!(done.segments[1].discontinuity);
        assert_eq!(done.segments[0].uri, "000000.ts");
        assert!(recorder.sink().0.contains_key("000001.ts"));
        assert!(matches!(
            recorder.add_segment(&segment(0, 1, false)),
            Err(BridgeError::RecordingFinished)
        ));
    }

    #[test]
    fn directory_sink_writes_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = HlsRecorder::new(DirectorySink::new(dir.path().join("rec")).unwrap());
        recorder.add_segment(&segment(0, 90_000, false)).unwrap();
        recorder.finish().unwrap();
        let text = std::fs::read(dir.path().join("rec").join(RECORDING_PLAYLIST)).unwrap();
        assert!(parse(&text).end_list);
        assert_eq!(
            std::fs::read(dir.path().join("rec/000000.ts"))
                .unwrap()
                .len(),
            188
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("rec"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
