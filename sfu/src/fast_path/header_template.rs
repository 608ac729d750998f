//! A viewer's RTP header, built once per viewer track and patched per packet.

use super::FastPathError;
use crate::forwarder::{ForwarderConfig, OutputHeader};

/// Fixed RTP header (12) + one-byte extension block header (4) + room for the extensions the
/// fast path writes (video orientation 2, transport-wide sequence number 3, padded to 8).
pub const MAX_HEADER_LEN: usize = 24;

const FIXED_HEADER_LEN: usize = 12;
const ONE_BYTE_EXTENSION_PROFILE: [u8; 2] = [0xBE, 0xDE];

/// The per-packet fields of a forwarded packet (what the forwarder's rewrite decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFields {
    /// Viewer-side sequence number.
    pub sequence_number: u16,
    /// Viewer-side RTP timestamp.
    pub timestamp: u32,
    /// The marker bit.
    pub marker: bool,
    /// The video-orientation byte, if this packet carries one (and the template has the slot).
    pub video_orientation: Option<u8>,
}

impl From<&OutputHeader> for PacketFields {
    fn from(header: &OutputHeader) -> Self {
        Self {
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            marker: header.marker,
            video_orientation: header.video_orientation.map(|(_, value)| value),
        }
    }
}

/// A prebuilt RTP header for one viewer SSRC: version, payload type, SSRC and the header
/// extension block are fixed; per packet, `FastPathSender::protect_rtp` patches marker,
/// sequence number, timestamp and the extension values into the send buffer.
///
/// Extensions use the one-byte form (RFC 8285). A packet without a video-orientation value gets
/// padding bytes (id 0) in that slot, which receivers skip, so the header length stays fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeaderTemplate {
    bytes: [u8; MAX_HEADER_LEN],
    len: usize,
    ssrc: u32,
    video_orientation: Option<(u8, usize)>,
    transport_cc: Option<(u8, usize)>,
}

impl RtpHeaderTemplate {
    /// A header with this SSRC and payload type and no extensions.
    pub fn new(ssrc: u32, payload_type: u8) -> Self {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = 0x80;
        bytes[1] = payload_type & 0x7f;
        bytes[8..12].copy_from_slice(&ssrc.to_be_bytes());
        Self {
            bytes,
            len: FIXED_HEADER_LEN,
            ssrc,
            video_orientation: None,
            transport_cc: None,
        }
    }

    /// The template for a viewer track as its [`ForwarderConfig`] describes it (SSRC, payload
    /// type, video-orientation id); add [`with_transport_cc`](Self::with_transport_cc) if the
    /// viewer negotiated transport-wide congestion control.
    pub fn for_forwarder(config: &ForwarderConfig) -> Result<Self, FastPathError> {
        let template = Self::new(config.ssrc, config.payload_type);
        match config.video_orientation_id {
            Some(id) => template.with_video_orientation(id),
            None => Ok(template),
        }
    }

    /// Adds the `urn:3gpp:video-orientation` slot (one byte) under the viewer's extension id.
    pub fn with_video_orientation(mut self, id: u8) -> Result<Self, FastPathError> {
        if self.video_orientation.is_some() {
            return Err(FastPathError::DuplicateExtension("video-orientation"));
        }
        let offset = self.push_extension(id, 1)?;
        self.video_orientation = Some((id, offset));
        Ok(self)
    }

    /// Adds the transport-wide sequence number slot (two bytes, draft-holmer-rmcat-transport-
    /// wide-cc-extensions) under the viewer's extension id.
    pub fn with_transport_cc(mut self, id: u8) -> Result<Self, FastPathError> {
        if self.transport_cc.is_some() {
            return Err(FastPathError::DuplicateExtension("transport-wide-cc"));
        }
        let offset = self.push_extension(id, 2)?;
        self.transport_cc = Some((id, offset));
        Ok(self)
    }

    /// The SSRC every packet of this template carries.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The header length in bytes (fixed for the template's life).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: an RTP header has at least 12 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether packets carry a transport-wide sequence number.
    pub fn has_transport_cc(&self) -> bool {
        self.transport_cc.is_some()
    }

    /// Writes the header for one packet into `out[..self.len()]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`len`](Self::len); callers check the whole packet length first.
    pub(crate) fn write(&self, fields: &PacketFields, transport_sequence: u16, out: &mut [u8]) {
        let header = &mut out[..self.len];
        header.copy_from_slice(&self.bytes[..self.len]);
        if fields.marker {
            header[1] |= 0x80;
        }
        header[2..4].copy_from_slice(&fields.sequence_number.to_be_bytes());
        header[4..8].copy_from_slice(&fields.timestamp.to_be_bytes());
        if let Some((id, offset)) = self.video_orientation {
            match fields.video_orientation {
                Some(value) => {
                    header[offset - 1] = id << 4;
                    header[offset] = value;
                }
                None => {
                    header[offset - 1] = 0;
                    header[offset] = 0;
                }
            }
        }
        if let Some((_, offset)) = self.transport_cc {
            header[offset..offset + 2].copy_from_slice(&transport_sequence.to_be_bytes());
        }
    }

