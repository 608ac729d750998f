//! A small, bounded RTP reorder buffer.
//!
//! The SFU delivers publisher packets deduplicated but in arrival order. This buffer puts
//! them back in sequence-number order, waiting at most `max_delay` (or `capacity`
//! packets) for a missing one before declaring it lost. It holds a fixed number of slots
//! (64 by default): nothing like a 12 MB sample builder, and nothing grows with input.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Reorder buffer limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Slots in the window: a packet further than this ahead of the oldest missing one
    /// forces the missing one to be declared lost.
    pub capacity: usize,
    /// How long a gap may wait for a late packet once a later packet has arrived.
    pub max_delay: Duration,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            capacity: 64,
            max_delay: Duration::from_millis(100),
        }
    }
}

/// What [`ReorderBuffer::pop`] releases, in sequence order.
#[derive(Debug, PartialEq, Eq)]
pub enum Reordered<T> {
    /// The next packet in sequence.
    Packet(T),
    /// This many packets before the next one were given up on.
    Lost(u64),
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored; it will come out of [`ReorderBuffer::pop`] in order.
    Accepted,
    /// A packet with this sequence number is already buffered; the new one was dropped.
    Duplicate,
    /// The packet is older than what was already released; it was dropped.
    Late,
    /// The sequence number jumped so far that the buffer restarted from it (everything
    /// buffered before was released first).
    Restarted,
}

/// A jump larger than this (in packets, either way) restarts the buffer rather than
/// treating the packets in between as lost or the packet as late.
const RESTART_DISTANCE: i64 = 3000;

struct Slot<T> {
    seq: i64,
    arrived: Instant,
    item: T,
}

/// Puts packets back in sequence order; see the module doc.
pub struct ReorderBuffer<T> {
    slots: Box<[Option<Slot<T>>]>,
    config: ReorderConfig,
    /// Extended sequence number of the next packet to release.
    next: Option<i64>,
    /// Highest extended sequence number seen.
    highest: i64,
    buffered: usize,
    ready: VecDeque<Reordered<T>>,
}

impl<T> std::fmt::Debug for ReorderBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReorderBuffer")
            .field("next", &self.next)
            .field("highest", &self.highest)
            .field("buffered", &self.buffered)
            .finish()
    }
}

impl<T> ReorderBuffer<T> {
    /// An empty buffer. A capacity of 0 is treated as 1.
    pub fn new(config: ReorderConfig) -> Self {
        let capacity = config.capacity.max(1);
        ReorderBuffer {
            slots: (0..capacity).map(|_| None).collect(),
            config: ReorderConfig { capacity, ..config },
            next: None,
            highest: 0,
            buffered: 0,
            ready: VecDeque::new(),
        }
    }

