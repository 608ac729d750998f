//! The test stream, packetized once: every RTP payload the publisher will ever send, with
//! a fingerprint index so a viewer can map a received payload back to the instant the
//! publisher sent it (the forwarding delay) without touching the media.

use crate::clip::Clip;
use crate::load::measure::fingerprint;
use anyhow::{Context, bail};
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest RTP payload: a 1200-byte RTP packet, as browsers send, minus the 12-byte header.
pub const PAYLOAD_MTU: usize = 1200 - 12;

/// One RTP payload of the clip.
#[derive(Debug, Clone)]
pub struct ClipPayload {
    /// The bytes.
    pub data: Bytes,
    /// Index into [`SendTimes`], or `None` when the same bytes occur elsewhere in the clip
    /// (e.g. repeated silence frames), which makes the payload useless as a timing key.
    pub id: Option<u32>,
}

/// One video frame as RTP payloads; the last carries the marker bit.
#[derive(Debug, Clone)]
pub struct ClipFrame {
    /// Payloads in send order.
    pub payloads: Vec<ClipPayload>,
    /// Whether the frame is an IDR (with its parameter sets).
    pub keyframe: bool,
    /// [`vcl_key`] of the frame's first slice NAL unit: how HTTP players (FLV, HLS), which
    /// see frames rather than RTP payloads, recognise it. `None` without a slice.
    pub vcl_key: Option<u64>,
}

/// The packetized clip.
#[derive(Debug)]
pub struct PacketizedClip {
    /// Human-readable name (`720p`, or the file name).
    pub name: String,
    /// Video frames in order.
    pub video: Vec<ClipFrame>,
    /// Video frame interval.
    pub frame_duration: Duration,
    /// Opus packets, 20 ms each.
    pub audio: Vec<ClipPayload>,
    /// Fingerprint → payload id, only for payloads unique in the clip.
    index: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    /// Payloads with an id.
    ids: u32,
    /// Mean video bitrate of the clip, bits per second (payload bytes).
    pub video_bitrate: f64,
}

/// Which clip to publish.
#[derive(Debug, Clone)]
pub enum ClipChoice {
    /// A committed clip by name: `720p` (1.5 Mbit/s) or `360p`.
    Builtin(String),
    /// Annex B H.264 file, Ogg Opus file, frame rate.
    Files {
        /// H.264 Annex B.
        h264: PathBuf,
        /// Ogg Opus with 20 ms packets.
        ogg: PathBuf,
        /// Frames per second of the H.264 file.
        fps: u32,
    },
}

impl PacketizedClip {
    /// Loads and packetizes a clip.
    pub fn load(choice: &ClipChoice) -> anyhow::Result<PacketizedClip> {
        let dir = crate::clip::media_dir();
        let (name, clip) = match choice {
            ClipChoice::Builtin(name) => {
                let file = match name.as_str() {
                    "720p" => "clip-720p.h264",
                    "360p" => "clip-360p.h264",
                    other => bail!("unknown clip {other:?} (built in: 720p, 360p)"),
                };
                (
                    name.clone(),
                    Clip::load(&dir.join(file), &dir.join("clip.ogg"), 30)?,
                )
            }
            ClipChoice::Files { h264, ogg, fps } => {
                if *fps == 0 {
                    bail!("--fps must be positive");
                }
                (file_name(h264), Clip::load(h264, ogg, *fps)?)
            }
        };
        Self::from_clip(name, &clip)
    }

    /// Packetizes an in-memory clip.
    pub fn from_clip(name: String, clip: &Clip) -> anyhow::Result<PacketizedClip> {
        let mut payloader = H264Payloader::default();
        let mut video = Vec::with_capacity(clip.video.len());
        let mut video_bytes = 0usize;
        for frame in &clip.video {
            let payloads = payloader
                .payload(PAYLOAD_MTU, &frame.annex_b)
                .context("packetizing H.264")?;
            if payloads.is_empty() {
                continue;
            }
            video_bytes += payloads.iter().map(Bytes::len).sum::<usize>();
            let vcl_key = crate::clip::nal_units(&frame.annex_b)
                .into_iter()
                .find(|nal| is_vcl(nal))
                .map(vcl_key);
            video.push(ClipFrame {
                payloads: payloads
                    .into_iter()
                    .map(|data| ClipPayload { data, id: None })
                    .collect(),
                keyframe: frame.keyframe,
                vcl_key,
            });
        }
        if video.is_empty() || !video[0].keyframe {
            bail!("the clip must start with a keyframe");
        }
        if clip.audio.is_empty() {
            bail!("the clip has no audio");
        }
        let mut audio: Vec<ClipPayload> = clip
            .audio
            .iter()
            .map(|data| ClipPayload {
                data: data.clone(),
                id: None,
            })
            .collect();
        // Give every payload whose bytes are unique in the clip an id.
        let mut occurrences: HashMap<u64, u32> = HashMap::new();
        let all = video
            .iter()
            .flat_map(|f| f.payloads.iter())
            .chain(audio.iter());
        for payload in all {
            *occurrences.entry(fingerprint(&payload.data)).or_default() += 1;
        }
        let mut index = HashMap::default();
        let mut ids = 0u32;
        let all = video
            .iter_mut()
            .flat_map(|f| f.payloads.iter_mut())
            .chain(audio.iter_mut());
        for payload in all {
            let key = fingerprint(&payload.data);
            if occurrences.get(&key) == Some(&1) {
                payload.id = Some(ids);
                index.insert(key, ids);
                ids += 1;
            }
        }
        let seconds = video.len() as f64 * clip.frame_duration.as_secs_f64();
        Ok(PacketizedClip {
            name,
            video,
            frame_duration: clip.frame_duration,
            audio,
            index,
            ids,
            video_bitrate: video_bytes as f64 * 8.0 / seconds,
        })
    }

