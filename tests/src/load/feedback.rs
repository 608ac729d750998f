//! What a browser's receiver sends back, as sans-IO state machines on a caller's clock.
//!
//! Chromium's receive side (libwebrtc `ReceiveStatistics`, `NackRequester`,
//! `RemoteEstimatorProxy`, the video receive stream's keyframe requests) sends:
//!
//! - a receiver report about once a second per SSRC ([`ReceiveStats`]: RFC 3550 A.3
//!   fraction/cumulative lost, extended highest sequence number, A.8 interarrival jitter,
//!   LSR/DLSR from the last sender report);
//! - NACKs only for sequence numbers really missing after a short reorder wait, repeated at
//!   most [`MAX_NACK_RETRIES`] times one RTT apart, never for what precedes the first packet
//!   received ([`NackScheduler`]);
//! - transport-wide congestion control feedback every ~100 ms when the `transport-cc`
//!   header extension is negotiated ([`TwccRecorder`], draft-holmer-rmcat-transport-wide-cc);
//! - a PLI only when a keyframe is really needed: no decodable start within ~1 s of
//!   joining, or a loss NACK could not repair ([`KeyframeRequester`]).
//!
//! [`ViewerFeedback`] bundles them for one viewer and counts every packet sent by type.
//! Nothing here touches a socket or reads a clock: every call takes `now`.

use crate::load::measure::FirstFrame;
use rtc::rtcp::packet::Packet as RtcpPacket;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, StatusChunkTypeTcc, StatusVectorChunk, SymbolSizeTypeTcc,
    SymbolTypeTcc, TransportLayerCc,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Receiver reports: libwebrtc sends compound RTCP about once a second for video.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Transport-wide feedback interval (libwebrtc's `RemoteEstimatorProxy` default).
pub const TWCC_INTERVAL: Duration = Duration::from_millis(100);
/// How long a hole waits for a reordered packet before it is NACKed.
pub const NACK_REORDER_WAIT: Duration = Duration::from_millis(20);
/// RTT assumed between NACK retries (a receive-only peer measures none without XR).
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// libwebrtc's `kMaxNackRetries`.
pub const MAX_NACK_RETRIES: u8 = 10;
/// libwebrtc's `kMaxNackPackets`: a longer list is cleared and a keyframe requested.
pub const MAX_NACK_LIST: usize = 1000;
/// Holes older than this many sequence numbers are dropped (libwebrtc's `kMaxPacketAge`).
pub const MAX_NACK_AGE: u16 = 10_000;
/// How long a joiner waits for a decodable start before asking for a keyframe.
pub const KEYFRAME_WAIT: Duration = Duration::from_secs(1);
/// Minimum spacing of this viewer's PLIs.
pub const PLI_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// TWCC delta unit, µs.
const TWCC_DELTA_US: i64 = 250;
/// TWCC reference time unit, µs.
const TWCC_REFERENCE_US: i64 = 64_000;

/// Converts an NTP timestamp's middle 32 bits (the LSR field) from a full 64-bit one.
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Per-SSRC receive statistics for receiver reports (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: u32,
    clock_rate: u32,
    /// Extended sequence number of the first packet.
    base: Option<i64>,
    /// Highest extended sequence number.
    max: i64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units, ×16 (RFC 3550 A.8's integer form).
    jitter_q4: u64,
    last_transit: Option<u32>,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiveStats {
    /// Statistics for `ssrc`, whose clock runs at `clock_rate` Hz.
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        Self {
            ssrc,
            clock_rate,
            base: None,
            max: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            last_transit: None,
            last_sr: None,
        }
    }

    /// The SSRC reported on.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Records a packet; `arrival` is measured from any fixed `origin`.
    pub fn on_rtp(&mut self, sequence_number: u16, timestamp: u32, arrival: Duration) {
        let extended = match self.base {
            None => {
                self.base = Some(sequence_number as i64);
                self.max = sequence_number as i64;
                sequence_number as i64
            }
            Some(_) => {
                let delta = sequence_number.wrapping_sub(self.max as u16) as i16 as i64;
                self.max + delta
            }
        };
        if self.base.is_some_and(|base| extended < base) {
            return; // before the first packet: not ours to report
        }
        self.max = self.max.max(extended);
        self.received += 1;
        let arrival_units =
            (arrival.as_micros() as u64 * self.clock_rate as u64 / 1_000_000) as u32;
        let transit = arrival_units.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs() as u64;
            // J += (|D| - J) / 16, kept ×16: J16 += |D| - J16/16 (RFC 3550 A.8).
            self.jitter_q4 = self.jitter_q4 + d - (self.jitter_q4 + 8) / 16;
        }
        self.last_transit = Some(transit);
    }

    /// Records a sender report for this SSRC (its 64-bit NTP time).
    pub fn on_sender_report(&mut self, ntp_time: u64, now: Instant) {
        self.last_sr = Some((ntp_middle(ntp_time), now));
    }

    /// Whether anything was received (nothing to report otherwise).
    pub fn has_data(&self) -> bool {
        self.base.is_some()
    }

    /// The report block for now; moves the interval (fraction lost) forward.
    pub fn report(&mut self, now: Instant) -> ReceptionReport {
        let base = self.base.unwrap_or(self.max);
        let expected = (self.max - base + 1).max(0) as u64;
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        // Cumulative lost is a signed 24-bit field (duplicates can make it negative).
        let total_lost = lost.clamp(-0x80_0000, 0x7f_ffff) as i32 as u32 & 0xff_ffff;
        let (last_sender_report, delay) = match self.last_sr {
            Some((lsr, at)) => {
                let since = now.saturating_duration_since(at);
                (lsr, (since.as_micros() as u64 * 65_536 / 1_000_000) as u32)
            }
            None => (0, 0),
        };
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            total_lost,
            last_sequence_number: self.max as u32,
            jitter: (self.jitter_q4 / 16) as u32,
            last_sender_report,
            delay,
        }
    }
}

