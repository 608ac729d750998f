//! The packets of a video track since its last keyframe, so a joining viewer starts at once.
//!
//! Without it a joiner waits for the next keyframe (up to a GOP) or costs the publisher a
//! PLI. The cache holds shared `Arc`s of the packets the ring already holds, bounded in
//! packets and bytes: a GOP too long to keep invalidates it until the next keyframe, and
//! joiners then fall back to a (coalesced) PLI.

use crate::media::SourcePacket;
use std::sync::Arc;

/// Default bound on cached packets (≈ 4 s of 1.5 Mbit/s video in 1200-byte packets).
pub const DEFAULT_MAX_PACKETS: usize = 2048;
/// Default bound on cached payload bytes.
pub const DEFAULT_MAX_BYTES: usize = 3 * 1024 * 1024;

/// See the module docs.
#[derive(Debug)]
pub struct KeyframeCache {
    packets: Vec<Arc<SourcePacket>>,
    /// Source timestamps of the cached frames, in arrival order, the keyframe first.
    frame_timestamps: Vec<u32>,
    bytes: usize,
    max_packets: usize,
    max_bytes: usize,
    /// Whether `packets` starts with a keyframe and holds everything since.
    valid: bool,
}

impl Default for KeyframeCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PACKETS, DEFAULT_MAX_BYTES)
    }
}

impl KeyframeCache {
    /// An empty cache with the given bounds. Storage is reserved once, here.
    pub fn new(max_packets: usize, max_bytes: usize) -> Self {
        Self {
            packets: Vec::with_capacity(max_packets),
            frame_timestamps: Vec::with_capacity(max_packets.min(512)),
            bytes: 0,
            max_packets,
            max_bytes,
            valid: false,
        }
    }

    /// Records one (deduplicated) video packet.
    pub fn push(&mut self, packet: &Arc<SourcePacket>) {
        let current_epoch = self.packets.first().map(|first| first.epoch);
        let new_gop = packet.keyframe
            && self.packets.first().is_none_or(|first| {
                first.timestamp != packet.timestamp || first.epoch != packet.epoch
            });
        if new_gop {
            self.clear();
            self.valid = true;
        } else if current_epoch.is_some_and(|epoch| epoch != packet.epoch) {
            // A new publisher session that did not start with a keyframe.
            self.clear();
        }
        if !self.valid {
            return;
        }
        if self.packets.len() >= self.max_packets
            || self.bytes + packet.payload.len() > self.max_bytes
        {
            self.clear();
            return;
        }
        if self.frame_timestamps.last() != Some(&packet.timestamp) {
            if self.frame_timestamps.len() == self.frame_timestamps.capacity() {
                self.clear();
                return;
            }
            self.frame_timestamps.push(packet.timestamp);
        }
        self.bytes += packet.payload.len();
        self.packets.push(Arc::clone(packet));
    }

    /// Drops everything (publisher gone, or the GOP outgrew the bounds).
    pub fn clear(&mut self) {
        self.packets.clear();
        self.frame_timestamps.clear();
        self.bytes = 0;
        self.valid = false;
    }

    /// The cached packets (starting with a keyframe) and the frame timestamps, if a
    /// complete GOP prefix is held for `epoch`.
    pub fn snapshot(&self, epoch: u32) -> Option<(&[Arc<SourcePacket>], &[u32])> {
        let first = self.packets.first()?;
        (self.valid && first.epoch == epoch).then_some((&self.packets, &self.frame_timestamps))
    }

    /// Number of cached packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use bytes::Bytes;
    use std::time::Instant;

    fn packet(epoch: u32, seq: u16, ts: u32, keyframe: bool) -> Arc<SourcePacket> {
        Arc::new(SourcePacket {
            codec: Codec::H264,
            epoch,
            sequence_number: seq,
            timestamp: ts,
            marker: false,
            keyframe,
            frame_start: false,
            video_orientation: None,
            received_at: Instant::now(),
            payload: Bytes::from_static(&[0; 100]),
        })
    }

    #[test]
    fn holds_packets_since_the_last_keyframe() {
        let mut cache = KeyframeCache::default();
        cache.push(&packet(1, 1, 0, false));
        assert!(cache.snapshot(1).is_none(), "no keyframe yet");
        cache.push(&packet(1, 2, 3000, true));
        cache.push(&packet(1, 3, 3000, true)); // second packet of the same IDR
        cache.push(&packet(1, 4, 6000, false));
        let (packets, frames) = cache.snapshot(1).unwrap();
        assert_eq!(
            packets
                .iter()
                .map(|p| p.sequence_number)
                .collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(frames, [3000, 6000]);
        // The next keyframe starts a new GOP.
        cache.push(&packet(1, 5, 9000, true));
        let (packets, frames) = cache.snapshot(1).unwrap();
        assert_eq!(packets.len(), 1);
        assert_eq!(frames, [9000]);
    }

    #[test]
    fn a_new_epoch_without_keyframe_invalidates() {
        let mut cache = KeyframeCache::default();
        cache.push(&packet(1, 1, 0, true));
        cache.push(&packet(2, 1, 0, false));
        assert!(cache.snapshot(1).is_none());
        assert!(cache.snapshot(2).is_none());
        cache.push(&packet(2, 2, 3000, true));
        assert_eq!(cache.snapshot(2).unwrap().0.len(), 1);
        assert!(cache.snapshot(1).is_none());
    }

    #[test]
    fn an_oversized_gop_invalidates_until_the_next_keyframe() {
        let mut cache = KeyframeCache::new(3, 1 << 20);
        cache.push(&packet(1, 1, 0, true));
        cache.push(&packet(1, 2, 3000, false));
        cache.push(&packet(1, 3, 6000, false));
        cache.push(&packet(1, 4, 9000, false));
        assert!(cache.snapshot(1).is_none());
        cache.push(&packet(1, 5, 12000, false));
        assert!(cache.is_empty());
        cache.push(&packet(1, 6, 15000, true));
        assert_eq!(cache.len(), 1);
    }
}
