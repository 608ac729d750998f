//! RFC 6184 H.264 depacketization: RTP payloads → access units.
//!
//! Packets go through a small [`ReorderBuffer`], then single NAL unit, STAP-A (24) and
//! FU-A (28) payloads are unpacked (non-interleaved mode, what browsers send with
//! `packetization-mode=1`). NAL units are grouped into access units by RTP timestamp; the
//! marker bit closes one early. Any loss drops the damaged frame and everything after it
//! until the next IDR, and raises a keyframe request for the caller to route to the SFU's
//! PLI coalescer. Parameter sets are tracked and parsed with `h264-reader`; a change is
//! flagged on the next frame.
//!
//! Every input is untrusted: sizes are bounded, nothing is indexed without a check and
//! the fuzz target in `bridge/fuzz` drives this type with arbitrary packets.

use crate::error::BridgeError;
use crate::media_unit::H264Params;
use crate::reorder::{PushOutcome, ReorderBuffer, ReorderConfig, Reordered};
use bytes::{Bytes, BytesMut};
use sfu::media::{Codec, SourcePacket};
use std::sync::Arc;
use std::time::Instant;

const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_STAP_A: u8 = 24;
const NAL_STAP_B: u8 = 25;
const NAL_MTAP16: u8 = 26;
const NAL_MTAP24: u8 = 27;
const NAL_FU_A: u8 = 28;
const NAL_FU_B: u8 = 29;

/// Depacketizer limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepacketizerConfig {
    /// The reorder buffer in front of the depacketizer.
    pub reorder: ReorderConfig,
    /// Largest access unit accepted, in bytes; larger ones are dropped as corrupt.
    pub max_frame_bytes: usize,
    /// Most NAL units accepted in one access unit.
    pub max_nalus_per_frame: usize,
}

impl Default for DepacketizerConfig {
    fn default() -> Self {
        DepacketizerConfig {
            reorder: ReorderConfig::default(),
            max_frame_bytes: 4 * 1024 * 1024,
            max_nalus_per_frame: 256,
        }
    }
}

/// One depacketized access unit, still on the publisher's RTP clock.
#[derive(Debug, Clone)]
pub struct H264Frame {
    /// The RTP timestamp shared by the frame's packets (90 kHz, not unwrapped).
    pub rtp_timestamp: u32,
    /// When the frame's first packet arrived.
    pub received_at: Instant,
    /// An IDR picture.
    pub keyframe: bool,
    /// The frame's NAL units (SEI and slices; no SPS/PPS/AUD/filler), no start codes.
    pub nalus: Vec<Bytes>,
    /// The parameter sets in force.
    pub params: Arc<H264Params>,
    /// The parameter sets differ from the previous frame's (also `true` on the first
    /// frame).
    pub params_changed: bool,
}

/// Counters, one per reason a packet or frame did not come out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Packets pushed.
    pub packets: u64,
    /// Packets that arrived after their slot was released (dropped).
    pub late_packets: u64,
    /// Packets already buffered (dropped).
    pub duplicate_packets: u64,
    /// Packets given up on by the reorder buffer.
    pub lost_packets: u64,
    /// Sequence-number jumps that restarted the reorder buffer.
    pub sequence_restarts: u64,
    /// Frames emitted.
    pub frames: u64,
    /// Keyframes emitted.
    pub keyframes: u64,
    /// Frames dropped because of a loss, a malformed payload or a size limit.
    pub frames_dropped_corrupt: u64,
    /// Intact frames dropped while waiting for an IDR after a loss.
    pub frames_dropped_waiting_for_idr: u64,
    /// Frames dropped because no valid SPS/PPS was known.
    pub frames_dropped_no_parameter_sets: u64,
    /// Payloads that could not be parsed (truncated STAP-A, FU-A without start …).
    pub malformed_payloads: u64,
    /// STAP-B, MTAP and FU-B payloads (interleaved mode, never sent by browsers).
    pub unsupported_payloads: u64,
    /// Parameter-set changes (including the first).
    pub parameter_set_changes: u64,
    /// SPS/PPS pairs that failed to parse.
    pub invalid_parameter_sets: u64,
    /// Keyframe requests raised.
    pub keyframe_requests: u64,
}

