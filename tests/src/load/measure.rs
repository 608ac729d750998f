//! The load generator's measurement math: pure functions and small state machines, no I/O
//! and no clock, so they are unit-tested on their own.
//!
//! - [`Histogram`]: log-linear latency histogram (≤ 1/64 relative error, fixed memory).
//! - [`percentile`]: nearest-rank percentile of a sorted sample.
//! - [`SeqTracker`]: RTP sequence-number bookkeeping (unique, duplicate, expected) for loss.
//! - [`FirstFrame`]: spots the first complete H.264 keyframe of a viewer (time to first frame).
//! - [`fingerprint`]: a fast 64-bit hash of a payload, the key from a received packet back to
//!   the instant the publisher sent it.
//! - `/proc` and Prometheus text parsing: [`ProcStat::parse`], [`parse_vm_rss_kib`],
//!   [`prometheus_value`].

/// Sub-buckets per power of two in [`Histogram`]: relative error ≤ 1/64.
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Values below this are recorded exactly (one bucket each).
const LINEAR_LIMIT: u64 = SUB_BUCKETS as u64;
/// Buckets: the linear range plus 64 sub-buckets for each of the 58 remaining powers of two.
const BUCKETS: usize = SUB_BUCKETS + (64 - SUB_BUCKET_BITS as usize) * SUB_BUCKETS;