    /// Number of packets held (buffered or ready to pop).
    pub fn len(&self) -> usize {
        self.buffered
            + self
                .ready
                .iter()
                .filter(|r| matches!(r, Reordered::Packet(_)))
                .count()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn capacity(&self) -> i64 {
        self.config.capacity as i64
    }

    fn index(&self, seq: i64) -> usize {
        seq.rem_euclid(self.capacity()) as usize
    }

    fn extend(&self, seq: u16) -> i64 {
        match self.next {
            None => i64::from(seq),
            Some(_) => {
                let diff = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
                self.highest + diff
            }
        }
    }

    /// Adds a packet. Call [`Self::pop`] until it returns `None` afterwards.
    pub fn push(&mut self, seq: u16, item: T, now: Instant) -> PushOutcome {
        let ext = self.extend(seq);
        let mut outcome = PushOutcome::Accepted;
        let next = match self.next {
            None => {
                self.next = Some(ext);
                self.highest = ext;
                ext
            }
            Some(next) => next,
        };
        if ext < next {
            if next - ext > RESTART_DISTANCE {
                self.restart(ext);
                outcome = PushOutcome::Restarted;
            } else {
                return PushOutcome::Late;
            }
        } else if ext - next > RESTART_DISTANCE {
            self.restart(ext);
            outcome = PushOutcome::Restarted;
        } else if ext - next >= self.capacity() {
            // The window would overflow: give up on everything older than the window.
            self.advance_to(ext - self.capacity() + 1);
        }
        let index = self.index(ext);
        if let Some(slot) = &self.slots[index]
            && slot.seq == ext
        {
            return PushOutcome::Duplicate;
        }
        // The slot can only hold a packet from a previous lap if `advance_to` failed to
        // release it, which it never does; overwrite defensively all the same.
        if self.slots[index]
            .replace(Slot {
                seq: ext,
                arrived: now,
                item,
            })
            .is_none()
        {
            self.buffered += 1;
        }
        self.highest = self.highest.max(ext);
        outcome
    }

    /// Releases everything buffered and starts again at `ext`.
    fn restart(&mut self, ext: i64) {
        self.drain_into_ready();
        self.next = Some(ext);
        self.highest = ext;
    }

    /// Moves every buffered packet to the ready queue in order, with the gaps between.
    fn drain_into_ready(&mut self) {
        if self.buffered > 0 {
            self.advance_to(self.highest + 1);
        }
    }

    /// Releases everything before `target` into the ready queue.
    fn advance_to(&mut self, target: i64) {
        let Some(mut next) = self.next else { return };
        let mut lost = 0u64;
        while next < target {
            if self.buffered == 0 {
                lost += (target - next) as u64;
                next = target;
                break;
            }
            let index = self.index(next);
            match self.slots[index].take() {
                Some(slot) if slot.seq == next => {
                    self.buffered -= 1;
                    if lost > 0 {
                        self.ready.push_back(Reordered::Lost(lost));
                        lost = 0;
                    }
                    self.ready.push_back(Reordered::Packet(slot.item));
                }
                other => {
                    self.slots[index] = other;
                    lost += 1;
                }
            }
            next += 1;
        }
        if lost > 0 {
            self.ready.push_back(Reordered::Lost(lost));
        }
        self.next = Some(next);
    }

    /// The next packet (or loss) in order, if it can be released at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Reordered<T>> {
        if let Some(ready) = self.ready.pop_front() {
            return Some(ready);
        }
        let next = self.next?;
        let index = self.index(next);
        if self.slots[index]
            .as_ref()
            .is_some_and(|slot| slot.seq == next)
        {
            let slot = self.slots[index].take()?;
            self.buffered -= 1;
            self.next = Some(next + 1);
            return Some(Reordered::Packet(slot.item));
        }
        if self.buffered == 0 {
            return None;
        }
        // A gap with later packets waiting: give up on it once the oldest waiter is stale.
        let (first_present, oldest) = self.first_present_and_oldest()?;
        if now.saturating_duration_since(oldest) >= self.config.max_delay {
            self.next = Some(first_present);
            return Some(Reordered::Lost((first_present - next) as u64));
        }
        None
    }

    fn first_present_and_oldest(&self) -> Option<(i64, Instant)> {
        let next = self.next?;
        let mut first: Option<i64> = None;
        let mut oldest: Option<Instant> = None;
        for slot in self.slots.iter().flatten() {
            if slot.seq >= next {
                first = Some(first.map_or(slot.seq, |f| f.min(slot.seq)));
                oldest = Some(oldest.map_or(slot.arrived, |o| o.min(slot.arrived)));
            }
        }
        Some((first?, oldest?))
    }