/// One sequence number waiting to be received.
#[derive(Debug, Clone, Copy)]
struct Hole {
    sequence_number: u16,
    detected_at: Instant,
    sent_at: Option<Instant>,
    retries: u8,
}

/// What the NACK scheduler asks of its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NackOutcome {
    /// Holes given up after [`MAX_NACK_RETRIES`] or dropped as too old: unrepairable loss.
    pub given_up: u32,
    /// The list overflowed and was cleared: a keyframe is needed.
    pub overflowed: bool,
}

/// NACK generation like libwebrtc's `NackRequester`. See the module docs.
#[derive(Debug, Clone)]
pub struct NackScheduler {
    newest: Option<u16>,
    holes: VecDeque<Hole>,
    reorder_wait: Duration,
    rtt: Duration,
    outcome: NackOutcome,
    /// Packets that filled a hole (reordered or retransmitted).
    recovered: u64,
}

impl Default for NackScheduler {
    fn default() -> Self {
        Self::new(NACK_REORDER_WAIT, DEFAULT_RTT)
    }
}

impl NackScheduler {
    /// A scheduler that waits `reorder_wait` before the first NACK of a hole and `rtt`
    /// between retries.
    pub fn new(reorder_wait: Duration, rtt: Duration) -> Self {
        Self {
            newest: None,
            holes: VecDeque::new(),
            reorder_wait,
            rtt,
            outcome: NackOutcome::default(),
            recovered: 0,
        }
    }

    /// Records a received sequence number.
    pub fn on_packet(&mut self, sequence_number: u16, now: Instant) {
        let Some(newest) = self.newest else {
            // Nothing before the first packet is ever asked for.
            self.newest = Some(sequence_number);
            return;
        };
        let ahead = sequence_number.wrapping_sub(newest) as i16;
        if ahead <= 0 {
            // Older than the newest: a reordered or retransmitted packet, maybe a hole.
            if let Some(position) = self
                .holes
                .iter()
                .position(|h| h.sequence_number == sequence_number)
            {
                self.holes.remove(position);
                self.recovered += 1;
            }
            return;
        }
        let mut missing = newest.wrapping_add(1);
        while missing != sequence_number {
            self.holes.push_back(Hole {
                sequence_number: missing,
                detected_at: now,
                sent_at: None,
                retries: 0,
            });
            missing = missing.wrapping_add(1);
        }
        self.newest = Some(sequence_number);
        // Holes far behind the newest can no longer be useful.
        while self
            .holes
            .front()
            .is_some_and(|h| sequence_number.wrapping_sub(h.sequence_number) > MAX_NACK_AGE)
        {
            self.holes.pop_front();
            self.outcome.given_up += 1;
        }
        if self.holes.len() > MAX_NACK_LIST {
            self.outcome.given_up += self.holes.len() as u32;
            self.holes.clear();
            self.outcome.overflowed = true;
        }
    }

