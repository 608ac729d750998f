//! End to end for RTMP ingest: real FLV files from ffmpeg (H.264 baseline, and main with
//! B-frames; AAC-LC at 44.1 kHz), their tags fed as `TapEvent::Native` through the
//! pipeline and every muxer the way the room task does, and the outputs read back by
//! ffprobe/ffmpeg: every frame kept, the AAC bytes passed through, B-frames intact, no
//! decode error; and a publisher switching RTMP → WHIP → RTMP with continuous outputs.
//!
//! Skipped (with a message) when ffmpeg/ffprobe are not installed.

use bridge::hls::{DirectorySink, HlsRecorder};
use bridge::{
    ClockAnchor, FlvMuxer, HlsConfig, HlsMuxer, LlHlsConfig, LlHlsMuxer, MediaUnit, PipelineConfig,
    PipelineNotice, RoomPipeline, Tracks,
};
use bytes::Bytes;
use sfu::media::{Codec, MediaKind, NativeFrame};
use sfu::tap::TapEvent;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

mod common;
use common::{Clip, ffprobe, frames, have_ffmpeg, make_clip, run, tap_events};

/// One FLV tag: type, timestamp (ms), body.
type Tag = (u8, u32, Bytes);

/// Encodes the 4 s test stream as FLV (`-profile:v main -bf 2` with B-frames).
fn make_flv(dir: &Path, name: &str, b_frames: bool) -> PathBuf {
    let path = dir.join(format!("{name}.flv"));
    let profile: &[&str] = if b_frames {
        &["-profile:v", "main", "-bf", "2"]
    } else {
        &["-profile:v", "baseline"]
    };
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=30")
        .args(["-f", "lavfi", "-i", "sine=f=440:sample_rate=44100"])
        .args(["-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .args(profile)
        .args(["-g", "60", "-c:a", "aac", "-f", "flv"])
        .arg(&path));
    path
}

/// The tags of an FLV file, read independently of the bridge.
fn flv_tags(data: &[u8]) -> Vec<Tag> {
    assert_eq!(&data[..3], b"FLV");
    let mut pos = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize + 4;
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let timestamp =
            u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let body = Bytes::copy_from_slice(&data[pos + 11..pos + 11 + size]);
        tags.push((data[pos], timestamp, body));
        pos += 15 + size;
    }
    assert_eq!(pos, data.len(), "whole file parsed");
    tags
}

/// Raw AAC frames (`AACPacketType` 1) of FLV tags.
fn aac_frames(tags: &[Tag]) -> Vec<Bytes> {
    tags.iter()
        .filter(|(kind, _, body)| *kind == 8 && body.get(1) == Some(&1))
        .map(|(_, _, body)| body.slice(2..))
        .collect()
}

struct Source {
    path: PathBuf,
    tags: Vec<Tag>,
    /// Video frames ffprobe decodes from the source file.
    video_frames: u64,
}

fn source(dir: &Path, name: &str, b_frames: bool) -> Source {
    let path = make_flv(dir, name, b_frames);
    let tags = flv_tags(&std::fs::read(&path).unwrap());
    let probe = ffprobe(&path, true);
    Source {
        video_frames: frames(probe.video()),
        tags,
        path,
    }
}

fn sources() -> &'static (tempfile::TempDir, Source, Source, Clip) {
    static SOURCES: OnceLock<(tempfile::TempDir, Source, Source, Clip)> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let baseline = source(dir.path(), "baseline", false);
        let b_frames = source(dir.path(), "bframes", true);
        let clip = make_clip(dir.path(), "webrtc", "320x240", 2);
        (dir, baseline, b_frames, clip)
    })
}

