//! The packets of a video track since its last keyframe, so a joining viewer starts at once.
//!
//! Without it a joiner waits for the next keyframe (up to a GOP) or costs the publisher a
//! PLI. The cache holds shared `Arc`s of the packets the ring already holds, bounded in
//! packets and bytes: a GOP too long to keep invalidates it until the next keyframe, and
//! joiners then fall back to a (coalesced) PLI.
//!
//! Packets are kept in sequence order, not arrival order: a packet that arrives late (a
//! retransmission the SFU asked the publisher for, or network reordering) takes its place
//! in the GOP, so a joiner's replay never shows a gap that is filled a moment later — each
//! such gap costs a NACK from a browser, which asks for every hole it sees. What is still
//! missing is counted ([`KeyframeCache::missing`]): a GOP with holes cannot be decoded
//! past them, so it cannot answer a viewer's keyframe request either.

use crate::forwarder::{seq_is_newer, timestamp_is_newer};
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
    /// Source timestamps of the cached frames, in sequence order, the keyframe first.
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
        // A keyframe newer than the cached one starts a new GOP; a late packet of an older
        // keyframe (a retransmission) must not throw the current GOP away.
        let new_gop = packet.keyframe
            && self.packets.first().is_none_or(|first| {
                first.epoch != packet.epoch || timestamp_is_newer(packet.timestamp, first.timestamp)
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
        if let Some(last) = self.packets.last()
            && !seq_is_newer(packet.sequence_number, last.sequence_number)
        {
            return self.insert_late(packet);
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

    /// A packet older than the newest cached one: put it in its place, or drop it if it
    /// belongs to an earlier GOP or is already held.
    fn insert_late(&mut self, packet: &Arc<SourcePacket>) {
        let Some(first) = self.packets.first() else {
            return;
        };
        let first_sequence_number = first.sequence_number;
        let before_first = packet.sequence_number.wrapping_sub(first_sequence_number) as i16 as i32;
        if before_first < 0 && packet.timestamp != first.timestamp {
            return; // the previous GOP
        }
        // Offsets from the packet's sequence number keep the comparison wrap-safe.
        let offset = |p: &Arc<SourcePacket>| {
            p.sequence_number.wrapping_sub(packet.sequence_number) as i16 as i32
        };
        let position = self.packets.partition_point(|p| offset(p) < 0);
        if self
            .packets
            .get(position)
            .is_some_and(|p| p.sequence_number == packet.sequence_number)
        {
            return; // held already
        }
        self.bytes += packet.payload.len();
        self.packets.insert(position, Arc::clone(packet));
        if !self.frame_timestamps.contains(&packet.timestamp) {
            // Rare (a whole frame arrived late): rebuild the frame list in sequence order,
            // inside the storage reserved at creation.
            if self.frame_timestamps.len() == self.frame_timestamps.capacity() {
                return self.clear();
            }
            self.frame_timestamps.clear();
            for p in &self.packets {
                if self.frame_timestamps.last() != Some(&p.timestamp) {
                    self.frame_timestamps.push(p.timestamp);
                }
            }
        }
    }

    /// Sequence numbers missing between the keyframe and the newest cached packet (lost
    /// upstream and not retransmitted yet).
    pub fn missing(&self) -> usize {
        match (self.packets.first(), self.packets.last()) {
            (Some(first), Some(last)) => {
                let span = last.sequence_number.wrapping_sub(first.sequence_number) as usize + 1;
                span.saturating_sub(self.packets.len())
            }
            _ => 0,
        }
    }

    /// Whether a complete, decodable GOP prefix is held for `epoch`: it starts with a
    /// keyframe and has no hole.
    pub fn is_complete(&self, epoch: u32) -> bool {
        self.snapshot(epoch).is_some() && self.missing() == 0
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

    fn seqs(cache: &KeyframeCache) -> Vec<u16> {
        cache
            .snapshot(1)
            .unwrap()
            .0
            .iter()
            .map(|p| p.sequence_number)
            .collect()
    }

    #[test]
    fn late_packets_take_their_place_so_a_replay_has_no_gap() {
        // Arrival 10 (keyframe), 11, 13, 14, then 12 (a retransmission): before, the replay
        // went out as 10 11 13 14 12 and every joiner NACKed 12 although it was coming.
        let mut cache = KeyframeCache::default();
        cache.push(&packet(1, 10, 0, true));
        cache.push(&packet(1, 11, 0, false));
        cache.push(&packet(1, 13, 3000, false));
        cache.push(&packet(1, 14, 6000, false));
        assert_eq!(cache.missing(), 1);
        assert!(!cache.is_complete(1), "12 is missing");
        cache.push(&packet(1, 12, 3000, false));
        assert_eq!(seqs(&cache), [10, 11, 12, 13, 14]);
        assert_eq!(cache.missing(), 0);
        assert!(cache.is_complete(1));
        // A duplicate and a packet of the previous GOP change nothing.
        cache.push(&packet(1, 12, 3000, false));
        cache.push(&packet(1, 9, 65_000, false));
        assert_eq!(seqs(&cache), [10, 11, 12, 13, 14]);
        // A late packet of the previous keyframe does not restart the cache on it.
        cache.push(&packet(1, 5, 65_000u32.wrapping_sub(90_000), true));
        assert_eq!(seqs(&cache), [10, 11, 12, 13, 14]);
        // The keyframe's parameter sets arriving after its first slice go in front.
        cache.push(&packet(1, 8, 0, true));
        assert_eq!(seqs(&cache), [8, 10, 11, 12, 13, 14]);
        assert_eq!(cache.snapshot(1).unwrap().1, [0, 3000, 6000]);
    }

    #[test]
    fn a_late_frame_is_listed_in_order_across_a_wrap() {
        let mut cache = KeyframeCache::default();
        cache.push(&packet(1, 65534, 0, true));
        cache.push(&packet(1, 1, 9000, false));
        cache.push(&packet(1, 0, 6000, false));
        cache.push(&packet(1, 65535, 3000, false));
        assert_eq!(seqs(&cache), [65534, 65535, 0, 1]);
        assert_eq!(cache.snapshot(1).unwrap().1, [0, 3000, 6000, 9000]);
        assert!(cache.is_complete(1));
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