    /// Appends one extension element (`len` data bytes) and returns the offset of its data.
    fn push_extension(&mut self, id: u8, len: usize) -> Result<usize, FastPathError> {
        if !(1..=14).contains(&id) {
            return Err(FastPathError::ExtensionId(id));
        }
        // Current elements, without the block header and padding.
        let mut elements: Vec<u8> = match self.extension_elements_len() {
            0 => Vec::new(),
            used => self.bytes[FIXED_HEADER_LEN + 4..FIXED_HEADER_LEN + 4 + used].to_vec(),
        };
        elements.push((id << 4) | (len as u8 - 1));
        let offset = FIXED_HEADER_LEN + 4 + elements.len();
        elements.extend(std::iter::repeat_n(0, len));
        let used = elements.len();
        let words = used.div_ceil(4);
        let total = FIXED_HEADER_LEN + 4 + words * 4;
        assert!(
            total <= MAX_HEADER_LEN,
            "the two supported extensions fit in MAX_HEADER_LEN"
        );
        self.bytes[0] |= 0x10;
        self.bytes[FIXED_HEADER_LEN..FIXED_HEADER_LEN + 2]
            .copy_from_slice(&ONE_BYTE_EXTENSION_PROFILE);
        self.bytes[FIXED_HEADER_LEN + 2..FIXED_HEADER_LEN + 4]
            .copy_from_slice(&(words as u16).to_be_bytes());
        self.bytes[FIXED_HEADER_LEN + 4..FIXED_HEADER_LEN + 4 + used].copy_from_slice(&elements);
        self.bytes[FIXED_HEADER_LEN + 4 + used..total].fill(0);
        self.len = total;
        Ok(offset)
    }

    /// Bytes of extension elements so far (0 without an extension block).
    fn extension_elements_len(&self) -> usize {
        let mut used = 0;
        if self.video_orientation.is_some() {
            used += 2;
        }
        if self.transport_cc.is_some() {
            used += 3;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::packet::Packet;
    use rtc::shared::marshal::Unmarshal;

    fn parse(bytes: &[u8]) -> Packet {
        let mut buf = bytes;
        Packet::unmarshal(&mut buf).expect("a valid RTP packet")
    }

    #[test]
    fn plain_header_parses_with_the_fields_written() {
        let template = RtpHeaderTemplate::new(0xdead_beef, 111);
        let mut out = [0u8; 64];
        let fields = PacketFields {
            sequence_number: 65535,
            timestamp: 0x0102_0304,
            marker: true,
            video_orientation: None,
        };
        template.write(&fields, 0, &mut out);
        out[12..15].copy_from_slice(b"abc");
        let packet = parse(&out[..15]);
        assert_eq!(packet.header.ssrc, 0xdead_beef);
        assert_eq!(packet.header.payload_type, 111);
        assert_eq!(packet.header.sequence_number, 65535);
        assert_eq!(packet.header.timestamp, 0x0102_0304);
        assert!(packet.header.marker);
        assert!(!packet.header.extension);
        assert_eq!(&packet.payload[..], b"abc");
    }

    #[test]
    fn extensions_round_trip_and_an_absent_orientation_becomes_padding() {
        let template = RtpHeaderTemplate::new(7, 96)
            .with_video_orientation(4)
            .and_then(|t| t.with_transport_cc(3))
            .expect("valid ids");
        assert_eq!(template.len(), 12 + 4 + 8);
        let mut out = [0u8; 64];
        let mut fields = PacketFields {
            sequence_number: 10,
            timestamp: 20,
            marker: false,
            video_orientation: Some(1),
        };
        template.write(&fields, 0xabcd, &mut out);
        let packet = parse(&out[..template.len() + 1]);
        assert_eq!(packet.header.get_extension(4).as_deref(), Some(&[1u8][..]));
        assert_eq!(
            packet.header.get_extension(3).as_deref(),
            Some(&[0xab, 0xcd][..])
        );

        fields.video_orientation = None;
        template.write(&fields, 0x0001, &mut out);
        let packet = parse(&out[..template.len() + 1]);
        assert_eq!(packet.header.get_extension(4), None);
        assert_eq!(
            packet.header.get_extension(3).as_deref(),
            Some(&[0x00, 0x01][..])
        );
    }

    #[test]
    fn a_forwarder_config_and_its_output_header_make_the_packet_header() {
        let config = ForwarderConfig {
            kind: crate::media::MediaKind::Video,
            clock_rate: 90_000,
            ssrc: 0x0a0b_0c0d,
            payload_type: 102,
            video_orientation_id: Some(7),
            initial_sequence_number: 0,
            initial_timestamp: 0,
        };
        let template = RtpHeaderTemplate::for_forwarder(&config).expect("valid id");
        let header = OutputHeader {
            ssrc: config.ssrc,
            payload_type: config.payload_type,
            sequence_number: 4242,
            timestamp: 90_000,
            marker: true,
            video_orientation: Some((7, 3)),
        };
        let mut out = [0u8; 64];
        template.write(&PacketFields::from(&header), 0, &mut out);
        let packet = parse(&out[..template.len() + 1]);
        assert_eq!(packet.header.ssrc, 0x0a0b_0c0d);
        assert_eq!(packet.header.payload_type, 102);
        assert_eq!(packet.header.sequence_number, 4242);
        assert_eq!(packet.header.timestamp, 90_000);
        assert!(packet.header.marker);
        assert_eq!(packet.header.get_extension(7).as_deref(), Some(&[3u8][..]));
    }

    #[test]
    fn bad_extension_ids_are_rejected() {
        assert!(matches!(
            RtpHeaderTemplate::new(1, 96).with_transport_cc(15),
            Err(FastPathError::ExtensionId(15))
        ));
        assert!(matches!(
            RtpHeaderTemplate::new(1, 96).with_video_orientation(0),
            Err(FastPathError::ExtensionId(0))
        ));
        assert!(matches!(
            RtpHeaderTemplate::new(1, 96)
                .with_transport_cc(2)
                .and_then(|t| t.with_transport_cc(3)),
            Err(FastPathError::DuplicateExtension(_))
        ));
    }
}