/// A native publisher session as the SFU's tap delivers it: `PublisherStarted` with the
/// codecs of its WebRTC copy, the FLV tags as they arrive (in real time), the end.
fn native_events(tags: &[Tag], epoch: u32, start: Instant) -> Vec<(Instant, TapEvent)> {
    let mut events = vec![(
        start,
        TapEvent::PublisherStarted {
            epoch,
            audio: Some(Codec::Opus),
            video: Some(Codec::H264),
        },
    )];
    let mut last = start;
    for (kind, timestamp, body) in tags {
        let kind = match kind {
            8 => MediaKind::Audio,
            9 => MediaKind::Video,
            _ => continue, // onMetaData
        };
        let at = start + Duration::from_millis(u64::from(*timestamp));
        last = last.max(at);
        let frame = Arc::new(NativeFrame {
            kind,
            timestamp_ms: *timestamp,
            body: body.clone(),
            received_at: at,
        });
        events.push((at, TapEvent::Native { epoch, frame }));
    }
    events.push((last, TapEvent::PublisherEnded { epoch }));
    events
}

/// The pipeline and the muxers, driven the way the room task drives them: muxers are
/// built at the first session's start, rebuilt on a track change while nothing was muxed,
/// and otherwise kept (outputs continue across sessions).
struct Room {
    pipeline: RoomPipeline,
    muxers: Option<(FlvMuxer, HlsMuxer, LlHlsMuxer)>,
    written: bool,
    flv: Vec<u8>,
    recorder: HlsRecorder<DirectorySink>,
    units: Vec<MediaUnit>,
    announced: Vec<Tracks>,
    dir: tempfile::TempDir,
}

struct Outputs {
    flv: PathBuf,
    hls: PathBuf,
    llhls: PathBuf,
    recording: PathBuf,
}

impl Outputs {
    fn all(&self) -> [&PathBuf; 4] {
        [&self.flv, &self.hls, &self.llhls, &self.recording]
    }
}

impl Room {
    fn new(start: Instant) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let recorder = HlsRecorder::new(DirectorySink::new(dir.path().join("recording")).unwrap());
        Room {
            pipeline: RoomPipeline::new(
                PipelineConfig::default(),
                ClockAnchor {
                    instant: start,
                    wallclock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
                },
            ),
            muxers: None,
            written: false,
            flv: Vec::new(),
            recorder,
            units: Vec::new(),
            announced: Vec::new(),
            dir,
        }
    }

    fn build(&mut self, tracks: &Tracks) {
        let flv = FlvMuxer::new(tracks.clone());
        if self.muxers.is_none() {
            self.flv.extend(flv.join().iter().flat_map(|c| c.to_vec()));
        }
        self.muxers = Some((
            flv,
            HlsMuxer::new(tracks.clone(), HlsConfig::default()),
            LlHlsMuxer::new(tracks.clone(), LlHlsConfig::default()),
        ));
    }

    fn feed(&mut self, events: Vec<(Instant, TapEvent)>) {
        for (at, event) in events {
            let out = self.pipeline.push(event, at);
            for notice in &out.notices {
                match notice {
                    PipelineNotice::SessionStarted { tracks, .. }
                    | PipelineNotice::TracksChanged { tracks, .. } => {
                        self.announced.push(tracks.clone());
                        match self.muxers.as_mut() {
                            Some((_, _, llhls)) if self.written => llhls.update_tracks(tracks),
                            _ => self.build(tracks),
                        }
                    }
                    PipelineNotice::VideoUnavailable(err)
                    | PipelineNotice::AudioUnavailable(err) => {
                        panic!("unexpected: {err}")
                    }
                    _ => {}
                }
            }
            let (flv, hls, llhls) = self.muxers.as_mut().expect("session started first");
            for unit in &out.units {
                self.written = true;
                for chunk in flv.write(unit) {
                    self.flv.extend_from_slice(chunk);
                }
                if let Some(segment) = hls.write(unit) {
                    self.recorder.add_segment(&segment.ts).unwrap();
                }
                llhls.write(unit);
            }
            self.units.extend(out.units);
        }
    }

    fn finish(&mut self) -> Outputs {
        let (_, hls, llhls) = self.muxers.as_mut().unwrap();
        if let Some(segment) = hls.finish() {
            self.recorder.add_segment(&segment.ts).unwrap();
        }
        self.recorder.finish().unwrap();
        llhls.finish();
        let flv = self.dir.path().join("live.flv");
        std::fs::write(&flv, &self.flv).unwrap();
        Outputs {
            flv,
            hls: common::write_hls(&self.dir.path().join("hls"), hls),
            llhls: common::write_llhls(&self.dir.path().join("llhls"), llhls),
            recording: self.dir.path().join("recording").join("index.m3u8"),
        }
    }
}