struct FrameAssembly {
    timestamp: u32,
    received_at: Instant,
    nalus: Vec<Bytes>,
    bytes: usize,
    corrupt: bool,
}

/// RTP → H.264 access units; see the module doc.
pub struct H264Depacketizer {
    config: DepacketizerConfig,
    reorder: ReorderBuffer<Arc<SourcePacket>>,
    current: Option<FrameAssembly>,
    fragment: Option<BytesMut>,
    waiting_for_idr: bool,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    params: Option<Arc<H264Params>>,
    parameter_sets_dirty: bool,
    params_changed_pending: bool,
    keyframe_request: bool,
    stats: DepacketizerStats,
}

impl std::fmt::Debug for H264Depacketizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Depacketizer")
            .field("waiting_for_idr", &self.waiting_for_idr)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new(DepacketizerConfig::default())
    }
}

impl H264Depacketizer {
    /// A depacketizer waiting for its first IDR.
    pub fn new(config: DepacketizerConfig) -> Self {
        H264Depacketizer {
            config,
            reorder: ReorderBuffer::new(config.reorder),
            current: None,
            fragment: None,
            waiting_for_idr: true,
            sps: None,
            pps: None,
            params: None,
            parameter_sets_dirty: false,
            params_changed_pending: false,
            keyframe_request: false,
            stats: DepacketizerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &DepacketizerStats {
        &self.stats
    }

    /// The parameter sets in force, once known.
    pub fn params(&self) -> Option<&Arc<H264Params>> {
        self.params.as_ref()
    }

    /// Whether a keyframe is needed (loss, or no IDR yet) since the last call; clears the
    /// flag. The caller routes it to the publisher's PLI coalescer.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    /// Adds one RTP packet and appends any completed frames to `out`.
    ///
    /// Fails only for a packet of another codec (VP8 cannot be bridged).
    pub fn push(
        &mut self,
        packet: Arc<SourcePacket>,
        now: Instant,
        out: &mut Vec<H264Frame>,
    ) -> Result<(), BridgeError> {
        if packet.codec != Codec::H264 {
            return Err(BridgeError::UnsupportedVideoCodec(packet.codec));
        }
        self.stats.packets += 1;
        match self
            .reorder
            .push(packet.sequence_number, Arc::clone(&packet), now)
        {
            PushOutcome::Accepted => {}
            PushOutcome::Restarted => self.stats.sequence_restarts += 1,
            PushOutcome::Duplicate => self.stats.duplicate_packets += 1,
            PushOutcome::Late => self.stats.late_packets += 1,
        }
        self.drain(now, out);
        Ok(())
    }

    /// Releases packets whose reorder wait has expired; call at [`Self::poll_timeout`].
    pub fn poll(&mut self, now: Instant, out: &mut Vec<H264Frame>) {
        self.drain(now, out);
    }

    /// When [`Self::poll`] has work without a new packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reorder.poll_timeout()
    }

    /// End of stream: releases everything buffered and emits a last frame that lacked its
    /// marker bit, if intact.
    pub fn flush(&mut self, now: Instant, out: &mut Vec<H264Frame>) {
        self.reorder.flush();
        self.drain(now, out);
        self.finish_frame(out);
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<H264Frame>) {
        while let Some(released) = self.reorder.pop(now) {
            match released {
                Reordered::Packet(packet) => self.process(&packet, out),
                Reordered::Lost(count) => self.on_loss(count),
            }
        }
    }

    fn on_loss(&mut self, count: u64) {
        self.stats.lost_packets += count;
        if let Some(frame) = self.current.as_mut() {
            frame.corrupt = true;
        }
        // The lost packets may have been a whole frame: nothing is decodable until an IDR.
        self.enter_wait_for_idr();
    }

    fn enter_wait_for_idr(&mut self) {
        self.waiting_for_idr = true;
        self.request_keyframe();
    }

    fn request_keyframe(&mut self) {
        self.keyframe_request = true;
        self.stats.keyframe_requests += 1;
    }

    fn process(&mut self, packet: &SourcePacket, out: &mut Vec<H264Frame>) {
        let payload = &packet.payload;
        if payload.is_empty() {
            // Padding-only packets (bandwidth probes) carry no media and often another
            // timestamp; they must not end the frame in progress.
            return;
        }
        if self
            .current
            .as_ref()
            .is_some_and(|frame| frame.timestamp != packet.timestamp)
        {
            // The previous frame lost its marker bit (or its last packets).
            self.finish_frame(out);
        }
        if self.current.is_none() {
            self.current = Some(FrameAssembly {
                timestamp: packet.timestamp,
                received_at: packet.received_at,
                nalus: Vec::new(),
                bytes: 0,
                corrupt: false,
            });
        }
        self.parse_payload(payload);
        if packet.marker {
            self.finish_frame(out);
        }
    }

    fn parse_payload(&mut self, payload: &Bytes) {
        let nal_type = payload[0] & 0x1F;
        match nal_type {
            1..=23 => {
                if self.fragment.take().is_some() {
                    // An FU-A never finished.
                    self.mark_malformed();
                }
                self.add_nalu(payload.clone());
            }
            NAL_STAP_A => {
                let mut offset = 1;
                while offset < payload.len() {
                    if offset + 2 > payload.len() {
                        self.mark_malformed();
                        return;
                    }
                    let size =
                        usize::from(u16::from_be_bytes([payload[offset], payload[offset + 1]]));
                    offset += 2;
                    if size == 0 || offset + size > payload.len() {
                        self.mark_malformed();
                        return;
                    }
                    self.add_nalu(payload.slice(offset..offset + size));
                    offset += size;
                }
            }
            NAL_FU_A => self.parse_fu_a(payload),
            NAL_STAP_B | NAL_MTAP16 | NAL_MTAP24 | NAL_FU_B => {
                self.stats.unsupported_payloads += 1;
                self.mark_corrupt();
            }
            // 0, 30, 31: unspecified; ignore the packet.
            _ => self.stats.malformed_payloads += 1,
        }
    }

    fn parse_fu_a(&mut self, payload: &Bytes) {
        if payload.len() < 3 {
            self.mark_malformed();
            return;
        }
        let indicator = payload[0];
        let header = payload[1];
        let start = header & 0x80 != 0;
        let end = header & 0x40 != 0;
        let data = &payload[2..];
        if start {
            if self.fragment.is_some() {
                self.mark_malformed();
            }
            let mut fragment = BytesMut::with_capacity(data.len() * 8 + 1);
            fragment.extend_from_slice(&[(indicator & 0xE0) | (header & 0x1F)]);
            self.fragment = Some(fragment);
        }
        let Some(fragment) = self.fragment.as_mut() else {
            // A middle or end fragment whose start we never saw.
            self.mark_malformed();
            return;
        };
        if fragment.len() + data.len() > self.config.max_frame_bytes {
            self.fragment = None;
            self.mark_corrupt();
            return;
        }
        fragment.extend_from_slice(data);
        if end && let Some(fragment) = self.fragment.take() {
            self.add_nalu(fragment.freeze());
        }
    }

    fn mark_malformed(&mut self) {
        self.stats.malformed_payloads += 1;
        self.mark_corrupt();
    }

    fn mark_corrupt(&mut self) {
        if let Some(frame) = self.current.as_mut() {
            frame.corrupt = true;
            frame.nalus.clear();
            frame.bytes = 0;
        }
    }

    fn add_nalu(&mut self, nalu: Bytes) {
        let limit_frame_bytes = self.config.max_frame_bytes;
        let limit_nalus = self.config.max_nalus_per_frame;
        let Some(frame) = self.current.as_mut() else {
            return;
        };
        if frame.corrupt || nalu.is_empty() {
            return;
        }
        if frame.nalus.len() >= limit_nalus || frame.bytes + nalu.len() > limit_frame_bytes {
            self.mark_corrupt();
            return;
        }
        frame.bytes += nalu.len();
        frame.nalus.push(nalu);
    }

    fn finish_frame(&mut self, out: &mut Vec<H264Frame>) {
        let Some(mut frame) = self.current.take() else {
            return;
        };
        if self.fragment.take().is_some() {
            frame.corrupt = true;
        }
        if frame.corrupt {
            self.stats.frames_dropped_corrupt += 1;
            self.enter_wait_for_idr();
            return;
        }

        let mut keyframe = false;
        let mut has_slice = false;
        let mut nalus = Vec::with_capacity(frame.nalus.len());
        for nalu in frame.nalus.drain(..) {
            match nalu[0] & 0x1F {
                NAL_SPS if self.sps.as_ref() != Some(&nalu) => {
                    self.sps = Some(nalu);
                    self.parameter_sets_dirty = true;
                }
                NAL_PPS if self.pps.as_ref() != Some(&nalu) => {
                    self.pps = Some(nalu);
                    self.parameter_sets_dirty = true;
                }
                NAL_IDR => {
                    keyframe = true;
                    has_slice = true;
                    nalus.push(nalu);
                }
                NAL_SLICE..=4 => {
                    has_slice = true;
                    nalus.push(nalu);
                }
                NAL_SEI => nalus.push(nalu),
                // AUD, filler, end of sequence/stream, extensions: not forwarded.
                _ => {}
            }
        }

        if self.parameter_sets_dirty
            && let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
        {
            self.parameter_sets_dirty = false;
            match H264Params::from_parameter_sets(sps.clone(), pps.clone()) {
                Ok(params) => {
                    if self.params.as_deref() != Some(&params) {
                        self.params = Some(Arc::new(params));
                        self.params_changed_pending = true;
                        self.stats.parameter_set_changes += 1;
                    }
                }
                Err(_) => {
                    self.stats.invalid_parameter_sets += 1;
                    self.params = None;
                }
            }
        }

        if !has_slice {
            // Parameter sets or SEI alone (some encoders send them as a separate unit).
            return;
        }
        let Some(params) = self.params.clone() else {
            self.stats.frames_dropped_no_parameter_sets += 1;
            self.enter_wait_for_idr();
            return;
        };
        if self.waiting_for_idr {
            if !keyframe {
                self.stats.frames_dropped_waiting_for_idr += 1;
                // Ask again: the coalescer upstream rate-limits, and a lost PLI must not
                // leave the bridge waiting forever.
                self.request_keyframe();
                return;
            }
            self.waiting_for_idr = false;
        }

        self.stats.frames += 1;
        if keyframe {
            self.stats.keyframes += 1;
        }
        out.push(H264Frame {
            rtp_timestamp: frame.timestamp,
            received_at: frame.received_at,
            keyframe,
            nalus,
            params,
            params_changed: std::mem::take(&mut self.params_changed_pending),
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media_unit::test_support::{PPS, SPS_320X180, SPS_640X360};
    use std::time::Duration;

    pub(crate) fn packet(
        seq: u16,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
        at: Instant,
    ) -> Arc<SourcePacket> {
        Arc::new(SourcePacket {
            codec: Codec::H264,
            epoch: 1,
            sequence_number: seq,
            timestamp: ts,
            marker,
            keyframe: false,
            frame_start: false,
            video_orientation: None,
            received_at: at,
            payload: Bytes::from(payload),
        })
    }

    fn stap_a(nalus: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nalu in nalus {
            out.extend_from_slice(&(nalu.len() as u16).to_be_bytes());
            out.extend_from_slice(nalu);
        }
        out
    }

    fn fu_a(nalu: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let header = nalu[0];
        let body = &nalu[1..];
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        chunks
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let mut fu_header = header & 0x1F;
                if i == 0 {
                    fu_header |= 0x80;
                }
                if i == chunks.len() - 1 {
                    fu_header |= 0x40;
                }
                let mut out = vec![(header & 0xE0) | NAL_FU_A, fu_header];
                out.extend_from_slice(data);
                out
            })
            .collect()
    }

    fn idr(len: usize) -> Vec<u8> {
        let mut nalu = vec![0x65];
        nalu.extend((0..len).map(|i| (i % 251) as u8 | 1));
        nalu
    }

    fn slice(len: usize) -> Vec<u8> {
        let mut nalu = vec![0x41];
        nalu.extend((0..len).map(|i| (i % 13) as u8 + 1));
        nalu
    }

    /// Packets of one keyframe: STAP-A(SPS, PPS) then the IDR in FU-A fragments.
    fn keyframe_packets(seq: &mut u16, ts: u32, sps: &[u8], at: Instant) -> Vec<Arc<SourcePacket>> {
        let mut packets = vec![packet(*seq, ts, false, stap_a(&[sps, PPS]), at)];
        *seq = seq.wrapping_add(1);
        let fragments = fu_a(&idr(3000), 1000);
        let count = fragments.len();
        for (i, fragment) in fragments.into_iter().enumerate() {
            packets.push(packet(*seq, ts, i == count - 1, fragment, at));
            *seq = seq.wrapping_add(1);
        }
        packets
    }

    fn run(
        depacketizer: &mut H264Depacketizer,
        packets: Vec<Arc<SourcePacket>>,
        now: Instant,
    ) -> Vec<H264Frame> {
        let mut out = Vec::new();
        for packet in packets {
            depacketizer.push(packet, now, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn keyframe_from_stap_a_and_fu_a() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let mut seq = 100;
        let frames = run(
            &mut depacketizer,
            keyframe_packets(&mut seq, 9000, SPS_640X360, now),
            now,
        );
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert!(frame.keyframe && frame.params_changed);
        assert_eq!(frame.rtp_timestamp, 9000);
        assert_eq!(frame.nalus.len(), 1, "SPS/PPS moved to params");
        assert_eq!(&frame.nalus[0][..], &idr(3000)[..]);
        assert_eq!((frame.params.width, frame.params.height), (640, 360));
        assert!(!depacketizer.take_keyframe_request());

        // A P-frame as a single NAL unit packet.
        let frames = run(
            &mut depacketizer,
            vec![packet(seq, 12000, true, slice(500), now)],
            now,
        );
        assert_eq!(frames.len(), 1);
        assert!(!frames[0].keyframe && !frames[0].params_changed);
        assert!(Arc::ptr_eq(
            &frames[0].params,
            &depacketizer.params().unwrap().clone()
        ));
    }

    #[test]
    fn waits_for_idr_at_start_and_requests_one() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let frames = run(
            &mut depacketizer,
            vec![packet(1, 3000, true, slice(100), now)],
            now,
        );
        assert!(frames.is_empty());
        assert!(depacketizer.take_keyframe_request());
        assert_eq!(depacketizer.stats().frames_dropped_no_parameter_sets, 1);
    }

    #[test]
    fn loss_drops_until_next_idr() {
        let start = Instant::now();
        let mut depacketizer = H264Depacketizer::new(DepacketizerConfig {
            reorder: ReorderConfig {
                capacity: 8,
                max_delay: Duration::from_millis(50),
            },
            ..DepacketizerConfig::default()
        });
        let mut seq = 0;
        let mut out = run(
            &mut depacketizer,
            keyframe_packets(&mut seq, 0, SPS_640X360, start),
            start,
        );
        assert_eq!(out.len(), 1);
        // Frame at 3000 is lost entirely (seq skipped), frame at 6000 arrives.
        seq += 1;
        out.clear();
        depacketizer
            .push(packet(seq, 6000, true, slice(100), start), start, &mut out)
            .unwrap();
        seq += 1;
        assert!(out.is_empty(), "held back by the reorder buffer");
        depacketizer.poll(start + Duration::from_millis(60), &mut out);
        assert!(out.is_empty(), "dropped: no IDR since the loss");
        assert!(depacketizer.take_keyframe_request());
        assert_eq!(depacketizer.stats().lost_packets, 1);
        // More P-frames are dropped, then an IDR recovers.
        let later = start + Duration::from_millis(100);
        depacketizer
            .push(packet(seq, 9000, true, slice(100), later), later, &mut out)
            .unwrap();
        seq += 1;
        assert!(out.is_empty());
        let frames = run(
            &mut depacketizer,
            keyframe_packets(&mut seq, 12000, SPS_640X360, later),
            later,
        );
        assert_eq!(frames.len(), 1);
        assert!(frames[0].keyframe);
        assert!(!frames[0].params_changed, "same SPS");
        assert_eq!(depacketizer.stats().frames_dropped_waiting_for_idr, 2);
    }

    #[test]
    fn reordered_fragments_reassemble() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let mut seq = 65530;
        let mut packets = keyframe_packets(&mut seq, 0, SPS_640X360, now);
        // The first packet defines where the stream starts; reorder the rest.
        packets.swap(1, 3);
        packets.swap(2, 3);
        let frames = run(&mut depacketizer, packets, now);
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].nalus[0][..], &idr(3000)[..]);
    }