    /// Appends the sequence numbers to NACK now to `out` and marks them sent.
    pub fn poll_due(&mut self, now: Instant, out: &mut Vec<u16>) {
        let (reorder_wait, rtt) = (self.reorder_wait, self.rtt);
        let before = self.holes.len();
        self.holes.retain_mut(|hole| {
            let due = match hole.sent_at {
                None => now >= hole.detected_at + reorder_wait,
                Some(sent) => now >= sent + rtt,
            };
            if !due {
                return true;
            }
            if hole.retries >= MAX_NACK_RETRIES {
                return false;
            }
            hole.retries += 1;
            hole.sent_at = Some(now);
            out.push(hole.sequence_number);
            true
        });
        self.outcome.given_up += (before - self.holes.len()) as u32;
    }

    /// When the next hole becomes due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.holes
            .iter()
            .map(|hole| match hole.sent_at {
                None => hole.detected_at + self.reorder_wait,
                Some(sent) => sent + self.rtt,
            })
            .min()
    }

    /// Takes what happened since the last call.
    pub fn take_outcome(&mut self) -> NackOutcome {
        std::mem::take(&mut self.outcome)
    }

    /// Holes waiting now.
    pub fn pending(&self) -> usize {
        self.holes.len()
    }

    /// Holes filled by a late or retransmitted packet.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }
}

/// Transport-wide sequence numbers and arrival times, turned into TWCC feedback.
#[derive(Debug, Clone, Default)]
pub struct TwccRecorder {
    /// Highest unwrapped transport sequence number so far.
    highest: Option<i64>,
    /// First sequence number not yet reported.
    next_base: Option<i64>,
    /// `(unwrapped sequence number, arrival µs since origin)` not yet reported.
    arrivals: Vec<(i64, i64)>,
    fb_pkt_count: u8,
}

impl TwccRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a packet's transport-wide sequence number and arrival (since any fixed origin).
    pub fn on_packet(&mut self, transport_sequence_number: u16, arrival: Duration) {
        let unwrapped = match self.highest {
            None => transport_sequence_number as i64,
            Some(highest) => {
                highest + transport_sequence_number.wrapping_sub(highest as u16) as i16 as i64
            }
        };
        if self.next_base.is_some_and(|base| unwrapped < base) {
            return; // already reported as lost or received
        }
        self.highest = Some(self.highest.map_or(unwrapped, |h| h.max(unwrapped)));
        self.next_base.get_or_insert(unwrapped);
        self.arrivals.push((unwrapped, arrival.as_micros() as i64));
    }

    /// The feedback for everything since the last one, or `None` if nothing arrived.
    pub fn build(&mut self, sender_ssrc: u32, media_ssrc: u32) -> Option<TransportLayerCc> {
        if self.arrivals.is_empty() {
            return None;
        }
        let base = self.next_base?;
        self.arrivals.sort_unstable();
        self.arrivals.dedup_by_key(|(seq, _)| *seq);
        let highest = self.arrivals.last()?.0;
        let count = (highest - base + 1).min(u16::MAX as i64) as usize;
        let first_arrival = self.arrivals.first()?.1;
        let reference_time = (first_arrival.div_euclid(TWCC_REFERENCE_US)) as u32 & 0xff_ffff;
        let mut previous = (reference_time as i64) * TWCC_REFERENCE_US;
        let mut symbols = Vec::with_capacity(count);
        let mut recv_deltas = Vec::with_capacity(self.arrivals.len());
        let mut arrivals = self.arrivals.iter().peekable();
        for offset in 0..count as i64 {
            let seq = base + offset;
            match arrivals.peek() {
                Some(&&(s, at)) if s == seq => {
                    arrivals.next();
                    // Deltas are in 250 µs units; round the arrival to the grid so the
                    // running sum does not drift.
                    let delta_units = (at - previous).div_euclid(TWCC_DELTA_US);
                    let delta_units = delta_units.clamp(i16::MIN as i64, i16::MAX as i64);
                    previous += delta_units * TWCC_DELTA_US;
                    let symbol = if (0..=255).contains(&delta_units) {
                        SymbolTypeTcc::PacketReceivedSmallDelta
                    } else {
                        SymbolTypeTcc::PacketReceivedLargeDelta
                    };
                    symbols.push(symbol);
                    recv_deltas.push(RecvDelta {
                        type_tcc_packet: symbol,
                        delta: delta_units * TWCC_DELTA_US,
                    });
                }
                _ => symbols.push(SymbolTypeTcc::PacketNotReceived),
            }
        }
        let packet_chunks = symbols
            .chunks(7)
            .map(|chunk| {
                let mut symbol_list = chunk.to_vec();
                symbol_list.resize(7, SymbolTypeTcc::PacketNotReceived);
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                    symbol_size: SymbolSizeTypeTcc::TwoBit,
                    symbol_list,
                })
            })
            .collect();
        let feedback = TransportLayerCc {
            sender_ssrc,
            media_ssrc,
            base_sequence_number: base as u16,
            packet_status_count: count as u16,
            reference_time,
            fb_pkt_count: self.fb_pkt_count,
            packet_chunks,
            recv_deltas,
        };
        self.fb_pkt_count = self.fb_pkt_count.wrapping_add(1);
        self.next_base = Some(base + count as i64);
        self.arrivals.clear();
        Some(feedback)
    }
}

