//! RFC 6184 H.264 packetization (packetization-mode 1, non-interleaved) of AVCC access
//! units, as an RTMP publisher sends them in FLV `AVC NALU` packets.
//!
//! - The AVCDecoderConfigurationRecord (FLV AVC sequence header) gives the parameter sets
//!   and the size of the NAL length fields ([`H264Packetizer::set_decoder_config`]).
//! - Every IDR access unit, and every access unit that carries in-band parameter sets, is
//!   preceded by one STAP-A with all known SPS and PPS (WebRTC decoders need them in band;
//!   a viewer joining on this IDR has seen nothing before it).
//! - A NAL unit that fits the maximum payload goes as a single NAL unit packet, a larger
//!   one as FU-A fragments of (nearly) equal size, with the start/end bits set and the
//!   NRI kept in the FU indicator.
//! - Only slices (types 1–5) are sent: access unit delimiters, filler data, SEI, end of
//!   sequence/stream and extensions are dropped; in-band SPS/PPS update the stored sets
//!   (by their ids) and go out in the STAP-A.
//!
//! All payloads of one access unit are written into one [`BytesMut`] and split off, so a
//! packetized access unit costs one allocation, whatever its packet count. Every input is
//! untrusted: lengths are checked, nothing is indexed without a bound, nothing panics.

use crate::error::BridgeError;
use bytes::{BufMut, Bytes, BytesMut};

/// The default largest RTP payload: 1200 bytes keeps a packet with RTP header, header
/// extensions and SRTP tag under any sane path MTU (what libwebrtc uses).
pub const DEFAULT_MAX_PAYLOAD: usize = 1200;

/// The smallest maximum payload accepted (an FU-A needs 2 header bytes and some data).
const MIN_MAX_PAYLOAD: usize = 16;

/// NAL unit types used here (ITU-T H.264 table 7-1, RFC 6184 table 1).
pub(crate) mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Single-time aggregation packet (RFC 6184).
    pub const STAP_A: u8 = 24;
    /// Fragmentation unit A (RFC 6184).
    pub const FU_A: u8 = 28;
}

/// Most SPS (ids 0–31) and PPS (ids 0–255) kept; more is a malformed stream.
const MAX_SPS: usize = 32;
const MAX_PPS: usize = 256;

/// One RTP payload of an access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPayload {
    /// The RTP payload (single NAL unit, STAP-A or FU-A).
    pub payload: Bytes,
    /// The RTP marker bit: set on the last packet of the access unit.
    pub marker: bool,
}

/// What [`H264Packetizer::inspect`] found in an access unit, before packetizing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessUnitInfo {
    /// The access unit has an IDR slice.
    pub idr: bool,
    /// Number of slice NAL units (types 1–5).
    pub slices: usize,
    /// The highest `nal_ref_idc` of its slices (0: nothing references this picture).
    pub max_slice_nal_ref_idc: u8,
    /// The `slice_type` of the first slice (0–9; 1 and 6 are B), if it could be read.
    pub first_slice_type: Option<u8>,
    /// The access unit carries an SPS or PPS in band.
    pub in_band_parameter_sets: bool,
}

impl AccessUnitInfo {
    /// Whether the first slice is a B slice (`slice_type` 1 or 6).
    pub fn is_b_slice(&self) -> bool {
        matches!(self.first_slice_type, Some(1 | 6))
    }
}

/// Counters of the packetizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketizerStats {
    /// Access units packetized.
    pub access_units: u64,
    /// RTP payloads produced.
    pub payloads: u64,
    /// STAP-As with parameter sets sent.
    pub parameter_set_packets: u64,
    /// NAL units dropped as not needed by WebRTC viewers (AUD, filler, SEI …).
    pub nalus_dropped: u64,
    /// Changes of the parameter sets (sequence header or in band), the first included.
    pub parameter_set_changes: u64,
}

/// AVCC access units → RFC 6184 payloads; see the module doc.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    max_payload: usize,
    /// Bytes of each NAL length prefix (1, 2, 3 or 4; 4 until a config says otherwise).
    nal_length_size: usize,
    /// SPS by `seq_parameter_set_id`, in the order first seen.
    sps: Vec<(u32, Bytes)>,
    /// PPS by `pic_parameter_set_id`, in the order first seen.
    pps: Vec<(u32, Bytes)>,
    stats: PacketizerStats,
}