    /// The id of a received payload, if it is a unique payload of this clip.
    pub fn id_of(&self, payload: &[u8]) -> Option<u32> {
        self.index.get(&fingerprint(payload)).copied()
    }

    /// A send-time table sized for this clip.
    pub fn send_times(&self) -> SendTimes {
        SendTimes {
            times: (0..self.ids).map(|_| AtomicU64::new(0)).collect(),
            frames: (0..self.video.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Payloads per second, audio and video together.
    pub fn packets_per_second(&self) -> f64 {
        let video_packets: usize = self.video.iter().map(|f| f.payloads.len()).sum();
        let seconds = self.video.len() as f64 * self.frame_duration.as_secs_f64();
        video_packets as f64 / seconds + 50.0
    }
}

/// Bytes after the NAL header that [`vcl_key`] hashes: the slice header and the start of
/// the slice data, which differ from frame to frame.
pub const VCL_KEY_BYTES: usize = 64;

/// Whether a NAL unit (header byte first) is a coded slice (types 1–5).
pub fn is_vcl(nal: &[u8]) -> bool {
    nal.first().is_some_and(|h| (1..=5).contains(&(h & 0x1f)))
}

/// The fingerprint of a slice NAL unit (header byte first) that survives depacketization
/// and remuxing: a hash of up to [`VCL_KEY_BYTES`] bytes after the header.
pub fn vcl_key(nal: &[u8]) -> u64 {
    let end = nal.len().min(1 + VCL_KEY_BYTES);
    fingerprint(nal.get(1..end).unwrap_or_default())
}

/// A hasher for keys that are already good 64-bit hashes (fingerprints): passes them through.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// When each clip payload was last sent, `CLOCK_REALTIME` ns (0 = never). Written by the
/// publisher thread just before the datagram leaves, read by viewer workers: a payload of a
/// looping clip recurs only once per loop (seconds later), so the latest send is the one a
/// viewer just received.
///
/// Whole video frames have their own table, by clip frame index: the instant the frame's
/// last (marker) packet left, for players that only see complete frames.
#[derive(Debug)]
pub struct SendTimes {
    times: Box<[AtomicU64]>,
    frames: Box<[AtomicU64]>,
}

impl SendTimes {
    /// Records that payload `id` is being sent at `wall_ns`.
    pub fn set(&self, id: u32, wall_ns: u64) {
        if let Some(slot) = self.times.get(id as usize) {
            slot.store(wall_ns, Ordering::Release);
        }
    }

    /// When payload `id` was last sent.
    pub fn get(&self, id: u32) -> Option<u64> {
        self.times
            .get(id as usize)
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&ns| ns != 0)
    }

    /// Records that clip video frame `index` finished sending at `wall_ns`.
    pub fn set_frame(&self, index: usize, wall_ns: u64) {
        if let Some(slot) = self.frames.get(index) {
            slot.store(wall_ns, Ordering::Release);
        }
    }

    /// When clip video frame `index` last finished sending.
    pub fn frame(&self, index: usize) -> Option<u64> {
        self.frames
            .get(index)
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&ns| ns != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_720p_clip_is_about_one_and_a_half_megabits() {
        let clip = PacketizedClip::load(&ClipChoice::Builtin("720p".into())).unwrap();
        assert_eq!(clip.video.len(), 180);
        assert_eq!(clip.video.iter().filter(|f| f.keyframe).count(), 3);
        assert!(
            (1.3e6..1.7e6).contains(&clip.video_bitrate),
            "{}",
            clip.video_bitrate
        );
        for frame in &clip.video {
            for payload in &frame.payloads {
                assert!(payload.data.len() <= PAYLOAD_MTU);
                if let Some(id) = payload.id {
                    assert_eq!(clip.id_of(&payload.data), Some(id));
                }
            }
        }
        let with_id = clip
            .video
            .iter()
            .flat_map(|f| &f.payloads)
            .filter(|p| p.id.is_some())
            .count();
        let total: usize = clip.video.iter().map(|f| f.payloads.len()).sum();
        // Every keyframe repeats the same SPS/PPS (one STAP-A): those are ambiguous, the
        // rest are unique.
        let keyframes = clip.video.iter().filter(|f| f.keyframe).count();
        assert_eq!(
            with_id,
            total - keyframes,
            "video payloads are unique but the SPS/PPS"
        );
        let times = clip.send_times();
        assert_eq!(times.get(0), None);
        times.set(0, 42);
        assert_eq!(times.get(0), Some(42));
        assert_eq!(times.frame(0), None);
        times.set_frame(179, 7);
        assert_eq!(times.frame(179), Some(7));
        assert!(clip.video.iter().all(|f| f.vcl_key.is_some()));
    }
}
