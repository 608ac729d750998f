//! Keyframe detection on RTP payloads, without depacketizing.
//!
//! A joining viewer must start on a frame that decodes on its own. These functions look at
//! one payload and say whether it carries (the start of) such a frame. They read outside
//! bytes and never panic: a truncated payload is simply "not a keyframe".

use crate::media::Codec;

/// H.264 NAL unit types that matter here (RFC 6184, ITU-T H.264 table 7-1).
mod nal {
    pub const IDR: u8 = 5;
    pub const SPS: u8 = 7;
    pub const STAP_A: u8 = 24;
    pub const FU_A: u8 = 28;
}

/// Whether this payload carries a keyframe (or its parameter sets) for `codec`.
/// Audio payloads are always "keyframes": any packet is a valid start.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Opus => true,
        Codec::H264 => h264_is_keyframe(payload),
        Codec::Vp8 => vp8_is_keyframe(payload),
    }
}

/// H.264 (RFC 6184): an SPS or an IDR slice in a single NAL unit, inside a STAP-A, or at
/// the start of an FU-A.
pub fn h264_is_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        nal::IDR | nal::SPS => true,
        nal::STAP_A => {
            // STAP-A: [header][size16][nal]...; stop at the first malformed size.
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                rest = &rest[2..];
                if size == 0 || size > rest.len() {
                    return false;
                }
                if matches!(rest[0] & 0x1f, nal::IDR | nal::SPS) {
                    return true;
                }
                rest = &rest[size..];
            }
            false
        }
        nal::FU_A => {
            // FU-A: [indicator][header: S E R type]; only the start fragment counts.
            payload
                .get(1)
                .is_some_and(|&fu| fu & 0x80 != 0 && matches!(fu & 0x1f, nal::IDR | nal::SPS))
        }
        _ => false,
    }
}

/// VP8 (RFC 7741): the payload descriptor is followed, on the first packet of a frame
/// (S=1, PID=0), by the VP8 frame tag whose lowest bit is 0 for a key frame.
pub fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&descriptor) = payload.first() else {
        return false;
    };
    let start_of_partition = descriptor & 0x10 != 0;
    let partition_id = descriptor & 0x0f;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut offset = 1;
    if descriptor & 0x80 != 0 {
        // X: extension byte with I, L, T, K flags.
        let Some(&ext) = payload.get(offset) else {
            return false;
        };
        offset += 1;
        if ext & 0x80 != 0 {
            // I: picture id, 7 or 15 bits (M flag).
            let Some(&picture_id) = payload.get(offset) else {
                return false;
            };
            offset += if picture_id & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            // L: TL0PICIDX.
            offset += 1;
        }
        if ext & 0x30 != 0 {
            // T or K: TID/Y/KEYIDX byte.
            offset += 1;
        }
    }
    payload.get(offset).is_some_and(|&tag| tag & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_single_nal_idr_and_sps_are_keyframes() {
        assert!(h264_is_keyframe(&[0x65, 0x88, 0x84]));
        assert!(h264_is_keyframe(&[0x67, 0x42, 0xe0, 0x1f]));
        assert!(!h264_is_keyframe(&[0x41, 0x9a]));
        assert!(!h264_is_keyframe(&[]));
    }

    #[test]
    fn h264_stap_a_with_sps_is_keyframe() {
        // STAP-A carrying SPS (3 bytes) and PPS (2 bytes).
        let stap = [0x78, 0x00, 0x03, 0x67, 0x42, 0xe0, 0x00, 0x02, 0x68, 0xce];
        assert!(h264_is_keyframe(&stap));
        // STAP-A with only a non-IDR slice.
        assert!(!h264_is_keyframe(&[0x78, 0x00, 0x02, 0x41, 0x9a]));
        // Malformed sizes are not keyframes and do not panic.
        assert!(!h264_is_keyframe(&[0x78, 0xff, 0xff, 0x67]));
        assert!(!h264_is_keyframe(&[0x78, 0x00]));
    }

    #[test]
    fn h264_fu_a_start_of_idr_is_keyframe() {
        assert!(h264_is_keyframe(&[0x7c, 0x85, 0x00]));
        // Middle fragment of an IDR is not a start.
        assert!(!h264_is_keyframe(&[0x7c, 0x05, 0x00]));
        // Start of a non-IDR slice.
        assert!(!h264_is_keyframe(&[0x7c, 0x81, 0x00]));
        assert!(!h264_is_keyframe(&[0x7c]));
    }

    #[test]
    fn vp8_keyframe_bit() {
        // S=1, PID=0, no extension, frame tag with P=0.
        assert!(vp8_is_keyframe(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // Inter frame (P=1).
        assert!(!vp8_is_keyframe(&[0x10, 0x01]));
        // Not the start of a partition.
        assert!(!vp8_is_keyframe(&[0x00, 0x00]));
        // Extended descriptor with 15-bit picture id.
        assert!(vp8_is_keyframe(&[0x90, 0x80, 0x80, 0x01, 0x00]));
        assert!(!vp8_is_keyframe(&[0x90, 0x80, 0x80]));
        assert!(!vp8_is_keyframe(&[]));
    }

    #[test]
    fn audio_is_always_a_valid_start() {
        assert!(is_keyframe(Codec::Opus, &[]));
    }
}