impl Default for H264Packetizer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl H264Packetizer {
    /// A packetizer whose payloads are at most `max_payload` bytes (clamped to at least
    /// 16), with no parameter sets yet.
    pub fn new(max_payload: usize) -> Self {
        H264Packetizer {
            max_payload: max_payload.max(MIN_MAX_PAYLOAD),
            nal_length_size: 4,
            sps: Vec::new(),
            pps: Vec::new(),
            stats: PacketizerStats::default(),
        }
    }

    /// The largest payload produced.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Bytes of each NAL length prefix in access units (from the decoder config).
    pub fn nal_length_size(&self) -> usize {
        self.nal_length_size
    }

    /// Counters so far.
    pub fn stats(&self) -> &PacketizerStats {
        &self.stats
    }

    /// Whether at least one SPS and one PPS are known.
    pub fn has_parameter_sets(&self) -> bool {
        !self.sps.is_empty() && !self.pps.is_empty()
    }

    /// The first SPS (NAL header included), once known. Compare it to notice a change of
    /// resolution or profile.
    pub fn sps(&self) -> Option<&Bytes> {
        self.sps.first().map(|(_, sps)| sps)
    }

    /// The first PPS (NAL header included), once known.
    pub fn pps(&self) -> Option<&Bytes> {
        self.pps.first().map(|(_, pps)| pps)
    }

