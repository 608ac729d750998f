//! One shared ring of recent packets per source track.
//!
//! It serves two purposes: deduplication of what the publisher sends (retransmissions that
//! crossed, network duplicates) and answering viewers' NACKs. Every viewer's NACK is
//! answered from this one ring — packets are stored once and rewritten per viewer on the
//! way out — instead of each viewer's connection buffering its own copy.

use crate::forwarder::seq_is_newer;
use crate::media::SourcePacket;
use std::sync::Arc;

/// Default ring size for video (about 7 s at 150 packets/s).
pub const VIDEO_RING_SIZE: usize = 1024;
/// Default ring size for audio (about 5 s of 20 ms frames).
pub const AUDIO_RING_SIZE: usize = 256;

/// What inserting a packet found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// A packet not seen before: forward it.
    New,
    /// The same sequence number of the same publisher session is already held.
    Duplicate,
    /// Older than anything the ring can hold: too late to be useful.
    TooOld,
}

/// See the module docs.
#[derive(Debug)]
pub struct PacketRing {
    slots: Box<[Option<Arc<SourcePacket>>]>,
    mask: usize,
    highest: Option<(u32, u16)>,
}

impl PacketRing {
    /// A ring of `size` slots, rounded up to a power of two. Allocated once.
    pub fn new(size: usize) -> Self {
        let size = size.max(2).next_power_of_two();
        Self {
            slots: vec![None; size].into_boxed_slice(),
            mask: size - 1,
            highest: None,
        }
    }

    /// Stores a packet unless it is a duplicate or too old.
    pub fn insert(&mut self, packet: &Arc<SourcePacket>) -> Insert {
        let seq = packet.sequence_number;
        match self.highest {
            Some((epoch, highest)) if epoch == packet.epoch => {
                if seq_is_newer(seq, highest) {
                    self.highest = Some((epoch, seq));
                } else if highest.wrapping_sub(seq) as usize > self.mask {
                    return Insert::TooOld;
                }
            }
            _ => self.highest = Some((packet.epoch, seq)),
        }
        let slot = &mut self.slots[seq as usize & self.mask];
        if slot
            .as_ref()
            .is_some_and(|held| held.sequence_number == seq && held.epoch == packet.epoch)
        {
            return Insert::Duplicate;
        }
        *slot = Some(Arc::clone(packet));
        Insert::New
    }

    /// The packet with this source sequence number in this publisher session, if held.
    pub fn get(&self, epoch: u32, sequence_number: u16) -> Option<&Arc<SourcePacket>> {
        self.slots[sequence_number as usize & self.mask]
            .as_ref()
            .filter(|held| held.sequence_number == sequence_number && held.epoch == epoch)
    }

    /// Drops everything (room closed).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
        self.highest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use bytes::Bytes;
    use std::time::Instant;

    fn packet(epoch: u32, seq: u16) -> Arc<SourcePacket> {
        Arc::new(SourcePacket {
            codec: Codec::Opus,
            epoch,
            sequence_number: seq,
            timestamp: 0,
            marker: false,
            keyframe: true,
            frame_start: true,
            video_orientation: None,
            received_at: Instant::now(),
            payload: Bytes::new(),
        })
    }

    #[test]
    fn deduplicates_and_serves_nacks() {
        let mut ring = PacketRing::new(8);
        assert_eq!(ring.insert(&packet(1, 100)), Insert::New);
        assert_eq!(ring.insert(&packet(1, 101)), Insert::New);
        assert_eq!(ring.insert(&packet(1, 100)), Insert::Duplicate);
        assert_eq!(ring.get(1, 100).unwrap().sequence_number, 100);
        assert!(ring.get(1, 102).is_none());
        assert!(ring.get(2, 100).is_none(), "another session's packet");
        // Overwritten after wrapping the ring.
        for seq in 102..110 {
            assert_eq!(ring.insert(&packet(1, seq)), Insert::New);
        }
        assert!(ring.get(1, 100).is_none());
        assert_eq!(ring.insert(&packet(1, 90)), Insert::TooOld);
    }

    #[test]
    fn a_new_epoch_is_never_a_duplicate() {
        let mut ring = PacketRing::new(8);
        ring.insert(&packet(1, 5));
        assert_eq!(ring.insert(&packet(2, 5)), Insert::New);
        assert_eq!(ring.get(2, 5).unwrap().epoch, 2);
    }

    #[test]
    fn wraps_sequence_numbers() {
        let mut ring = PacketRing::new(16);
        assert_eq!(ring.insert(&packet(1, 65534)), Insert::New);
        assert_eq!(ring.insert(&packet(1, 1)), Insert::New);
        assert_eq!(ring.insert(&packet(1, 65535)), Insert::New);
        assert_eq!(ring.insert(&packet(1, 65535)), Insert::Duplicate);
    }
}