/// A log-linear histogram of `u64` values (nanoseconds here), in the spirit of HdrHistogram:
/// exact below 64, then 64 linear sub-buckets per power of two, so any percentile it
/// reports is within 1/64 (1.6 %) of the true sample value. Fixed size (~30 KiB), no
/// allocation per record.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    fn bucket_of(value: u64) -> usize {
        if value < LINEAR_LIMIT {
            return value as usize;
        }
        // `value` is in [2^e, 2^(e+1)) with e ≥ SUB_BUCKET_BITS.
        let exponent = 63 - value.leading_zeros();
        let shift = exponent - SUB_BUCKET_BITS;
        let sub = ((value >> shift) as usize) & (SUB_BUCKETS - 1);
        SUB_BUCKETS + (exponent - SUB_BUCKET_BITS) as usize * SUB_BUCKETS + sub
    }

    /// The smallest value that falls in `bucket`.
    fn bucket_low(bucket: usize) -> u64 {
        if bucket < SUB_BUCKETS {
            return bucket as u64;
        }
        let index = bucket - SUB_BUCKETS;
        let exponent = (index / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS;
        let sub = (index % SUB_BUCKETS) as u64;
        (1u64 << exponent) + (sub << (exponent - SUB_BUCKET_BITS))
    }

    /// The largest value that falls in `bucket`.
    fn bucket_high(bucket: usize) -> u64 {
        if bucket + 1 >= BUCKETS {
            u64::MAX
        } else {
            Self::bucket_low(bucket + 1) - 1
        }
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[Self::bucket_of(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value as u128;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.min = u64::MAX;
        self.max = 0;
        self.sum = 0;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Smallest value recorded.
    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// Largest value recorded.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// Arithmetic mean.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The nearest-rank `q`-quantile (`q` in `[0, 1]`): the value below or at which
    /// `ceil(q · count)` values lie, reported as the midpoint of its bucket (clamped to the
    /// recorded min/max), so within 1/64 of the exact sample value.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = nearest_rank(self.total as usize, q) as u64;
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let low = Self::bucket_low(bucket);
                let high = Self::bucket_high(bucket);
                let mid = low + (high - low) / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// The 1-based nearest rank of quantile `q` among `n` sorted values: `ceil(q·n)`, at least 1.
fn nearest_rank(n: usize, q: f64) -> usize {
    let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
    ((q * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// Nearest-rank `q`-quantile of an ascending `sorted` slice (`None` when empty). Used for
/// small exact samples such as time to first frame per viewer.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[nearest_rank(sorted.len(), q) - 1])
}

/// Sequence numbers remembered for duplicate detection, per track.
const SEQ_WINDOW: u64 = 4096;

/// Receive-side bookkeeping of one RTP stream's sequence numbers: unwraps 16-bit numbers
/// into a monotonic 64-bit space, counts unique and duplicate packets, and how many were
/// expected (`highest − first + 1`), from which loss follows.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    first: Option<u64>,
    highest: u64,
    seen: Box<[u64; (SEQ_WINDOW / 64) as usize]>,
    unique: u64,
    duplicates: u64,
    too_old: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self {
            first: None,
            highest: 0,
            seen: Box::new([0; (SEQ_WINDOW / 64) as usize]),
            unique: 0,
            duplicates: 0,
            too_old: 0,
        }
    }
}

/// What [`SeqTracker::record`] concluded about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// First time this sequence number arrived.
    New,
    /// Already received (a duplicate or a redundant retransmission).
    Duplicate,
    /// Older than the duplicate-detection window: counted, neither new nor duplicate.
    TooOld,
}

impl SeqTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one packet's sequence number.
    pub fn record(&mut self, sequence_number: u16) -> SeqEvent {
        let Some(_) = self.first else {
            // Start high so that reordering just before the first packet stays positive.
            let extended = (1u64 << 32) + sequence_number as u64;
            self.first = Some(extended);
            self.highest = extended;
            self.set(extended);
            self.unique = 1;
            return SeqEvent::New;
        };
        let delta = sequence_number.wrapping_sub(self.highest as u16) as i16 as i64;
        let extended = (self.highest as i64 + delta) as u64;
        if delta > 0 {
            let gap = extended - self.highest;
            if gap >= SEQ_WINDOW {
                self.seen.iter_mut().for_each(|w| *w = 0);
            } else {
                for skipped in self.highest + 1..extended {
                    self.clear(skipped);
                }
            }
            self.highest = extended;
            self.set(extended);
            self.unique += 1;
            return SeqEvent::New;
        }
        if extended + SEQ_WINDOW <= self.highest {
            self.too_old += 1;
            return SeqEvent::TooOld;
        }
        if self.is_set(extended) {
            self.duplicates += 1;
            return SeqEvent::Duplicate;
        }
        self.set(extended);
        self.unique += 1;
        if self.first.is_some_and(|first| extended < first) {
            self.first = Some(extended);
        }
        SeqEvent::New
    }

    fn set(&mut self, extended: u64) {
        let bit = extended % SEQ_WINDOW;
        self.seen[(bit / 64) as usize] |= 1 << (bit % 64);
    }

    fn clear(&mut self, extended: u64) {
        let bit = extended % SEQ_WINDOW;
        self.seen[(bit / 64) as usize] &= !(1 << (bit % 64));
    }

    fn is_set(&self, extended: u64) -> bool {
        let bit = extended % SEQ_WINDOW;
        self.seen[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// Distinct sequence numbers received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Packets received again.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets too old to classify.
    pub fn too_old(&self) -> u64 {
        self.too_old
    }

    /// Highest extended sequence number (0 before the first packet).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Packets expected so far: the span of sequence numbers seen.
    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |first| self.highest - first + 1)
    }

    /// A copy of the counters, for window deltas.
    pub fn mark(&self) -> SeqMark {
        SeqMark {
            unique: self.unique,
            expected: self.expected(),
        }
    }
}

/// [`SeqTracker`] counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqMark {
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Span of sequence numbers seen.
    pub expected: u64,
}

impl SeqMark {
    /// Counters between `earlier` and `self`.
    pub fn since(&self, earlier: &SeqMark) -> SeqMark {
        SeqMark {
            unique: self.unique.saturating_sub(earlier.unique),
            expected: self.expected.saturating_sub(earlier.expected),
        }
    }
}

/// Loss ratio from expected and received counts (0 when nothing was expected; never
/// negative: duplicates and late packets cannot make it so).
pub fn loss_ratio(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        expected.saturating_sub(received) as f64 / expected as f64
    }
}