    /// The SDP `profile-level-id` (6 hex digits, SPS bytes 1..4: `42e01f`, `64001f`).
    pub fn profile_level_id(&self) -> Option<String> {
        let sps = self.sps()?;
        let bytes = sps.get(1..4)?;
        Some(format!("{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2]))
    }

    /// Takes the parameter sets and NAL length size from an AVCDecoderConfigurationRecord
    /// (ISO/IEC 14496-15 §5.3.3.1; the FLV AVC sequence header body after its 5 header
    /// bytes). The sets it lists replace all known ones. Returns whether anything changed
    /// (a new SPS means a new resolution or profile; the next IDR carries it).
    pub fn set_decoder_config(&mut self, record: &[u8]) -> Result<bool, BridgeError> {
        let config = parse_decoder_config(record)?;
        let changed = config.nal_length_size != self.nal_length_size
            || !same_sets(&self.sps, &config.sps)
            || !same_sets(&self.pps, &config.pps);
        self.nal_length_size = config.nal_length_size;
        if changed {
            self.sps = config.sps;
            self.pps = config.pps;
            self.stats.parameter_set_changes += 1;
        }
        Ok(changed)
    }

    /// Looks at an access unit (NAL units with length prefixes) without packetizing it.
    pub fn inspect(&self, access_unit: &[u8]) -> Result<AccessUnitInfo, BridgeError> {
        let mut info = AccessUnitInfo::default();
        for nalu in NaluIter::new(access_unit, self.nal_length_size) {
            let nalu = nalu?;
            let kind = nalu[0] & 0x1F;
            match kind {
                nal_type::SLICE..=nal_type::IDR => {
                    if info.slices == 0 {
                        info.first_slice_type = slice_type(nalu);
                    }
                    info.slices += 1;
                    info.idr |= kind == nal_type::IDR;
                    info.max_slice_nal_ref_idc = info.max_slice_nal_ref_idc.max(nalu[0] >> 5 & 3);
                }
                nal_type::SPS | nal_type::PPS => info.in_band_parameter_sets = true,
                _ => {}
            }
        }
        Ok(info)
    }

    /// Packetizes one access unit (NAL units with length prefixes, as in an FLV AVC NALU
    /// packet) and appends its payloads to `out`, the marker on the last one. An access
    /// unit without slices yields nothing (its parameter sets are still taken).
    ///
    /// On a malformed access unit nothing is appended and the parameter sets are
    /// unchanged.
    pub fn packetize(
        &mut self,
        access_unit: &[u8],
        out: &mut Vec<RtpPayload>,
    ) -> Result<AccessUnitInfo, BridgeError> {
        // First pass: validate, learn in-band parameter sets, size the output.
        let info = self.inspect(access_unit)?;
        if info.in_band_parameter_sets {
            for nalu in NaluIter::new(access_unit, self.nal_length_size).flatten() {
                match nalu[0] & 0x1F {
                    nal_type::SPS => self.learn_sps(nalu),
                    nal_type::PPS => self.learn_pps(nalu),
                    _ => {}
                }
            }
        }
        let mut dropped = 0u64;
        for nalu in NaluIter::new(access_unit, self.nal_length_size).flatten() {
            if !is_forwarded(nalu[0] & 0x1F) {
                dropped += 1;
            }
        }
        self.stats.nalus_dropped += dropped;
        if info.slices == 0 {
            return Ok(info);
        }

        let send_parameter_sets = (info.idr || info.in_band_parameter_sets)
            && (!self.sps.is_empty() || !self.pps.is_empty());
        let parameter_sets_size = if send_parameter_sets {
            self.parameter_sets_size()
        } else {
            0
        };
        let mut total = parameter_sets_size;
        for nalu in NaluIter::new(access_unit, self.nal_length_size).flatten() {
            if is_forwarded(nalu[0] & 0x1F) {
                total += self.packetized_size(nalu.len());
            }
        }

        // Second pass: write every payload into one buffer and split them off.
        let mut buffer = BytesMut::with_capacity(total);
        let first_payload = out.len();
        if send_parameter_sets {
            self.write_parameter_sets(&mut buffer, out);
            self.stats.parameter_set_packets += 1;
        }
        for nalu in NaluIter::new(access_unit, self.nal_length_size).flatten() {
            if is_forwarded(nalu[0] & 0x1F) {
                self.write_nalu(nalu, &mut buffer, out);
            }
        }
        debug_assert!(buffer.is_empty(), "every written byte is in a payload");
        if let Some(last) = out.last_mut() {
            last.marker = true;
        }
        self.stats.access_units += 1;
        self.stats.payloads += (out.len() - first_payload) as u64;
        Ok(info)
    }

    fn learn_sps(&mut self, sps: &[u8]) {
        // seq_parameter_set_id follows profile_idc, the constraint flags and level_idc.
        let Some(id) = sps.get(4..).and_then(|rbsp| ExpGolomb::new(rbsp).read_ue()) else {
            return;
        };
        if id >= MAX_SPS as u32 {
            return;
        }
        if upsert(&mut self.sps, id, sps, MAX_SPS) {
            self.stats.parameter_set_changes += 1;
        }
    }

    fn learn_pps(&mut self, pps: &[u8]) {
        let Some(id) = pps.get(1..).and_then(|rbsp| ExpGolomb::new(rbsp).read_ue()) else {
            return;
        };
        if id >= MAX_PPS as u32 {
            return;
        }
        if upsert(&mut self.pps, id, pps, MAX_PPS) {
            self.stats.parameter_set_changes += 1;
        }
    }

    fn parameter_sets(&self) -> impl Iterator<Item = &Bytes> {
        self.sps
            .iter()
            .map(|(_, sps)| sps)
            .chain(self.pps.iter().map(|(_, pps)| pps))
    }

    /// Bytes the parameter sets take: one STAP-A if they fit, else one packet each.
    fn parameter_sets_size(&self) -> usize {
        let stap_a = 1 + self
            .parameter_sets()
            .map(|set| 2 + set.len())
            .sum::<usize>();
        if stap_a <= self.max_payload {
            stap_a
        } else {
            self.parameter_sets()
                .map(|set| self.packetized_size(set.len()))
                .sum()
        }
    }

    fn write_parameter_sets(&self, buffer: &mut BytesMut, out: &mut Vec<RtpPayload>) {
        let stap_a = 1 + self
            .parameter_sets()
            .map(|set| 2 + set.len())
            .sum::<usize>();
        if stap_a <= self.max_payload {
            let nri = self
                .parameter_sets()
                .map(|set| set[0] & 0x60)
                .max()
                .unwrap_or(0x60);
            buffer.put_u8(nri | nal_type::STAP_A);
            for set in self.parameter_sets() {
                // Fits in u16: the whole STAP-A is at most `max_payload`, and parameter
                // sets longer than u16 cannot come from an avcC record.
                buffer.put_u16(set.len() as u16);
                buffer.put_slice(set);
            }
            push(buffer, out);
        } else {
            for set in self.parameter_sets() {
                self.write_nalu(set, buffer, out);
            }
        }
    }

    /// Payload bytes for one NAL unit: as is, or FU-A fragments with 2 header bytes each.
    fn packetized_size(&self, nalu_len: usize) -> usize {
        if nalu_len <= self.max_payload {
            nalu_len
        } else {
            let body = nalu_len - 1;
            body + 2 * self.fragment_count(nalu_len)
        }
    }

    fn fragment_count(&self, nalu_len: usize) -> usize {
        (nalu_len - 1).div_ceil(self.max_payload - 2)
    }

    fn write_nalu(&self, nalu: &[u8], buffer: &mut BytesMut, out: &mut Vec<RtpPayload>) {
        if nalu.len() <= self.max_payload {
            buffer.put_slice(nalu);
            push(buffer, out);
            return;
        }
        let header = nalu[0];
        let body = &nalu[1..];
        let count = self.fragment_count(nalu.len());
        // Equal fragments (the first ones one byte longer), like libwebrtc.
        let base = body.len() / count;
        let longer = body.len() % count;
        let mut offset = 0;
        for index in 0..count {
            let len = base + usize::from(index < longer);
            let mut fu_header = header & 0x1F;
            if index == 0 {
                fu_header |= 0x80;
            }
            if index + 1 == count {
                fu_header |= 0x40;
            }
            buffer.put_u8((header & 0xE0) | nal_type::FU_A);
            buffer.put_u8(fu_header);
            buffer.put_slice(&body[offset..offset + len]);
            offset += len;
            push(buffer, out);
        }
    }
}

/// Splits what was written so far off `buffer` as one payload.
fn push(buffer: &mut BytesMut, out: &mut Vec<RtpPayload>) {
    let payload = buffer.split().freeze();
    out.push(RtpPayload {
        payload,
        marker: false,
    });
}

/// Whether a NAL unit of this type is sent to WebRTC viewers (slices only; parameter
/// sets go in the STAP-A).
fn is_forwarded(kind: u8) -> bool {
    (nal_type::SLICE..=nal_type::IDR).contains(&kind)
}

fn same_sets(known: &[(u32, Bytes)], new: &[(u32, Bytes)]) -> bool {
    known.len() == new.len() && known.iter().zip(new).all(|(a, b)| a == b)
}

/// Inserts or replaces the set with `id`; returns whether anything changed.
fn upsert(sets: &mut Vec<(u32, Bytes)>, id: u32, set: &[u8], limit: usize) -> bool {
    if let Some(slot) = sets.iter_mut().find(|(known, _)| *known == id) {
        if slot.1[..] == *set {
            return false;
        }
        slot.1 = Bytes::copy_from_slice(set);
        return true;
    }
    if sets.len() >= limit {
        return false;
    }
    sets.push((id, Bytes::copy_from_slice(set)));
    true
}

/// A parsed AVCDecoderConfigurationRecord.
struct DecoderConfig {
    nal_length_size: usize,
    sps: Vec<(u32, Bytes)>,
    pps: Vec<(u32, Bytes)>,
}

fn malformed(what: &str) -> BridgeError {
    BridgeError::MalformedIngestMedia(format!("AVCDecoderConfigurationRecord: {what}"))
}

fn parse_decoder_config(record: &[u8]) -> Result<DecoderConfig, BridgeError> {
    if record.len() < 7 {
        return Err(malformed("too short"));
    }
    if record[0] != 1 {
        return Err(malformed("configurationVersion is not 1"));
    }
    let nal_length_size = usize::from(record[4] & 0x03) + 1;
    let mut offset = 5;
    let sps_count = usize::from(record[offset] & 0x1F);
    offset += 1;
    let mut sps = Vec::with_capacity(sps_count);
    for _ in 0..sps_count {
        let set = read_parameter_set(record, &mut offset, nal_type::SPS)?;
        let id = set
            .get(4..)
            .and_then(|rbsp| ExpGolomb::new(rbsp).read_ue())
            .filter(|&id| id < MAX_SPS as u32)
            .ok_or_else(|| malformed("unreadable seq_parameter_set_id"))?;
        sps.retain(|(known, _)| *known != id);
        sps.push((id, Bytes::copy_from_slice(set)));
    }
    let pps_count = usize::from(
        *record
            .get(offset)
            .ok_or_else(|| malformed("no numOfPictureParameterSets"))?,
    );
    offset += 1;
    let mut pps = Vec::with_capacity(pps_count);
    for _ in 0..pps_count {
        let set = read_parameter_set(record, &mut offset, nal_type::PPS)?;
        let id = set
            .get(1..)
            .and_then(|rbsp| ExpGolomb::new(rbsp).read_ue())
            .filter(|&id| id < MAX_PPS as u32)
            .ok_or_else(|| malformed("unreadable pic_parameter_set_id"))?;
        pps.retain(|(known, _)| *known != id);
        pps.push((id, Bytes::copy_from_slice(set)));
    }
    // The high-profile extension (chroma format, bit depths, SPS extensions) that may
    // follow is not needed for RTP.
    Ok(DecoderConfig {
        nal_length_size,
        sps,
        pps,
    })
}

fn read_parameter_set<'a>(
    record: &'a [u8],
    offset: &mut usize,
    expected_type: u8,
) -> Result<&'a [u8], BridgeError> {
    let len_bytes = record
        .get(*offset..*offset + 2)
        .ok_or_else(|| malformed("truncated parameter set length"))?;
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    *offset += 2;
    let set = record
        .get(*offset..*offset + len)
        .ok_or_else(|| malformed("truncated parameter set"))?;
    *offset += len;
    if set.len() < 2 || set[0] & 0x1F != expected_type {
        return Err(malformed("parameter set of the wrong NAL type"));
    }
    Ok(set)
}