    /// When [`Self::pop`] may release something without a new packet (a waiting gap
    /// expiring), if anything is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return None;
        }
        if self.buffered == 0 {
            return None;
        }
        let (_, oldest) = self.first_present_and_oldest()?;
        Some(oldest + self.config.max_delay)
    }

    /// Releases everything still buffered, in order (end of stream). Pop afterwards.
    pub fn flush(&mut self) {
        self.drain_into_ready();
    }

    /// Forgets everything (new stream).
    pub fn reset(&mut self) {
        for slot in self.slots.iter_mut() {
            *slot = None;
        }
        self.buffered = 0;
        self.ready.clear();
        self.next = None;
        self.highest = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(buffer: &mut ReorderBuffer<u16>, now: Instant) -> Vec<Reordered<u16>> {
        std::iter::from_fn(|| buffer.pop(now)).collect()
    }

    #[test]
    fn in_order_passes_straight_through() {
        let now = Instant::now();
        let mut buffer = ReorderBuffer::new(ReorderConfig::default());
        for seq in 0..10u16 {
            assert_eq!(buffer.push(seq, seq, now), PushOutcome::Accepted);
            assert_eq!(drain(&mut buffer, now), vec![Reordered::Packet(seq)]);
        }
        assert!(buffer.is_empty());
    }

    #[test]
    fn reorders_swapped_packets() {
        let now = Instant::now();
        let mut buffer = ReorderBuffer::new(ReorderConfig::default());
        buffer.push(10, 10, now);
        assert_eq!(drain(&mut buffer, now), vec![Reordered::Packet(10)]);
        buffer.push(12, 12, now);
        assert!(drain(&mut buffer, now).is_empty(), "waits for 11");
        buffer.push(11, 11, now);
        assert_eq!(
            drain(&mut buffer, now),
            vec![Reordered::Packet(11), Reordered::Packet(12)]
        );
    }

    #[test]
    fn gap_expires_after_max_delay() {
        let start = Instant::now();
        let mut buffer = ReorderBuffer::new(ReorderConfig {
            capacity: 64,
            max_delay: Duration::from_millis(50),
        });
        buffer.push(1, 1, start);
        buffer.push(4, 4, start);
        assert_eq!(drain(&mut buffer, start), vec![Reordered::Packet(1)]);
        assert_eq!(
            buffer.poll_timeout(),
            Some(start + Duration::from_millis(50))
        );
        assert!(drain(&mut buffer, start + Duration::from_millis(49)).is_empty());
        assert_eq!(
            drain(&mut buffer, start + Duration::from_millis(50)),
            vec![Reordered::Lost(2), Reordered::Packet(4)]
        );
        // 2 arriving now is late.
        assert_eq!(buffer.push(2, 2, start), PushOutcome::Late);
    }

    #[test]
    fn window_overflow_declares_loss() {
        let now = Instant::now();
        let mut buffer = ReorderBuffer::new(ReorderConfig {
            capacity: 4,
            max_delay: Duration::from_secs(10),
        });
        buffer.push(0, 0, now);
        drain(&mut buffer, now);
        for seq in 2..=4 {
            buffer.push(seq, seq, now);
        }
        assert!(drain(&mut buffer, now).is_empty());
        buffer.push(5, 5, now); // 1 falls out of the window [1, 5)
        assert_eq!(
            drain(&mut buffer, now),
            vec![
                Reordered::Lost(1),
                Reordered::Packet(2),
                Reordered::Packet(3),
                Reordered::Packet(4),
                Reordered::Packet(5)
            ]
        );
    }

    #[test]
    fn wraps_around_sequence_numbers() {
        let now = Instant::now();
        let mut buffer = ReorderBuffer::new(ReorderConfig::default());
        let seqs = [65534u16, 0, 65535, 1];
        let mut out = Vec::new();
        for seq in seqs {
            buffer.push(seq, seq, now);
            out.extend(drain(&mut buffer, now));
        }
        assert_eq!(
            out,
            vec![
                Reordered::Packet(65534),
                Reordered::Packet(65535),
                Reordered::Packet(0),
                Reordered::Packet(1)
            ]
        );
    }

    #[test]
    fn duplicates_and_restarts() {
        let now = Instant::now();
        let mut buffer = ReorderBuffer::new(ReorderConfig::default());
        buffer.push(100, 100, now);
        buffer.push(102, 102, now);
        assert_eq!(buffer.push(102, 102, now), PushOutcome::Duplicate);
        assert_eq!(buffer.push(30_000, 30_000, now), PushOutcome::Restarted);
        assert_eq!(
            drain(&mut buffer, now),
            vec![
                Reordered::Packet(100),
                Reordered::Lost(1),
                Reordered::Packet(102),
                Reordered::Packet(30_000)
            ]
        );
    }

    #[test]
    fn flush_releases_everything() {
        let now = Instant::now();
        let mut buffer = ReorderBuffer::new(ReorderConfig::default());
        buffer.push(5, 5, now);
        drain(&mut buffer, now);
        buffer.push(8, 8, now);
        buffer.push(7, 7, now);
        buffer.flush();
        assert_eq!(
            drain(&mut buffer, now),
            vec![
                Reordered::Lost(1),
                Reordered::Packet(7),
                Reordered::Packet(8)
            ]
        );
        assert!(buffer.is_empty());
    }
}