/// H.264 NAL unit types.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// Whether an H.264 RTP payload carries (part of) an IDR slice.
pub fn h264_carries_idr(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        NAL_IDR => true,
        NAL_FU_A => payload.get(1).is_some_and(|fu| fu & 0x1f == NAL_IDR),
        NAL_STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                rest = &rest[2..];
                if size == 0 || size > rest.len() {
                    return false;
                }
                if rest[0] & 0x1f == NAL_IDR {
                    return true;
                }
                rest = &rest[size..];
            }
            false
        }
        _ => false,
    }
}

/// Whether an H.264 RTP payload can start an access unit a fresh decoder can decode: it
/// carries a sequence parameter set (a single SPS NAL, or a STAP-A holding one), which
/// browsers and our publisher send right before every IDR.
pub fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        NAL_SPS => true,
        NAL_STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                rest = &rest[2..];
                if size == 0 || size > rest.len() {
                    return false;
                }
                if rest[0] & 0x1f == NAL_SPS {
                    return true;
                }
                rest = &rest[size..];
            }
            false
        }
        _ => false,
    }
}

/// Packets of one frame the detector can track.
const FRAME_SPAN: usize = 1024;

/// Finds the first complete H.264 keyframe on a viewer's video track: every packet of one
/// RTP timestamp from a packet that starts a keyframe up to the marker bit, with no gap,
/// and an IDR slice among them. Reordering within the frame is fine.
#[derive(Debug, Clone)]
pub struct FirstFrame {
    timestamp: Option<u32>,
    /// Lowest sequence number of the current frame (relative numbering base).
    low: u16,
    /// Whether the packet at `low` starts a keyframe.
    low_starts: bool,
    /// Received offsets from `low`, as a bitset.
    seen: Vec<u64>,
    received: usize,
    marker_offset: Option<usize>,
    has_idr: bool,
    overflow: bool,
}

impl Default for FirstFrame {
    fn default() -> Self {
        Self {
            timestamp: None,
            low: 0,
            low_starts: false,
            seen: vec![0; FRAME_SPAN / 64],
            received: 0,
            marker_offset: None,
            has_idr: false,
            overflow: false,
        }
    }
}

impl FirstFrame {
    /// A detector that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one video packet; `true` once this packet completes the first keyframe.
    pub fn push(
        &mut self,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> bool {
        if self.timestamp != Some(timestamp) {
            // A new frame: start over (an older frame's late packets restart it too, which
            // only delays the verdict to the next keyframe).
            self.timestamp = Some(timestamp);
            self.low = sequence_number;
            self.low_starts = h264_starts_keyframe(payload);
            self.seen.iter_mut().for_each(|w| *w = 0);
            self.received = 0;
            self.marker_offset = None;
            self.has_idr = false;
            self.overflow = false;
        }
        let delta = sequence_number.wrapping_sub(self.low) as i16;
        if delta < 0 {
            // An earlier packet of the same frame: rebase the bitset on it.
            let shift = (-(delta as i32)) as usize;
            if !self.rebase(shift) {
                self.overflow = true;
                return false;
            }
            self.low = sequence_number;
            self.low_starts = h264_starts_keyframe(payload);
        }
        let offset = sequence_number.wrapping_sub(self.low) as usize;
        if offset >= FRAME_SPAN {
            self.overflow = true;
            return false;
        }
        let (word, bit) = (offset / 64, offset % 64);
        if self.seen[word] & (1 << bit) != 0 {
            return false;
        }
        self.seen[word] |= 1 << bit;
        self.received += 1;
        self.has_idr |= h264_carries_idr(payload);
        if marker {
            self.marker_offset = Some(offset);
        }
        !self.overflow
            && self.low_starts
            && self.has_idr
            && self
                .marker_offset
                .is_some_and(|last| self.received == last + 1)
    }

    /// Shifts the received bitset up by `shift` offsets; `false` if it would not fit.
    fn rebase(&mut self, shift: usize) -> bool {
        let highest = (0..FRAME_SPAN)
            .rev()
            .find(|&i| self.seen[i / 64] & (1 << (i % 64)) != 0);
        if highest.is_some_and(|h| h + shift >= FRAME_SPAN) {
            return false;
        }
        let old = std::mem::replace(&mut self.seen, vec![0; FRAME_SPAN / 64]);
        for i in 0..FRAME_SPAN - shift {
            if old[i / 64] & (1 << (i % 64)) != 0 {
                let j = i + shift;
                self.seen[j / 64] |= 1 << (j % 64);
            }
        }
        if let Some(marker) = self.marker_offset.as_mut() {
            *marker += shift;
        }
        true
    }
}

/// Bytes of a payload's head and tail that [`fingerprint`] reads.
const FINGERPRINT_HEAD: usize = 64;
const FINGERPRINT_TAIL: usize = 32;

/// A 64-bit fingerprint of a payload: its length, first 64 and last 32 bytes, hashed
/// word-at-a-time (multiply–rotate, FxHash-like) with a final avalanche. Not
/// cryptographic, and not every byte: it tells apart the payloads of one test clip, whose
/// collisions are found when the clip is loaded (see [`crate::load::media`]), at a cost
/// that does not grow with the packet size.
pub fn fingerprint(payload: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = payload.len() as u64;
    let mut mix = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    };
    if payload.len() <= FINGERPRINT_HEAD + FINGERPRINT_TAIL {
        mix(payload);
    } else {
        mix(&payload[..FINGERPRINT_HEAD]);
        mix(&payload[payload.len() - FINGERPRINT_TAIL..]);
    }
    // Final avalanche (splitmix64).
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// CPU time of a process from `/proc/PID/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStat {
    /// User-mode ticks (field 14).
    pub utime: u64,
    /// Kernel-mode ticks (field 15).
    pub stime: u64,
}