    #[test]
    fn missing_marker_closes_frame_on_timestamp_change() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let mut seq = 0;
        let mut packets = keyframe_packets(&mut seq, 0, SPS_640X360, now);
        let last = packets.len() - 1;
        let unmarked = packet(
            packets[last].sequence_number,
            0,
            false,
            packets[last].payload.to_vec(),
            now,
        );
        packets[last] = unmarked;
        packets.push(packet(seq, 3000, true, slice(10), now));
        let frames = run(&mut depacketizer, packets, now);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].keyframe);
        assert_eq!(frames[1].rtp_timestamp, 3000);
    }

    #[test]
    fn sps_change_yields_new_params() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let mut seq = 0;
        let first = run(
            &mut depacketizer,
            keyframe_packets(&mut seq, 0, SPS_640X360, now),
            now,
        );
        let second = run(
            &mut depacketizer,
            keyframe_packets(&mut seq, 3000, SPS_320X180, now),
            now,
        );
        assert!(first[0].params_changed && second[0].params_changed);
        assert_eq!(
            (second[0].params.width, second[0].params.height),
            (320, 180)
        );
        assert_eq!(depacketizer.stats().parameter_set_changes, 2);
    }

    #[test]
    fn malformed_payloads_never_panic() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let payloads: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x00],
            vec![NAL_STAP_A],
            vec![NAL_STAP_A, 0x00],
            vec![NAL_STAP_A, 0x00, 0x05, 0x67],
            vec![NAL_STAP_A, 0x00, 0x00],
            vec![NAL_FU_A],
            vec![NAL_FU_A, 0x85],
            vec![NAL_FU_A, 0x45, 1, 2],
            vec![NAL_FU_B, 0x85, 1, 2, 3],
            vec![0x67, 0xff],
            vec![0x68],
            vec![0x65],
            vec![0xff; 4],
        ];
        let mut out = Vec::new();
        for (i, payload) in payloads.into_iter().enumerate() {
            depacketizer
                .push(
                    packet(i as u16, i as u32 * 3000, i % 2 == 0, payload, now),
                    now,
                    &mut out,
                )
                .unwrap();
        }
        depacketizer.flush(now, &mut out);
        assert!(out.is_empty());
        assert!(depacketizer.stats().malformed_payloads > 0);
    }

    #[test]
    fn vp8_is_rejected() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let mut vp8 = (*packet(0, 0, true, vec![0x10, 0, 0], now)).clone();
        vp8.codec = Codec::Vp8;
        let err = depacketizer
            .push(Arc::new(vp8), now, &mut Vec::new())
            .unwrap_err();
        assert!(matches!(
            err,
            BridgeError::UnsupportedVideoCodec(Codec::Vp8)
        ));
    }

    #[test]
    fn oversized_frames_are_dropped() {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::new(DepacketizerConfig {
            max_frame_bytes: 2000,
            ..Default::default()
        });
        let mut seq = 0;
        let frames = run(
            &mut depacketizer,
            keyframe_packets(&mut seq, 0, SPS_640X360, now),
            now,
        );
        assert!(frames.is_empty());
        assert_eq!(depacketizer.stats().frames_dropped_corrupt, 1);
    }
}
