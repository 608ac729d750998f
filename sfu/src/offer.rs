//! Reading an SDP offer before it reaches the WebRTC engine: is it well formed, what can
//! we forward, and which payload types and extension ids did the client choose.
//!
//! This is the first parser of outside bytes on the signalling path; it bounds the input,
//! never panics, and turns every problem into an [`OfferError`] that the HTTP layer maps
//! to 400/413/422.

use crate::media::{Codec, MediaKind};
use rtc::sdp::description::session::SessionDescription;
use std::io::Cursor;

/// Largest offer accepted (WHIP/WHEP bodies are a few KiB; 64 KiB is generous).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

/// The video-orientation header extension (3GPP TS 26.114).
pub const VIDEO_ORIENTATION_URI: &str = "urn:3gpp:video-orientation";

/// Problems with an offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The body exceeds [`MAX_OFFER_BYTES`].
    #[error("offer is {0} bytes; the limit is {MAX_OFFER_BYTES}")]
    TooLarge(usize),
    /// The body is not a parseable SDP offer.
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// The offer is SDP but offers nothing this server can forward.
    #[error("no usable codec: {0}")]
    NoUsableCodec(String),
}

/// Which way media flows in an m-section, from the offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client sends and receives.
    SendRecv,
    /// The client only sends (a publisher).
    SendOnly,
    /// The client only receives (a viewer).
    RecvOnly,
    /// Nothing flows.
    Inactive,
}

impl Direction {
    /// The client sends media in this section.
    pub fn client_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// The client receives media in this section.
    pub fn client_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// One codec the client listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedCodec {
    /// The codec, if one we forward.
    pub codec: Option<Codec>,
    /// The encoding name as written (`H264`, `rtx`, …).
    pub name: String,
    /// The payload type the client chose.
    pub payload_type: u8,
    /// Clock rate from `a=rtpmap`.
    pub clock_rate: u32,
    /// Channels from `a=rtpmap` (0 when absent).
    pub channels: u16,
    /// The `a=fmtp` line, or empty.
    pub fmtp: String,
}

impl OfferedCodec {
    /// A `key=value` parameter of the fmtp line.
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        fmtp_param(&self.fmtp, key)
    }

    /// For H.264: packetization-mode 1 (non-interleaved; FU-A and STAP-A).
    pub fn is_h264_mode1(&self) -> bool {
        self.codec == Some(Codec::H264) && self.fmtp_param("packetization-mode") == Some("1")
    }

    /// For H.264: the profile-level-id, lower-cased.
    pub fn profile_level_id(&self) -> Option<String> {
        self.fmtp_param("profile-level-id")
            .map(str::to_ascii_lowercase)
    }

    /// For RTX: the payload type it repairs (`apt=`).
    pub fn rtx_apt(&self) -> Option<u8> {
        if !self.name.eq_ignore_ascii_case("rtx") {
            return None;
        }
        self.fmtp_param("apt")?.parse().ok()
    }
}

/// One audio or video m-section.
#[derive(Debug, Clone)]
pub struct OfferedMedia {
    /// Audio or video.
    pub kind: MediaKind,
    /// The section's `a=mid`.
    pub mid: String,
    /// Direction from the client's side.
    pub direction: Direction,
    /// Codecs in the client's order of preference.
    pub codecs: Vec<OfferedCodec>,
    /// Header extensions: `(id, uri)`.
    pub extensions: Vec<(u8, String)>,
}

impl OfferedMedia {
    /// The client's id for an extension URI.
    pub fn extension_id(&self, uri: &str) -> Option<u8> {
        self.extensions
            .iter()
            .find(|(_, candidate)| candidate == uri)
            .map(|(id, _)| *id)
    }