fn bridge_native(source: &Source) -> (Room, Outputs) {
    let start = Instant::now();
    let mut room = Room::new(start);
    room.feed(native_events(&source.tags, 1, start));
    let outputs = room.finish();
    (room, outputs)
}

/// `ffmpeg -v error -i path -f null -` prints nothing.
fn assert_decodes_cleanly(path: &Path) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "{path:?}");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.trim().is_empty(),
        "{path:?} decodes with errors:\n{errors}"
    );
}

/// Video frames ffmpeg decodes from a file.
fn decoded_video_frames(path: &Path) -> u64 {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-f", "framecrc", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "{path:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .count() as u64
}

/// The raw AAC frames of a file's audio stream (copied out as ADTS, headers removed).
fn copied_aac(path: &Path) -> Vec<Bytes> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a", "-c", "copy", "-f", "adts", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "{path:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data = output.stdout;
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos + 7 <= data.len() {
        assert_eq!(data[pos], 0xFF, "ADTS sync");
        let header = if data[pos + 1] & 1 == 1 { 7 } else { 9 };
        let len = (usize::from(data[pos + 3] & 3) << 11)
            | (usize::from(data[pos + 4]) << 3)
            | usize::from(data[pos + 5] >> 5);
        frames.push(Bytes::copy_from_slice(&data[pos + header..pos + len]));
        pos += len;
    }
    assert_eq!(pos, data.len());
    frames
}

/// `out` is `source` without at most a frame or two at the start (audio before the
/// first keyframe has no segment to go in).
fn assert_aac_passed_through(what: &str, out: &[Bytes], source: &[Bytes]) {
    let skipped = source.len().saturating_sub(out.len());
    assert!(
        skipped <= 2,
        "{what}: {} of {} AAC frames",
        out.len(),
        source.len()
    );
    assert!(
        out == &source[skipped..],
        "{what}: AAC bytes differ from the source's"
    );
}

fn format_duration(path: &Path) -> f64 {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

/// (pts, dts) of every video packet.
fn video_packet_times(path: &Path) -> Vec<(String, String)> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts,dts",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (pts, dts) = line.split_once(',')?;
            Some((pts.to_owned(), dts.trim_end_matches(',').to_owned()))
        })
        .collect()
}