/// Why a keyframe is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Joined at this instant; no decodable start yet.
    Join(Instant),
    /// Lost something NACK could not repair, at this instant.
    Loss(Instant),
}

/// Decides when a viewer sends a PLI. See the module docs.
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    waiting: Option<Waiting>,
    detector: FirstFrame,
    last_pli: Option<Instant>,
}

impl KeyframeRequester {
    /// A viewer that joined at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            waiting: Some(Waiting::Join(now)),
            detector: FirstFrame::new(),
            last_pli: None,
        }
    }

    /// Feeds a video packet (keyframe detection).
    pub fn on_video(&mut self, sequence_number: u16, timestamp: u32, marker: bool, payload: &[u8]) {
        if self.waiting.is_some()
            && self
                .detector
                .push(sequence_number, timestamp, marker, payload)
        {
            self.waiting = None;
        }
    }

    /// NACK gave up on a video packet, or its list overflowed.
    pub fn on_unrepairable_loss(&mut self, now: Instant) {
        if self.waiting.is_none() {
            self.waiting = Some(Waiting::Loss(now));
            self.detector = FirstFrame::new();
        }
    }

    /// Whether a keyframe is still awaited.
    pub fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    fn due_at(&self) -> Option<Instant> {
        let first = match self.waiting? {
            Waiting::Join(at) => at + KEYFRAME_WAIT,
            Waiting::Loss(at) => at,
        };
        Some(match self.last_pli {
            Some(last) => first.max(last + PLI_MIN_INTERVAL),
            None => first,
        })
    }

    /// Returns `true` when a PLI should go out now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.due_at().is_some_and(|at| now >= at) {
            self.last_pli = Some(now);
            true
        } else {
            false
        }
    }

    /// When [`KeyframeRequester::poll`] may next return `true`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due_at()
    }
}

/// RTCP packets one viewer sent, by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackCounts {
    /// Receiver report packets (one per compound, blocks for every SSRC).
    pub receiver_reports: u64,
    /// Generic NACK packets.
    pub nack_packets: u64,
    /// Sequence numbers asked for in them (retries included).
    pub nacked_sequence_numbers: u64,
    /// Sequence numbers asked for within 2 s of the first packet.
    pub nacked_at_join: u64,
    /// Holes filled by a reordered or retransmitted packet.
    pub holes_recovered: u64,
    /// Holes NACK gave up on.
    pub holes_given_up: u64,
    /// Picture loss indications.
    pub plis: u64,
    /// Transport-wide congestion control feedback packets.
    pub twcc: u64,
    /// REMB packets (sent only if negotiated; not implemented, so always 0).
    pub remb: u64,
    /// Compound packets the engine refused to send (should stay 0).
    #[serde(default)]
    pub write_failures: u64,
}

