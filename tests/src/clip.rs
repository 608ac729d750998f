//! The committed test clip (H.264 Annex B + Opus in Ogg), loaded into memory as frames.

use anyhow::{Context, bail};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One H.264 access unit in Annex B form (start codes included).
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// SPS/PPS/SEI/slice NAL units with 4-byte start codes.
    pub annex_b: Bytes,
    /// Whether the frame carries an IDR slice.
    pub keyframe: bool,
}

/// A clip to publish in a loop.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Video frames in decode order.
    pub video: Vec<VideoFrame>,
    /// Frame duration.
    pub frame_duration: Duration,
    /// Opus packets (20 ms each).
    pub audio: Vec<Bytes>,
}

impl Clip {
    /// The 640x360 30 fps clip in `tests/media`.
    pub fn default_360p() -> anyhow::Result<Clip> {
        let dir = media_dir();
        Clip::load(&dir.join("clip-360p.h264"), &dir.join("clip.ogg"), 30)
    }

    /// Loads an Annex B H.264 file and an Ogg Opus file.
    pub fn load(h264: &Path, ogg: &Path, fps: u32) -> anyhow::Result<Clip> {
        let video_bytes =
            std::fs::read(h264).with_context(|| format!("reading {}", h264.display()))?;
        let audio_bytes =
            std::fs::read(ogg).with_context(|| format!("reading {}", ogg.display()))?;
        let video = split_access_units(&video_bytes);
        if video.is_empty() || !video[0].keyframe {
            bail!("{} must start with an IDR frame", h264.display());
        }
        let audio = ogg_packets(&audio_bytes)?;
        Ok(Clip {
            video,
            frame_duration: Duration::from_secs(1) / fps,
            audio,
        })
    }
}

/// The directory holding the committed media.
pub fn media_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media")
}

/// Splits Annex B into NAL units, then groups them into access units ending at each
/// slice (x264 writes one slice per frame).
pub fn split_access_units(data: &[u8]) -> Vec<VideoFrame> {
    let mut frames = Vec::new();
    let mut current = Vec::new();
    let mut keyframe = false;
    for nal in nal_units(data) {
        let Some(&header) = nal.first() else { continue };
        let nal_type = header & 0x1f;
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(nal);
        if nal_type == 5 {
            keyframe = true;
        }
        if nal_type == 1 || nal_type == 5 {
            frames.push(VideoFrame {
                annex_b: Bytes::from(std::mem::take(&mut current)),
                keyframe,
            });
            keyframe = false;
        }
    }
    frames
}

/// NAL unit payloads between Annex B start codes.
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        units.push(&data[start..end]);
    }
    units
}

/// The Opus packets of an Ogg stream (RFC 3533 lacing), without the two header packets.
pub fn ogg_packets(data: &[u8]) -> anyhow::Result<Vec<Bytes>> {
    let mut packets = Vec::new();
    let mut partial = Vec::new();
    let mut offset = 0;
    while offset + 27 <= data.len() {
        if &data[offset..offset + 4] != b"OggS" {
            bail!("bad Ogg page at {offset}");
        }
        let segments = data[offset + 26] as usize;
        let table = data
            .get(offset + 27..offset + 27 + segments)
            .context("truncated Ogg page")?;
        let mut body = offset + 27 + segments;
        for &lace in table {
            let end = body + lace as usize;
            partial.extend_from_slice(data.get(body..end).context("truncated Ogg segment")?);
            body = end;
            if lace < 255 {
                packets.push(Bytes::from(std::mem::take(&mut partial)));
            }
        }
        offset = body;
    }
    // OpusHead and OpusTags come first.
    Ok(packets
        .into_iter()
        .filter(|p| !p.starts_with(b"OpusHead") && !p.starts_with(b"OpusTags"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_clip_loads() {
        let clip = Clip::default_360p().unwrap();
        assert_eq!(clip.video.len(), 180, "6 s at 30 fps");
        assert_eq!(
            clip.video.iter().filter(|f| f.keyframe).count(),
            3,
            "2 s GOP"
        );
        assert!(
            clip.audio.len() >= 295,
            "6 s of 20 ms Opus, got {}",
            clip.audio.len()
        );
    }
}