/// Iterates over the NAL units of an AVCC access unit (big-endian length prefixes).
/// Yields an error (once, then stops) on a truncated or empty unit.
pub(crate) struct NaluIter<'a> {
    rest: &'a [u8],
    length_size: usize,
    failed: bool,
}

impl<'a> NaluIter<'a> {
    /// NAL units of `access_unit` with `length_size`-byte prefixes (1–4).
    pub(crate) fn new(access_unit: &'a [u8], length_size: usize) -> Self {
        NaluIter {
            rest: access_unit,
            length_size: length_size.clamp(1, 4),
            failed: false,
        }
    }
}

impl<'a> Iterator for NaluIter<'a> {
    type Item = Result<&'a [u8], BridgeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let fail = |this: &mut Self, what: &str| {
            this.failed = true;
            Some(Err(BridgeError::MalformedIngestMedia(format!(
                "AVC access unit: {what}"
            ))))
        };
        let Some(prefix) = self.rest.get(..self.length_size) else {
            return fail(self, "truncated NAL length");
        };
        let len = prefix
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte));
        let Some(nalu) = self.rest.get(self.length_size..self.length_size + len) else {
            return fail(self, "NAL unit longer than the tag");
        };
        if nalu.is_empty() {
            return fail(self, "empty NAL unit");
        }
        self.rest = &self.rest[self.length_size + len..];
        Some(Ok(nalu))
    }
}