fn check_passthrough(source: &Source, b_frames: bool) {
    let (room, outputs) = bridge_native(source);
    let source_aac = aac_frames(&source.tags);
    assert_eq!(source.video_frames, 120, "4 s at 30 fps");

    // The session was announced with the stream's own AAC configuration.
    let announced = room.announced.last().unwrap();
    assert!(announced.video);
    assert_eq!(announced.audio.as_ref().unwrap().sample_rate, 44_100);
    let stats = room.pipeline.stats();
    assert_eq!(stats.native_sessions, 1);
    assert_eq!(stats.native.video_units, 120, "{stats:?}");
    assert_eq!(stats.native.audio_units as usize, source_aac.len());
    assert_eq!(stats.native.malformed, 0);

    // Units: DTS strictly increasing, pts ≥ dts, B-frames reorder.
    let videos: Vec<_> = room
        .units
        .iter()
        .filter_map(|u| match u {
            MediaUnit::Video(v) => Some(v),
            MediaUnit::Audio(_) => None,
        })
        .collect();
    assert!(videos.windows(2).all(|w| w[1].dts > w[0].dts));
    assert!(videos.iter().all(|v| v.pts >= v.dts));
    assert_eq!(videos.iter().any(|v| v.pts != v.dts), b_frames);
    assert!(videos[0].keyframe && !videos[0].discontinuity);
    assert!(room.units.iter().all(|u| !u.discontinuity()));

    let flv_out = flv_tags(&std::fs::read(&outputs.flv).unwrap());
    assert_aac_passed_through("FLV", &aac_frames(&flv_out), &source_aac);
    for path in [&outputs.hls, &outputs.llhls, &outputs.recording] {
        assert_aac_passed_through(&format!("{path:?}"), &copied_aac(path), &source_aac);
    }

    for path in outputs.all() {
        let probe = ffprobe(path, true);
        assert_eq!(probe.video()["codec_name"], "h264", "{path:?}");
        assert_eq!(probe.video()["width"], 320);
        assert_eq!(probe.video()["height"], 240);
        assert_eq!(
            frames(probe.video()),
            source.video_frames,
            "{path:?}: every frame kept"
        );
        assert_eq!(probe.audio()["codec_name"], "aac");
        assert_eq!(probe.audio()["profile"], "LC");
        assert_eq!(probe.audio()["sample_rate"], "44100", "{path:?}");
        let audio = frames(probe.audio()) as usize;
        assert!(
            audio + 2 >= source_aac.len() && audio <= source_aac.len(),
            "{path:?}: {audio} AAC frames of {}",
            source_aac.len()
        );
        let duration = format_duration(path);
        assert!((3.8..=4.3).contains(&duration), "{path:?}: {duration} s");
        if b_frames {
            assert_ne!(probe.video()["has_b_frames"], 0, "{path:?}");
            let times = video_packet_times(path);
            assert!(
                times.iter().any(|(pts, dts)| pts != dts),
                "{path:?}: pts = dts everywhere"
            );
        }
        assert_decodes_cleanly(path);
    }
}

#[test]
fn rtmp_baseline_passes_through_every_output() {
    if !have_ffmpeg() {
        return;
    }
    let (_, baseline, _, _) = sources();
    check_passthrough(baseline, false);
}

#[test]
fn rtmp_b_frames_pass_through_every_output() {
    if !have_ffmpeg() {
        return;
    }
    let (_, _, b_frames, _) = sources();
    // The source itself has B-frames (the test would prove nothing otherwise).
    assert!(
        video_packet_times(&b_frames.path)
            .iter()
            .any(|(pts, dts)| pts != dts)
    );
    check_passthrough(b_frames, true);
}