impl ProcStat {
    /// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses
    /// and may itself contain spaces and parentheses, so fields are counted after the last
    /// `)`.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let after = &text[text.rfind(')')? + 1..];
        // After the name: state (3), ppid (4), … utime is field 14, stime 15.
        let mut fields = after.split_ascii_whitespace();
        let utime = fields.nth(11)?.parse().ok()?;
        let stime = fields.next()?.parse().ok()?;
        Some(ProcStat { utime, stime })
    }

    /// User plus kernel ticks.
    pub fn total(&self) -> u64 {
        self.utime + self.stime
    }
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmRSS:")?;
        let mut parts = rest.split_ascii_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(value),
            Some(_) => None,
        }
    })
}

/// The value of an unlabelled sample `name` in Prometheus text exposition format.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name value [timestamp]`; a longer metric name sharing the prefix is not it.
            if !rest.starts_with([' ', '\t']) {
                return None;
            }
            rest.split_ascii_whitespace().next()?.parse().ok()
        })
}

/// CPU microseconds per packet from a tick delta (`ticks_per_second` from
/// `sysconf(_SC_CLK_TCK)`).
pub fn cpu_us_per_packet(ticks: u64, ticks_per_second: u64, packets: u64) -> Option<f64> {
    (packets > 0 && ticks_per_second > 0)
        .then(|| ticks as f64 * 1e6 / ticks_per_second as f64 / packets as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), Some(50));
        assert_eq!(percentile(&sorted, 0.95), Some(95));
        assert_eq!(percentile(&sorted, 0.99), Some(99));
        assert_eq!(percentile(&sorted, 1.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        // 50 viewers: p95 is the 48th value.
        let fifty: Vec<u64> = (1..=50).map(|v| v * 10).collect();
        assert_eq!(percentile(&fifty, 0.95), Some(480));
    }

    #[test]
    fn histogram_quantiles_are_within_bucket_precision() {
        let mut histogram = Histogram::new();
        let values: Vec<u64> = (0..100_000u64)
            .map(|i| (i * 7919) % 5_000_000 + 1)
            .collect();
        for &v in &values {
            histogram.record(v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in [0.01, 0.5, 0.9, 0.99, 0.999] {
            let exact = percentile(&sorted, q).unwrap() as f64;
            let approx = histogram.quantile(q).unwrap() as f64;
            assert!(
                (approx - exact).abs() / exact < 1.0 / 64.0,
                "q={q}: exact {exact}, histogram {approx}"
            );
        }
        assert_eq!(histogram.count(), 100_000);
        assert_eq!(histogram.max(), sorted.last().copied());
        assert_eq!(histogram.min(), sorted.first().copied());
    }

    #[test]
    fn histogram_small_values_are_exact_and_merge_adds() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..10 {
            a.record(v);
        }
        for v in 10..20 {
            b.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), 20);
        assert_eq!(a.quantile(0.5), Some(9));
        assert_eq!(a.quantile(1.0), Some(19));
        assert_eq!(a.mean(), Some(9.5));
        a.clear();
        assert_eq!(a.quantile(0.5), None);
        // Huge values do not overflow the bucket index.
        a.record(u64::MAX);
        assert_eq!(a.quantile(0.5), Some(u64::MAX));
    }

    #[test]
    fn bucket_bounds_are_consistent() {
        for value in [
            64u64,
            65,
            127,
            128,
            1000,
            123_456_789,
            1 << 40,
            u64::MAX / 3,
        ] {
            let bucket = Histogram::bucket_of(value);
            assert!(Histogram::bucket_low(bucket) <= value, "{value}");
            assert!(Histogram::bucket_high(bucket) >= value, "{value}");
        }
    }

    #[test]
    fn seq_tracker_counts_loss_duplicates_and_wraps() {
        let mut tracker = SeqTracker::new();
        // 65530 … 65535, 0 … 9 with 3 and 5 missing, 7 duplicated, 65534 late.
        for seq in [
            65530u16, 65531, 65532, 65533, 65535, 0, 1, 2, 4, 6, 7, 7, 8, 9,
        ] {
            tracker.record(seq);
        }
        assert_eq!(
            tracker.record(65534),
            SeqEvent::New,
            "late but within the window"
        );
        assert_eq!(tracker.record(65534), SeqEvent::Duplicate);
        assert_eq!(tracker.expected(), 16);
        assert_eq!(tracker.unique(), 14);
        assert_eq!(tracker.duplicates(), 2);
        assert!((loss_ratio(tracker.expected(), tracker.unique()) - 2.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn seq_tracker_window_marks_and_reordering_before_first() {
        let mut tracker = SeqTracker::new();
        tracker.record(100);
        tracker.record(99); // reordered before the first one seen
        assert_eq!(tracker.expected(), 2);
        assert_eq!(tracker.unique(), 2);
        let mark = tracker.mark();
        for seq in 101..=200u16 {
            if seq % 10 != 5 {
                tracker.record(seq);
            }
        }
        let window = tracker.mark().since(&mark);
        assert_eq!(window.expected, 100);
        assert_eq!(window.unique, 90);
        // A jump beyond the window forgets old state without miscounting.
        tracker.record(200u16.wrapping_add(5000));
        assert_eq!(tracker.record(150), SeqEvent::TooOld);
        assert_eq!(loss_ratio(0, 0), 0.0);
        assert_eq!(loss_ratio(10, 12), 0.0);
    }

    /// H.264 payloads: STAP-A with SPS+PPS, FU-A start/middle/end of an IDR, a P slice.
    fn stap_a_sps_pps() -> Vec<u8> {
        vec![24, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]
    }
    fn fu_a(start: bool, end: bool, nal_type: u8) -> Vec<u8> {
        let header = (start as u8) << 7 | (end as u8) << 6 | nal_type;
        vec![0x7c, header, 1, 2, 3]
    }

    #[test]
    fn first_frame_needs_every_packet_of_a_keyframe() {
        let mut detector = FirstFrame::new();
        // A P frame first: never complete.
        assert!(!detector.push(10, 1000, true, &[0x41, 1, 2]));
        // The keyframe: STAP-A, FU-A start, middle, end(marker).
        assert!(!detector.push(11, 4000, false, &stap_a_sps_pps()));
        assert!(!detector.push(12, 4000, false, &fu_a(true, false, 5)));
        assert!(!detector.push(14, 4000, true, &fu_a(false, true, 5)));
        assert!(
            detector.push(13, 4000, false, &fu_a(false, false, 5)),
            "gap filled"
        );
    }

    #[test]
    fn first_frame_rejects_a_keyframe_without_its_start() {
        let mut detector = FirstFrame::new();
        // Joined mid-keyframe: the middle fragment is the lowest packet seen.
        assert!(!detector.push(12, 4000, false, &fu_a(false, false, 5)));
        assert!(!detector.push(13, 4000, true, &fu_a(false, true, 5)));
        // The next keyframe completes, even reordered, with its first packet arriving last.
        assert!(!detector.push(21, 7000, false, &fu_a(true, false, 5)));
        assert!(!detector.push(22, 7000, true, &fu_a(false, true, 5)));
        assert!(detector.push(20, 7000, false, &stap_a_sps_pps()));
    }

    #[test]
    fn first_frame_single_nal_units_across_a_wrap() {
        let mut detector = FirstFrame::new();
        assert!(!detector.push(65534, 9, false, &[0x67, 0x42]));
        assert!(!detector.push(65535, 9, false, &[0x68, 0xce]));
        assert!(detector.push(0, 9, true, &[0x65, 0x88, 0x84]));
        assert!(
            !h264_starts_keyframe(&fu_a(true, false, 5)),
            "no parameter sets"
        );
        assert!(h264_carries_idr(&[0x65]));
        assert!(!h264_carries_idr(&[0x41]));
        assert!(!h264_carries_idr(&[]));
        assert!(h264_carries_idr(&[24, 0, 1, 0x65]));
    }

    #[test]
    fn fingerprints_differ_for_nearby_payloads() {
        let a = vec![0u8; 1100];
        let mut b = a.clone();
        b[1099] = 1;
        let mut c = a.clone();
        c.push(0);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&[]), fingerprint(&[0]));
    }

    #[test]
    fn proc_stat_parses_names_with_spaces_and_parentheses() {
        let text = "1234 (queqiao (x) y) S 1 1234 1234 0 -1 4194560 2800 0 0 0 \
                    1500 250 0 0 20 0 9 0 12345 1000000 5000 18446744073709551615";
        let stat = ProcStat::parse(text).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                utime: 1500,
                stime: 250
            }
        );
        assert_eq!(stat.total(), 1750);
        assert_eq!(ProcStat::parse("garbage"), None);
        assert_eq!(ProcStat::parse("1 (x) S 1"), None);
    }

    #[test]
    fn vm_rss_and_prometheus_parse() {
        let status = "Name:\tqueqiao\nVmPeak:\t  123456 kB\nVmRSS:\t   45678 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status), Some(45678));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
        let metrics = "# HELP queqiao_sfu_rtp_forwarded_total x\n\
                       # TYPE queqiao_sfu_rtp_forwarded_total counter\n\
                       queqiao_sfu_rtp_forwarded_total_extra 5\n\
                       queqiao_sfu_rtp_forwarded_total 123456\n\
                       queqiao_sfu_plis_sent_total 3\n";
        assert_eq!(
            prometheus_value(metrics, "queqiao_sfu_rtp_forwarded_total"),
            Some(123456.0)
        );
        assert_eq!(
            prometheus_value(metrics, "queqiao_sfu_plis_sent_total"),
            Some(3.0)
        );
        assert_eq!(prometheus_value(metrics, "missing"), None);
    }

    #[test]
    fn cpu_per_packet_arithmetic() {
        // 250 ticks at 100 Hz = 2.5 s of CPU over 500k packets = 5 µs each.
        assert_eq!(cpu_us_per_packet(250, 100, 500_000), Some(5.0));
        assert_eq!(cpu_us_per_packet(250, 100, 0), None);
    }
}