    /// The best codec to *receive* from a publisher: H.264 packetization-mode 1 first
    /// (constrained baseline, then baseline, then any profile), then VP8; Opus for audio.
    pub fn best_publish_codec(&self) -> Option<&OfferedCodec> {
        match self.kind {
            MediaKind::Audio => self.codecs.iter().find(|c| c.codec == Some(Codec::Opus)),
            MediaKind::Video => {
                let h264: Vec<&OfferedCodec> =
                    self.codecs.iter().filter(|c| c.is_h264_mode1()).collect();
                let by_profile = |prefix: &str| {
                    h264.iter()
                        .find(|c| c.profile_level_id().is_some_and(|p| p.starts_with(prefix)))
                        .copied()
                };
                by_profile("42e0")
                    .or_else(|| by_profile("4200"))
                    .or_else(|| h264.first().copied())
                    .or_else(|| self.codecs.iter().find(|c| c.codec == Some(Codec::Vp8)))
            }
        }
    }

    /// The client's payload type to *send* `codec` to it, matching the publisher's
    /// H.264 profile when possible.
    pub fn matching_view_codec(
        &self,
        codec: Codec,
        profile_level_id: Option<&str>,
    ) -> Option<&OfferedCodec> {
        match codec {
            Codec::Opus | Codec::Vp8 => self.codecs.iter().find(|c| c.codec == Some(codec)),
            Codec::H264 => {
                let mode1 = || self.codecs.iter().filter(|c| c.is_h264_mode1());
                let wanted = profile_level_id.map(str::to_ascii_lowercase);
                let same_profile = wanted.as_deref().and_then(|wanted| {
                    mode1().find(|c| {
                        c.profile_level_id()
                            .is_some_and(|p| p.get(..4) == wanted.get(..4))
                    })
                });
                same_profile.or_else(|| mode1().next())
            }
        }
    }

    /// The RTX payload type the client pairs with `payload_type`, if any.
    pub fn rtx_for(&self, payload_type: u8) -> Option<&OfferedCodec> {
        self.codecs
            .iter()
            .find(|c| c.rtx_apt() == Some(payload_type))
    }
}

/// What an offer contains, as far as forwarding is concerned.
#[derive(Debug, Clone)]
pub struct OfferSummary {
    /// Audio and video m-sections, in order.
    pub media: Vec<OfferedMedia>,
    /// Whether the offer has an `m=application` (data channel) section.
    pub has_data_channel: bool,
}

impl OfferSummary {
    /// Parses and bounds an offer.
    pub fn parse(sdp: &str) -> Result<OfferSummary, OfferError> {
        if sdp.len() > MAX_OFFER_BYTES {
            return Err(OfferError::TooLarge(sdp.len()));
        }
        if !sdp.trim_start().starts_with("v=") {
            return Err(OfferError::Malformed(
                "an SDP body starts with \"v=\"".into(),
            ));
        }
        let session = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
            .map_err(|err| OfferError::Malformed(err.to_string()))?;
        let session_ufrag = session.attribute("ice-ufrag").is_some();
        let session_fingerprint = session.attribute("fingerprint").is_some();
        let session_direction = direction_of(session.attributes.iter().map(|a| a.key.as_str()));

        let mut media = Vec::new();
        let mut has_data_channel = false;
        for description in &session.media_descriptions {
            let kind = match description.media_name.media.as_str() {
                "audio" => MediaKind::Audio,
                "video" => MediaKind::Video,
                "application" => {
                    has_data_channel = true;
                    continue;
                }
                _ => continue,
            };
            if description.media_name.port.value == 0 {
                // A rejected/disabled section.
                continue;
            }
            if !session_ufrag && description.attribute("ice-ufrag").is_none() {
                return Err(OfferError::Malformed("missing a=ice-ufrag".into()));
            }
            if !session_fingerprint && description.attribute("fingerprint").is_none() {
                return Err(OfferError::Malformed("missing a=fingerprint (DTLS)".into()));
            }
            let mid = description
                .attribute("mid")
                .flatten()
                .map(str::to_owned)
                .ok_or_else(|| OfferError::Malformed(format!("{kind:?} section without a=mid")))?;
            let direction = direction_of(description.attributes.iter().map(|a| a.key.as_str()))
                .or(session_direction)
                .unwrap_or(Direction::SendRecv);

            let mut codecs = Vec::new();
            let mut extensions = Vec::new();
            for attribute in &description.attributes {
                let value = attribute.value.as_deref().unwrap_or("");
                match attribute.key.as_str() {
                    "rtpmap" => codecs.push(parse_rtpmap(value)?),
                    "extmap" => {
                        if let Some(extension) = parse_extmap(value) {
                            extensions.push(extension);
                        }
                    }
                    _ => {}
                }
            }
            for attribute in description.attributes.iter().filter(|a| a.key == "fmtp") {
                let value = attribute.value.as_deref().unwrap_or("");
                let (pt, params) = value.split_once(' ').unwrap_or((value, ""));
                let pt: u8 = pt.parse().map_err(|_| {
                    OfferError::Malformed(format!("bad a=fmtp payload type {pt:?}"))
                })?;
                if let Some(codec) = codecs.iter_mut().find(|c| c.payload_type == pt) {
                    codec.fmtp = params.trim().to_owned();
                }
            }
            // Sort by the m-line's format order, which is the client's preference.
            let order: Vec<u8> = description
                .media_name
                .formats
                .iter()
                .filter_map(|f| f.parse().ok())
                .collect();
            codecs.retain(|c| order.contains(&c.payload_type));
            codecs.sort_by_key(|c| order.iter().position(|pt| *pt == c.payload_type));
            media.push(OfferedMedia {
                kind,
                mid,
                direction,
                codecs,
                extensions,
            });
        }
        if media.is_empty() && !has_data_channel {
            return Err(OfferError::NoUsableCodec(
                "the offer has no audio or video section".into(),
            ));
        }
        Ok(OfferSummary {
            media,
            has_data_channel,
        })
    }