impl FeedbackCounts {
    /// Adds another viewer's counts.
    pub fn add(&mut self, other: &FeedbackCounts) {
        self.receiver_reports += other.receiver_reports;
        self.nack_packets += other.nack_packets;
        self.nacked_sequence_numbers += other.nacked_sequence_numbers;
        self.nacked_at_join += other.nacked_at_join;
        self.holes_recovered += other.holes_recovered;
        self.holes_given_up += other.holes_given_up;
        self.plis += other.plis;
        self.twcc += other.twcc;
        self.remb += other.remb;
        self.write_failures += other.write_failures;
    }
}

/// The join window for [`FeedbackCounts::nacked_at_join`].
const JOIN_WINDOW: Duration = Duration::from_secs(2);

/// A browser-like viewer's feedback for its audio and video streams.
#[derive(Debug)]
pub struct ViewerFeedback {
    sender_ssrc: u32,
    origin: Instant,
    first_packet_at: Option<Instant>,
    /// `[audio, video]`.
    stats: [Option<ReceiveStats>; 2],
    video_nacks: NackScheduler,
    twcc: Option<(u8, TwccRecorder)>,
    keyframes: KeyframeRequester,
    next_report: Instant,
    next_twcc: Instant,
    counts: FeedbackCounts,
    scratch: Vec<u16>,
}

impl ViewerFeedback {
    /// Feedback for a viewer that connected at `now`; `twcc_extension` is the negotiated
    /// id of the transport-cc header extension, if any.
    pub fn new(sender_ssrc: u32, twcc_extension: Option<u8>, now: Instant) -> Self {
        Self {
            sender_ssrc,
            origin: now,
            first_packet_at: None,
            stats: [None, None],
            video_nacks: NackScheduler::default(),
            twcc: twcc_extension.map(|id| (id, TwccRecorder::new())),
            keyframes: KeyframeRequester::new(now),
            next_report: now + REPORT_INTERVAL,
            next_twcc: now + TWCC_INTERVAL,
            counts: FeedbackCounts::default(),
            scratch: Vec::new(),
        }
    }

    /// Records a received RTP packet. Returns `true` if a new hole may have moved the next
    /// deadline earlier (the caller should re-arm its timer).
    pub fn on_rtp(&mut self, video: bool, packet: &rtc::rtp::packet::Packet, now: Instant) -> bool {
        let header = &packet.header;
        self.first_packet_at.get_or_insert(now);
        let arrival = now.saturating_duration_since(self.origin);
        let clock_rate = if video { 90_000 } else { 48_000 };
        let stats = self.stats[video as usize]
            .get_or_insert_with(|| ReceiveStats::new(header.ssrc, clock_rate));
        stats.on_rtp(header.sequence_number, header.timestamp, arrival);
        if let Some((id, recorder)) = self.twcc.as_mut()
            && let Some(value) = header.get_extension(*id)
            && value.len() >= 2
        {
            recorder.on_packet(u16::from_be_bytes([value[0], value[1]]), arrival);
        }
        if !video {
            return false;
        }
        self.keyframes.on_video(
            header.sequence_number,
            header.timestamp,
            header.marker,
            &packet.payload,
        );
        let pending = self.video_nacks.pending();
        self.video_nacks.on_packet(header.sequence_number, now);
        self.video_nacks.pending() > pending
    }

    /// Records a sender report.
    pub fn on_sender_report(&mut self, ssrc: u32, ntp_time: u64, now: Instant) {
        for stats in self.stats.iter_mut().flatten() {
            if stats.ssrc() == ssrc {
                stats.on_sender_report(ntp_time, now);
            }
        }
    }

    /// The next instant [`ViewerFeedback::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self.next_report;
        if self.twcc.is_some() {
            at = at.min(self.next_twcc);
        }
        for other in [
            self.video_nacks.poll_timeout(),
            self.keyframes.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        {
            at = at.min(other);
        }
        at
    }