#[test]
fn publisher_switches_rtmp_to_whip_and_back() {
    if !have_ffmpeg() {
        return;
    }
    let (_, _, b_frames, clip) = sources();
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let mut room = Room::new(start);
    // RTMP (B-frames, 44.1 kHz AAC) for 4 s, then WHIP (H.264 + Opus → 48 kHz AAC) for
    // 2 s, then RTMP again.
    room.feed(native_events(&b_frames.tags, 1, start));
    let whip_start = start + Duration::from_millis(4500);
    room.feed(tap_events(&[clip], whip_start, wall, 2));
    room.feed(native_events(
        &b_frames.tags,
        3,
        start + Duration::from_secs(7),
    ));
    let outputs = room.finish();

    let stats = room.pipeline.stats();
    assert_eq!(stats.native_sessions, 2);
    let rates: Vec<_> = room
        .announced
        .iter()
        .filter_map(|t| t.audio.as_ref().map(|a| a.sample_rate))
        .collect();
    assert_eq!(
        rates.first(),
        Some(&48_000),
        "the first announcement knows only RTP"
    );
    assert!(rates.contains(&44_100));

    // One timeline: DTS per track strictly increasing across the sessions, and the first
    // units of each later session marked.
    let mut last = [i64::MIN; 2];
    for unit in &room.units {
        let track = usize::from(matches!(unit, MediaUnit::Video(_)));
        assert!(
            unit.dts() > last[track],
            "{} after {}",
            unit.dts(),
            last[track]
        );
        last[track] = unit.dts();
    }
    let video_breaks = room
        .units
        .iter()
        .filter(|u| matches!(u, MediaUnit::Video(_)) && u.discontinuity())
        .count();
    assert_eq!(video_breaks, 2);
    let audio_rates: Vec<u32> = room
        .units
        .iter()
        .filter_map(|u| match u {
            MediaUnit::Audio(a) if a.discontinuity => Some(a.config.sample_rate),
            _ => None,
        })
        .collect();
    assert_eq!(audio_rates, [48_000, 44_100]);
    let video_units = room
        .units
        .iter()
        .filter(|u| matches!(u, MediaUnit::Video(_)))
        .count() as u64;
    assert_eq!(
        video_units,
        2 * b_frames.video_frames + clip.video.len() as u64
    );

    // The FLV stream carries a new AAC sequence header at each switch.
    let flv = flv_tags(&std::fs::read(&outputs.flv).unwrap());
    let aac_headers: Vec<_> = flv
        .iter()
        .filter(|(kind, _, body)| *kind == 8 && body[1] == 0)
        .map(|(_, _, body)| body.slice(2..))
        .collect();
    let (_, _, source_header) = b_frames
        .tags
        .iter()
        .find(|(kind, _, body)| *kind == 8 && body[1] == 0)
        .unwrap();
    let rtmp = source_header.slice(2..);
    assert_eq!(
        aac_headers,
        [rtmp.clone(), Bytes::from_static(&[0x11, 0x90]), rtmp],
        "the stream's own AudioSpecificConfig, the transcoder's, the stream's"
    );
    let hls = std::fs::read_to_string(&outputs.hls).unwrap();
    assert_eq!(hls.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{hls}");
    let llhls = std::fs::read_to_string(&outputs.llhls).unwrap();
    assert!(
        llhls.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\""),
        "{llhls}"
    );

    // ffmpeg's HLS reader keeps the first init segment's moov across `EXT-X-MAP`
    // changes, so LL-HLS is checked segment by segment, each with its own init.
    let mut ll_frames = 0;
    let mut init = None;
    let ll_dir = outputs.llhls.parent().unwrap();
    for line in llhls.lines() {
        if let Some(uri) = line
            .strip_prefix("#EXT-X-MAP:URI=\"")
            .and_then(|s| s.strip_suffix('"'))
        {
            init = Some(std::fs::read(ll_dir.join(uri)).unwrap());
        } else if line.starts_with("seg") {
            let mut file = init.clone().expect("a map before the first segment");
            file.extend(std::fs::read(ll_dir.join(line)).unwrap());
            let path = ll_dir.join(format!("whole-{line}"));
            std::fs::write(&path, file).unwrap();
            let probe = ffprobe(&path, true);
            assert_eq!(probe.audio()["codec_name"], "aac");
            ll_frames += frames(probe.video());
            assert_decodes_cleanly(&path);
        }
    }
    assert_eq!(ll_frames, video_units, "LL-HLS segments hold every frame");

    for path in [&outputs.flv, &outputs.hls, &outputs.recording] {
        // Not `-count_frames`: Debian's ffprobe 5.1 crashes counting the frames of any FLV
        // with audio and a mid-stream onMetaData (an ffmpeg-made file with one inserted
        // does too); the FLV has one at each resolution change.
        let probe = ffprobe(path, false);
        assert_eq!(probe.video()["codec_name"], "h264");
        assert_eq!(probe.audio()["codec_name"], "aac");
        let decoded = decoded_video_frames(path);
        assert!(
            decoded + 2 >= video_units && decoded <= video_units,
            "{path:?}: {decoded} of {video_units} frames across the switches"
        );
        assert_decodes_cleanly(path);
    }
}