    /// Checks a publisher's offer: at least one section the client sends with a codec we
    /// forward. Returns the chosen codec per section index.
    pub fn publish_plan(&self) -> Result<Vec<(usize, &OfferedCodec)>, OfferError> {
        let plan: Vec<(usize, &OfferedCodec)> = self
            .media
            .iter()
            .enumerate()
            .filter(|(_, m)| m.direction.client_sends())
            .filter_map(|(index, m)| m.best_publish_codec().map(|codec| (index, codec)))
            .collect();
        if plan.is_empty() {
            let offered: Vec<String> = self
                .media
                .iter()
                .filter(|m| m.direction.client_sends())
                .flat_map(|m| m.codecs.iter().map(|c| c.name.clone()))
                .collect();
            return Err(OfferError::NoUsableCodec(format!(
                "a publisher must send Opus audio or H.264 (packetization-mode=1) / VP8 video; offered: [{}]",
                offered.join(", ")
            )));
        }
        // One track per kind: the first section of each kind wins.
        let mut seen = [false; 2];
        Ok(plan
            .into_iter()
            .filter(|(index, _)| {
                !std::mem::replace(&mut seen[self.media[*index].kind.index()], true)
            })
            .collect())
    }
}

fn direction_of<'a>(keys: impl Iterator<Item = &'a str>) -> Option<Direction> {
    let mut found = None;
    for key in keys {
        found = match key {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => continue,
        };
    }
    found
}

fn parse_rtpmap(value: &str) -> Result<OfferedCodec, OfferError> {
    let malformed = || OfferError::Malformed(format!("bad a=rtpmap {value:?}"));
    let (pt, encoding) = value.split_once(' ').ok_or_else(malformed)?;
    let payload_type: u8 = pt.parse().map_err(|_| malformed())?;
    if payload_type > 127 {
        return Err(malformed());
    }
    let mut parts = encoding.trim().split('/');
    let name = parts
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(malformed)?;
    let clock_rate = parts
        .next()
        .and_then(|rate| rate.parse().ok())
        .ok_or_else(malformed)?;
    let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let codec = match name.to_ascii_lowercase().as_str() {
        "opus" if clock_rate == 48_000 => Some(Codec::Opus),
        "h264" if clock_rate == 90_000 => Some(Codec::H264),
        "vp8" if clock_rate == 90_000 => Some(Codec::Vp8),
        _ => None,
    };
    Ok(OfferedCodec {
        codec,
        name: name.to_owned(),
        payload_type,
        clock_rate,
        channels,
        fmtp: String::new(),
    })
}