    /// Everything due at `now`, as RTCP packets to send in one compound.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Box<dyn RtcpPacket>> {
        let mut out: Vec<Box<dyn RtcpPacket>> = Vec::new();
        let video_ssrc = self.stats[1].as_ref().map(|s| s.ssrc());
        // NACKs first: their outcome may make a keyframe necessary.
        self.scratch.clear();
        self.video_nacks.poll_due(now, &mut self.scratch);
        let outcome = self.video_nacks.take_outcome();
        self.counts.holes_given_up += outcome.given_up as u64;
        self.counts.holes_recovered = self.video_nacks.recovered();
        if outcome.given_up > 0 || outcome.overflowed {
            self.keyframes.on_unrepairable_loss(now);
        }
        if let (false, Some(media_ssrc)) = (self.scratch.is_empty(), video_ssrc) {
            self.counts.nack_packets += 1;
            self.counts.nacked_sequence_numbers += self.scratch.len() as u64;
            if self
                .first_packet_at
                .is_some_and(|first| now.saturating_duration_since(first) < JOIN_WINDOW)
            {
                self.counts.nacked_at_join += self.scratch.len() as u64;
            }
            out.push(Box::new(TransportLayerNack {
                sender_ssrc: self.sender_ssrc,
                media_ssrc,
                nacks: nack_pairs_from_sequence_numbers(&self.scratch),
            }));
        }
        if let Some(media_ssrc) = video_ssrc
            && self.keyframes.poll(now)
        {
            self.counts.plis += 1;
            out.push(Box::new(PictureLossIndication {
                sender_ssrc: self.sender_ssrc,
                media_ssrc,
            }));
        }
        if let Some((_, recorder)) = self.twcc.as_mut()
            && now >= self.next_twcc
        {
            self.next_twcc = now + TWCC_INTERVAL;
            let media_ssrc = video_ssrc
                .or_else(|| self.stats[0].as_ref().map(|s| s.ssrc()))
                .unwrap_or(0);
            if let Some(feedback) = recorder.build(self.sender_ssrc, media_ssrc) {
                self.counts.twcc += 1;
                out.push(Box::new(feedback));
            }
        }
        if now >= self.next_report {
            self.next_report = now + REPORT_INTERVAL;
            let reports: Vec<ReceptionReport> = self
                .stats
                .iter_mut()
                .flatten()
                .filter(|s| s.has_data())
                .map(|s| s.report(now))
                .collect();
            if !reports.is_empty() {
                self.counts.receiver_reports += 1;
                // A compound RTCP packet starts with a report (RFC 3550 6.1).
                out.insert(
                    0,
                    Box::new(ReceiverReport {
                        ssrc: self.sender_ssrc,
                        reports,
                        profile_extensions: bytes::Bytes::new(),
                    }),
                );
            }
        }
        out
    }

    /// The engine refused the last compound packet.
    pub fn record_write_failure(&mut self) {
        self.counts.write_failures += 1;
    }

    /// What was sent so far.
    pub fn counts(&self) -> FeedbackCounts {
        self.counts
    }

    /// Whether the viewer still waits for a decodable keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.keyframes.waiting()
    }
}