/// `slice_type` of a slice NAL unit (header byte included): the second `ue(v)` of the
/// slice header, after `first_mb_in_slice`.
pub(crate) fn slice_type(nalu: &[u8]) -> Option<u8> {
    let mut reader = ExpGolomb::new(nalu.get(1..)?);
    reader.read_ue()?;
    let kind = reader.read_ue()?;
    u8::try_from(kind).ok().filter(|&kind| kind <= 9)
}

/// A bit reader for the first bytes of a NAL unit payload, removing emulation prevention
/// bytes (`00 00 03`) as it goes.
struct ExpGolomb<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
    current: Option<u8>,
}

impl<'a> ExpGolomb<'a> {
    fn new(data: &'a [u8]) -> Self {
        ExpGolomb {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
            current: None,
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        loop {
            let byte = *self.data.get(self.byte)?;
            self.byte += 1;
            if self.zeros >= 2 && byte == 3 {
                self.zeros = 0;
                continue;
            }
            self.zeros = if byte == 0 { self.zeros + 1 } else { 0 };
            return Some(byte);
        }
    }

    fn read_bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            self.current = Some(self.next_byte()?);
            self.bit = 8;
        }
        self.bit -= 1;
        let byte = self.current?;
        Some(u32::from(byte >> self.bit & 1))
    }

    /// Unsigned Exp-Golomb; `None` past the data or beyond 31 leading zeros.
    fn read_ue(&mut self) -> Option<u32> {
        let mut leading_zeros = 0u32;
        while self.read_bit()? == 0 {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return None;
            }
        }
        let mut suffix = 0u64;
        for _ in 0..leading_zeros {
            suffix = suffix << 1 | u64::from(self.read_bit()?);
        }
        u32::try_from((1u64 << leading_zeros) - 1 + suffix).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::h264_depacketizer::{H264Depacketizer, H264Frame};
    use crate::media_unit::test_support::{PPS, SPS_320X180, SPS_640X360};
    use sfu::media::{Codec, SourcePacket};
    use std::sync::Arc;
    use std::time::Instant;

    /// An avcC record with 4-byte lengths and the given sets.
    pub(crate) fn avcc(sps: &[&[u8]], pps: &[&[u8]], length_size: u8) -> Vec<u8> {
        let mut record = vec![1, sps[0][1], sps[0][2], sps[0][3], 0xFC | (length_size - 1)];
        record.push(0xE0 | sps.len() as u8);
        for set in sps {
            record.extend_from_slice(&(set.len() as u16).to_be_bytes());
            record.extend_from_slice(set);
        }
        record.push(pps.len() as u8);
        for set in pps {
            record.extend_from_slice(&(set.len() as u16).to_be_bytes());
            record.extend_from_slice(set);
        }
        record
    }

    /// Length-prefixes NAL units.
    pub(crate) fn access_unit(nalus: &[&[u8]], length_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for nalu in nalus {
            let len = nalu.len().to_be_bytes();
            out.extend_from_slice(&len[len.len() - length_size..]);
            out.extend_from_slice(nalu);
        }
        out
    }

    /// An IDR slice NAL unit of `len` bytes (first_mb 0, slice_type 7 = I).
    fn idr(len: usize) -> Vec<u8> {
        let mut nalu = vec![0x65, 0b1000_1000];
        nalu.extend((2..len).map(|i| (i % 251) as u8 | 1));
        nalu
    }

    /// A P slice (slice_type 5) of `len` bytes with the given nal_ref_idc.
    fn p_slice(len: usize, nal_ref_idc: u8) -> Vec<u8> {
        let mut nalu = vec![nal_ref_idc << 5 | 1, 0b1001_1000];
        nalu.extend((2..len).map(|i| (i % 13) as u8 + 1));
        nalu
    }

    fn packetizer_with_config(max_payload: usize) -> H264Packetizer {
        let mut packetizer = H264Packetizer::new(max_payload);
        assert!(
            packetizer
                .set_decoder_config(&avcc(&[SPS_640X360], &[PPS], 4))
                .unwrap()
        );
        packetizer
    }

    /// Depacketizes payloads of consecutive access units (one RTP timestamp each).
    pub(crate) fn depacketize(units: &[Vec<RtpPayload>]) -> Vec<H264Frame> {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let mut frames = Vec::new();
        let mut seq = 0u16;
        for (index, payloads) in units.iter().enumerate() {
            for payload in payloads {
                let packet = SourcePacket {
                    codec: Codec::H264,
                    epoch: 0,
                    sequence_number: seq,
                    timestamp: index as u32 * 3000,
                    marker: payload.marker,
                    keyframe: false,
                    frame_start: false,
                    video_orientation: None,
                    received_at: now,
                    payload: payload.payload.clone(),
                };
                seq = seq.wrapping_add(1);
                depacketizer
                    .push(Arc::new(packet), now, &mut frames)
                    .expect("H.264");
            }
        }
        depacketizer.flush(now, &mut frames);
        frames
    }

    #[test]
    fn parses_decoder_config_and_profile_level_id() {
        let mut packetizer = H264Packetizer::default();
        assert_eq!(packetizer.profile_level_id(), None);
        assert!(!packetizer.has_parameter_sets());
        assert!(
            packetizer
                .set_decoder_config(&avcc(&[SPS_640X360], &[PPS], 2))
                .unwrap()
        );
        assert_eq!(packetizer.nal_length_size(), 2);
        assert_eq!(packetizer.profile_level_id().as_deref(), Some("42c01e"));
        assert_eq!(packetizer.sps().map(|s| &s[..]), Some(SPS_640X360));
        assert_eq!(packetizer.pps().map(|s| &s[..]), Some(PPS));
        // The same record again is no change; another SPS is.
        assert!(
            !packetizer
                .set_decoder_config(&avcc(&[SPS_640X360], &[PPS], 2))
                .unwrap()
        );
        assert!(
            packetizer
                .set_decoder_config(&avcc(&[SPS_320X180], &[PPS], 2))
                .unwrap()
        );
        assert_eq!(packetizer.sps().map(|s| &s[..]), Some(SPS_320X180));
        assert_eq!(packetizer.stats().parameter_set_changes, 2);
    }

    #[test]
    fn rejects_malformed_decoder_configs() {
        let good = avcc(&[SPS_640X360], &[PPS], 4);
        let mut packetizer = H264Packetizer::default();
        for len in 0..good.len() {
            // Every truncation fails (except ones that end exactly between fields with
            // zero counts left, which cannot happen for this record) and never panics.
            assert!(
                packetizer.set_decoder_config(&good[..len]).is_err(),
                "{len}"
            );
        }
        let mut wrong_version = good.clone();
        wrong_version[0] = 0;
        assert!(packetizer.set_decoder_config(&wrong_version).is_err());
        let mut wrong_type = good.clone();
        wrong_type[8] = 0x68;
        assert!(packetizer.set_decoder_config(&wrong_type).is_err());
        assert!(!packetizer.has_parameter_sets());
    }

    #[test]
    fn idr_gets_stap_a_with_all_parameter_sets_first() {
        let mut packetizer = packetizer_with_config(1200);
        // A second PPS (id 1) in the record.
        let pps1: &[u8] = &[0x68, 0x4b, 0x83, 0xcb, 0x20]; // ue(1) = 010
        packetizer
            .set_decoder_config(&avcc(&[SPS_640X360], &[PPS, pps1], 4))
            .unwrap();
        let aud: &[u8] = &[0x09, 0xF0];
        let sei: &[u8] = &[0x06, 0x05, 0x01, 0x00, 0x80];
        let filler: &[u8] = &[0x0C, 0xFF, 0xFF, 0x80];
        let idr = idr(500);
        let au = access_unit(&[aud, sei, &idr, filler], 4);
        let mut out = Vec::new();
        let info = packetizer.packetize(&au, &mut out).unwrap();
        assert!(info.idr);
        assert_eq!(info.slices, 1);
        assert_eq!(out.len(), 2, "STAP-A + IDR");
        let stap = &out[0].payload;
        assert_eq!(stap[0] & 0x1F, nal_type::STAP_A);
        assert_eq!(stap[0] & 0x60, 0x60, "NRI of the parameter sets");
        let mut expected = vec![stap[0]];
        for set in [SPS_640X360, PPS, pps1] {
            expected.extend_from_slice(&(set.len() as u16).to_be_bytes());
            expected.extend_from_slice(set);
        }
        assert_eq!(&stap[..], &expected[..]);
        assert!(sfu::keyframe::h264_is_keyframe(stap));
        assert!(!out[0].marker);
        assert_eq!(&out[1].payload[..], &idr[..]);
        assert!(out[1].marker);
        assert_eq!(packetizer.stats().nalus_dropped, 3);

        // A P frame has no STAP-A.
        out.clear();
        let p = p_slice(100, 2);
        packetizer
            .packetize(&access_unit(&[aud, &p], 4), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].payload[..], &p[..]);
        assert!(out[0].marker);
    }

    #[test]
    fn fu_a_boundaries() {
        for max in [100usize, 1200] {
            let mut packetizer = packetizer_with_config(max);
            // Exactly max: one single NAL unit packet.
            let mut out = Vec::new();
            let exact = p_slice(max, 2);
            packetizer
                .packetize(&access_unit(&[&exact], 4), &mut out)
                .unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].payload.len(), max);
            assert_eq!(&out[0].payload[..], &exact[..]);

            // max + 1: two FU-A fragments.
            out.clear();
            let over = p_slice(max + 1, 2);
            packetizer
                .packetize(&access_unit(&[&over], 4), &mut out)
                .unwrap();
            assert_eq!(out.len(), 2);
            for (index, fragment) in out.iter().enumerate() {
                assert!(fragment.payload.len() <= max);
                assert_eq!(fragment.payload[0], 0x40 | nal_type::FU_A, "NRI kept");
                let header = fragment.payload[1];
                assert_eq!(header & 0x1F, 1, "original type");
                assert_eq!(header & 0x80 != 0, index == 0, "S bit");
                assert_eq!(header & 0x40 != 0, index == 1, "E bit");
                assert_eq!(header & 0x20, 0, "R bit");
                assert_eq!(fragment.marker, index == 1);
            }
            let body: Vec<u8> = out.iter().flat_map(|f| f.payload[2..].to_vec()).collect();
            assert_eq!(&body[..], &over[1..]);

            // A large IDR: every fragment within max, fragments within one byte of each
            // other, the last one carries the marker.
            out.clear();
            let big = idr(max * 7 + 3);
            packetizer
                .packetize(&access_unit(&[&big], 4), &mut out)
                .unwrap();
            let fragments = &out[1..];
            assert!(fragments.iter().all(|f| f.payload.len() <= max));
            let sizes: Vec<usize> = fragments.iter().map(|f| f.payload.len()).collect();
            let (min, most) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(most - min <= 1, "{sizes:?}");
            assert_eq!(fragments[0].payload[0], 0x60 | nal_type::FU_A);
            assert!(sfu::keyframe::h264_is_keyframe(&fragments[0].payload));
            assert!(!sfu::keyframe::h264_is_keyframe(&fragments[1].payload));
            assert_eq!(out.iter().filter(|p| p.marker).count(), 1);
            assert!(out.last().unwrap().marker);
        }
    }

    #[test]
    fn round_trips_through_the_depacketizer() {
        let mut packetizer = packetizer_with_config(1200);
        let frames_in: Vec<Vec<Vec<u8>>> = vec![
            vec![idr(3000), idr(1200)],
            vec![p_slice(1201, 2)],
            vec![p_slice(10, 2), p_slice(5000, 2), p_slice(1199, 2)],
            vec![idr(50)],
        ];
        let mut units = Vec::new();
        for nalus in &frames_in {
            let refs: Vec<&[u8]> = nalus.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            packetizer
                .packetize(&access_unit(&refs, 4), &mut out)
                .unwrap();
            assert!(out.iter().all(|p| p.payload.len() <= 1200));
            units.push(out);
        }
        let frames = depacketize(&units);
        assert_eq!(frames.len(), frames_in.len());
        for (frame, nalus) in frames.iter().zip(&frames_in) {
            let got: Vec<&[u8]> = frame.nalus.iter().map(|n| &n[..]).collect();
            let want: Vec<&[u8]> = nalus.iter().map(Vec::as_slice).collect();
            assert_eq!(got, want);
        }
        assert!(frames[0].keyframe && frames[3].keyframe);
        assert_eq!(
            (frames[0].params.width, frames[0].params.height),
            (640, 360)
        );
    }

    #[test]
    fn in_band_parameter_sets_update_and_are_sent() {
        let mut packetizer = packetizer_with_config(1200);
        let idr = idr(100);
        // An IDR with a new SPS (same id 0) in band, 2-byte lengths after a new config.
        packetizer
            .set_decoder_config(&avcc(&[SPS_640X360], &[PPS], 2))
            .unwrap();
        let mut out = Vec::new();
        packetizer
            .packetize(&access_unit(&[SPS_320X180, PPS, &idr], 2), &mut out)
            .unwrap();
        assert_eq!(packetizer.sps().map(|s| &s[..]), Some(SPS_320X180));
        assert_eq!(out.len(), 2);
        let frames = depacketize(&[out]);
        assert_eq!(
            (frames[0].params.width, frames[0].params.height),
            (320, 180)
        );
    }

    #[test]
    fn small_max_payload_sends_parameter_sets_separately() {
        let mut packetizer = packetizer_with_config(20);
        let mut out = Vec::new();
        packetizer
            .packetize(&access_unit(&[&idr(30)], 4), &mut out)
            .unwrap();
        assert!(out.iter().all(|p| p.payload.len() <= 20));
        let frames = depacketize(&[out]);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].keyframe);
    }

    #[test]
    fn malformed_access_units_are_errors_and_emit_nothing() {
        let mut packetizer = packetizer_with_config(1200);
        let mut out = Vec::new();
        for au in [
            vec![0, 0, 0],
            vec![0, 0, 0, 9, 0x65],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 2, 0x41, 0x9a, 0, 0],
            vec![0xFF, 0xFF, 0xFF, 0xFF, 0x65],
        ] {
            assert!(packetizer.packetize(&au, &mut out).is_err());
        }
        assert!(out.is_empty());
        // Slices only of unknown-to-RTP types: nothing to send.
        packetizer
            .packetize(&access_unit(&[&[0x09, 0xF0]], 4), &mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn reads_slice_type_and_reference_idc() {
        let packetizer = packetizer_with_config(1200);
        // B slice: first_mb 0 ("1"), slice_type 1 ("010"), nal_ref_idc 0.
        let b: &[u8] = &[0x01, 0b1010_0000, 0x11];
        let info = packetizer.inspect(&access_unit(&[b], 4)).unwrap();
        assert!(info.is_b_slice());
        assert_eq!(info.max_slice_nal_ref_idc, 0);
        let p = p_slice(10, 2);
        let info = packetizer.inspect(&access_unit(&[&p], 4)).unwrap();
        assert_eq!(info.first_slice_type, Some(5));
        assert_eq!(info.max_slice_nal_ref_idc, 2);
        assert_eq!(slice_type(&idr(10)), Some(7));
        assert_eq!(slice_type(&[0x41]), None);
        // Emulation prevention bytes are skipped: first_mb = 0x0000 03 …
        // 16 leading zeros, then 1 and 16 suffix bits of 0: 2^16 - 1.
        let mut reader = ExpGolomb::new(&[0x00, 0x00, 0x03, 0x80, 0x00, 0x00]);
        assert_eq!(reader.read_ue(), Some(65_535));
    }
}