fn parse_extmap(value: &str) -> Option<(u8, String)> {
    let (id, rest) = value.split_once(' ')?;
    let id: u8 = id.split('/').next()?.parse().ok()?;
    let uri = rest.split_whitespace().next()?;
    (1..=14).contains(&id).then(|| (id, uri.to_owned()))
}

/// A `key=value` parameter of an fmtp line (`a=b;c=d`).
pub fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CHROME_PUBLISH_OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:0123456789012345678901\r\n\
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:actpass\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 106\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=extmap:13 urn:3gpp:video-orientation\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
a=rtpmap:103 H264/90000\r\n\
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:106 rtx/90000\r\n\
a=fmtp:106 apt=103\r\n";

    #[test]
    fn summarizes_a_browser_offer() {
        let offer = OfferSummary::parse(CHROME_PUBLISH_OFFER).unwrap();
        assert_eq!(offer.media.len(), 2);
        assert!(!offer.has_data_channel);
        let video = &offer.media[1];
        assert_eq!(video.kind, MediaKind::Video);
        assert_eq!(video.direction, Direction::SendOnly);
        assert_eq!(video.extension_id(VIDEO_ORIENTATION_URI), Some(13));
        let best = video.best_publish_codec().unwrap();
        assert_eq!(
            best.payload_type, 103,
            "H.264 packetization-mode 1 beats VP8"
        );
        assert_eq!(video.rtx_for(103).unwrap().payload_type, 106);
        let plan = offer.publish_plan().unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].1.codec, Some(Codec::Opus));
    }

    #[test]
    fn vp8_only_publisher_is_accepted() {
        let sdp = CHROME_PUBLISH_OFFER.replace("a=rtpmap:103 H264/90000\r\n", "");
        let offer = OfferSummary::parse(&sdp).unwrap();
        // 102 is mode 0, 103 lost its rtpmap: VP8 is next.
        assert_eq!(
            offer.media[1].best_publish_codec().unwrap().codec,
            Some(Codec::Vp8)
        );
    }

    #[test]
    fn rejects_what_cannot_be_forwarded() {
        let sdp = CHROME_PUBLISH_OFFER
            .replace("a=rtpmap:111 opus/48000/2\r\n", "")
            .replace("a=rtpmap:96 VP8/90000\r\n", "")
            .replace("a=rtpmap:103 H264/90000\r\n", "");
        let offer = OfferSummary::parse(&sdp).unwrap();
        assert!(matches!(
            offer.publish_plan(),
            Err(OfferError::NoUsableCodec(_))
        ));
    }

    #[test]
    fn rejects_malformed_and_oversized_offers() {
        assert!(matches!(
            OfferSummary::parse("hello"),
            Err(OfferError::Malformed(_))
        ));
        assert!(matches!(
            OfferSummary::parse(&CHROME_PUBLISH_OFFER.replace("a=mid:1\r\n", "")),
            Err(OfferError::Malformed(_))
        ));
        assert!(matches!(
            OfferSummary::parse(
                &CHROME_PUBLISH_OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:x opus")
            ),
            Err(OfferError::Malformed(_))
        ));
        let big = format!("{CHROME_PUBLISH_OFFER}{}", "a=x:y\r\n".repeat(12_000));
        assert!(matches!(
            OfferSummary::parse(&big),
            Err(OfferError::TooLarge(_))
        ));
    }

    #[test]
    fn viewer_codec_matches_the_publisher_profile() {
        let sdp = CHROME_PUBLISH_OFFER.replace("a=sendonly", "a=recvonly");
        let offer = OfferSummary::parse(&sdp).unwrap();
        let video = &offer.media[1];
        assert_eq!(
            video
                .matching_view_codec(Codec::H264, Some("42e01f"))
                .unwrap()
                .payload_type,
            103
        );
        assert_eq!(
            video
                .matching_view_codec(Codec::Vp8, None)
                .unwrap()
                .payload_type,
            96
        );
        assert_eq!(
            offer.media[0]
                .matching_view_codec(Codec::Opus, None)
                .unwrap()
                .payload_type,
            111
        );
    }
}