/// The id of the transport-cc header extension in an SDP answer, if negotiated.
pub fn twcc_extension_id(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        let id = id.split('/').next()?;
        uri.trim()
            .ends_with("transport-wide-cc-extensions-01")
            .then(|| id.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::{Marshal, Unmarshal};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn receiver_report_counts_loss_jitter_and_delay_since_the_sender_report() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new(7, 90_000);
        // 65534, 65535, (0 lost), 1, 2: the extended sequence number wraps into cycle 1.
        for (i, seq) in [65534u16, 65535, 1, 2].into_iter().enumerate() {
            // 3000 ticks apart (33.3 ms) but arriving exactly 40 ms apart: transit grows.
            stats.on_rtp(seq, i as u32 * 3000, ms(40 * i as u64));
        }
        let sr_ntp: u64 = 0x1234_5678_9abc_def0;
        stats.on_sender_report(sr_ntp, t0);
        let report = stats.report(t0 + ms(500));
        assert_eq!(report.ssrc, 7);
        assert_eq!(report.last_sequence_number, 65536 + 2);
        assert_eq!(report.total_lost, 1);
        assert_eq!(report.fraction_lost, 51, "1 of 5 lost, in 1/256");
        assert_eq!(report.last_sender_report, 0x5678_9abc);
        assert_eq!(report.delay, 32_768, "0.5 s in 1/65536 s");
        // Each transit difference is 600 ticks (6.67 ms): J after three = 600·(1-(15/16)³).
        let expected = 600.0 * (1.0 - (15.0f64 / 16.0).powi(3));
        assert!(
            (report.jitter as f64 - expected).abs() <= 2.0,
            "jitter {} vs {expected}",
            report.jitter
        );
        // Nothing new lost in the next interval.
        stats.on_rtp(3, 12_000, ms(160));
        let next = stats.report(t0 + ms(1500));
        assert_eq!((next.fraction_lost, next.total_lost), (0, 1));
        // And the block round-trips through the RTCP wire format.
        let rr = ReceiverReport {
            ssrc: 99,
            reports: vec![next],
            profile_extensions: bytes::Bytes::new(),
        };
        let wire = rr.marshal().unwrap();
        let parsed = ReceiverReport::unmarshal(&mut wire.freeze()).unwrap();
        assert_eq!(parsed.reports[0].last_sequence_number, 65539);
    }

    #[test]
    fn nack_waits_for_reordering_and_never_asks_before_the_first_packet() {
        let t0 = Instant::now();
        let mut nack = NackScheduler::default();
        let mut due = Vec::new();
        nack.on_packet(100, t0);
        // 101 arrives after 102 within the reorder wait: no NACK.
        nack.on_packet(102, t0 + ms(1));
        nack.on_packet(101, t0 + ms(5));
        // Older than the first packet: nothing to ask for, nothing pending.
        nack.on_packet(90, t0 + ms(6));
        nack.poll_due(t0 + ms(100), &mut due);
        assert!(due.is_empty());
        assert_eq!(nack.pending(), 0);
        assert_eq!(nack.recovered(), 1);
        assert_eq!(nack.poll_timeout(), None);
    }

    #[test]
    fn nack_retries_are_spaced_by_rtt_and_bounded() {
        let t0 = Instant::now();
        let mut nack = NackScheduler::new(ms(20), ms(100));
        let mut due = Vec::new();
        nack.on_packet(10, t0);
        nack.on_packet(13, t0); // 11 and 12 missing
        assert_eq!(nack.poll_timeout(), Some(t0 + ms(20)));
        nack.poll_due(t0 + ms(19), &mut due);
        assert!(due.is_empty(), "still inside the reorder wait");
        nack.poll_due(t0 + ms(20), &mut due);
        assert_eq!(due, [11, 12]);
        due.clear();
        nack.poll_due(t0 + ms(60), &mut due);
        assert!(due.is_empty(), "retry waits an RTT");
        // 11 is retransmitted; only 12 is retried.
        nack.on_packet(11, t0 + ms(80));
        nack.poll_due(t0 + ms(120), &mut due);
        assert_eq!(due, [12]);
        let mut now = t0 + ms(120);
        for _ in 0..20 {
            now += ms(100);
            nack.poll_due(now, &mut due);
        }
        assert_eq!(
            due.len(),
            MAX_NACK_RETRIES as usize - 1,
            "12's second to tenth NACKs, then no more"
        );
        assert_eq!(nack.take_outcome().given_up, 1);
        assert_eq!(nack.pending(), 0);
    }

    #[test]
    fn nack_handles_wrap_and_overflow() {
        let t0 = Instant::now();
        let mut nack = NackScheduler::default();
        let mut due = Vec::new();
        nack.on_packet(65534, t0);
        nack.on_packet(1, t0);
        nack.poll_due(t0 + ms(20), &mut due);
        assert_eq!(due, [65535, 0]);
        nack.on_packet(MAX_NACK_LIST as u16 + 3, t0);
        let outcome = nack.take_outcome();
        assert!(outcome.overflowed);
        assert_eq!(nack.pending(), 0);
    }

    #[test]
    fn twcc_feedback_parses_back_with_arrival_deltas_and_losses() {
        let mut twcc = TwccRecorder::new();
        // 65535, 0, (1 lost), 2, and 3 arriving 100 ms later (a large delta).
        let arrivals = [(65535u16, 1_000u64), (0, 1_250), (2, 2_000), (3, 102_000)];
        for (seq, us) in arrivals {
            twcc.on_packet(seq, Duration::from_micros(us));
        }
        let feedback = twcc.build(5, 6).unwrap();
        let wire = feedback.marshal().unwrap();
        let parsed = TransportLayerCc::unmarshal(&mut wire.freeze()).unwrap();
        assert_eq!(parsed.base_sequence_number, 65535);
        assert_eq!(parsed.packet_status_count, 5);
        assert_eq!(parsed.fb_pkt_count, 0);
        assert_eq!((parsed.sender_ssrc, parsed.media_ssrc), (5, 6));
        let deltas: Vec<i64> = parsed.recv_deltas.iter().map(|d| d.delta).collect();
        // Reference time 0 (64 ms units): first delta is the full 1 ms, then 0.25, 0.75, 100.
        assert_eq!(deltas, [1_000, 250, 750, 100_000]);
        assert_eq!(
            parsed.recv_deltas[3].type_tcc_packet,
            SymbolTypeTcc::PacketReceivedLargeDelta
        );
        // The next feedback starts after the last one and counts up.
        twcc.on_packet(4, Duration::from_micros(103_000));
        let next = twcc.build(5, 6).unwrap();
        assert_eq!(
            (next.base_sequence_number, next.packet_status_count),
            (4, 1)
        );
        assert_eq!(next.fb_pkt_count, 1);
        assert!(twcc.build(5, 6).is_none(), "nothing new");
    }

    #[test]
    fn pli_only_without_a_decodable_start_or_after_unrepairable_loss() {
        let t0 = Instant::now();
        let mut keyframes = KeyframeRequester::new(t0);
        assert!(
            !keyframes.poll(t0 + ms(999)),
            "a joiner waits about a second"
        );
        // A complete keyframe (SPS, then the IDR with the marker) arrives: no PLI ever.
        keyframes.on_video(1, 0, false, &[0x67, 0x42]);
        keyframes.on_video(2, 0, true, &[0x65, 0x88]);
        assert!(!keyframes.waiting());
        assert!(!keyframes.poll(t0 + ms(5000)));
        // A loss NACK could not repair: PLI at once, then at most one a second.
        keyframes.on_unrepairable_loss(t0 + ms(6000));
        assert!(keyframes.poll(t0 + ms(6000)));
        assert!(!keyframes.poll(t0 + ms(6500)));
        assert_eq!(keyframes.poll_timeout(), Some(t0 + ms(7000)));
        keyframes.on_video(50, 9000, false, &[0x67, 0x42]);
        keyframes.on_video(51, 9000, true, &[0x65, 0x88]);
        assert!(!keyframes.poll(t0 + ms(8000)));

        let mut late = KeyframeRequester::new(t0);
        late.on_video(1, 0, true, &[0x41, 0x9a]); // a P frame: not decodable
        assert!(late.poll(t0 + ms(1000)));
    }

    #[test]
    fn viewer_feedback_counts_what_it_sends() {
        let t0 = Instant::now();
        let mut feedback = ViewerFeedback::new(42, None, t0);
        let packet = |seq: u16, payload: &'static [u8]| rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                sequence_number: seq,
                timestamp: 0,
                ssrc: 9,
                marker: true,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(payload),
        };
        assert!(!feedback.on_rtp(true, &packet(1, &[0x65]), t0));
        assert!(feedback.on_rtp(true, &packet(4, &[0x41]), t0), "a hole");
        let out = feedback.handle_timeout(t0 + ms(20));
        assert_eq!(out.len(), 1);
        let nack = out[0]
            .as_any()
            .downcast_ref::<TransportLayerNack>()
            .unwrap();
        assert_eq!(nack.media_ssrc, 9);
        assert_eq!(nack.nacks[0].packet_list(), [2, 3]);
        let out = feedback.handle_timeout(t0 + REPORT_INTERVAL);
        assert!(out[0].as_any().downcast_ref::<ReceiverReport>().is_some());
        let counts = feedback.counts();
        assert_eq!(
            (counts.nack_packets, counts.nacked_sequence_numbers),
            (2, 4),
            "the first NACK and one retry an RTT later"
        );
        // No SPS ever came, so nothing was decodable a second after joining: one PLI.
        assert_eq!((counts.receiver_reports, counts.plis), (1, 1));
        assert_eq!(counts.nacked_at_join, 4);
    }

    #[test]
    fn finds_the_transport_cc_extension_in_an_answer() {
        let sdp = "v=0\r\na=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
                   a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        assert_eq!(twcc_extension_id(sdp), Some(5));
        assert_eq!(twcc_extension_id("v=0\r\n"), None);
    }
}
