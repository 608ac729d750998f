//! Building webrtc-rs `RTCPeerConnection`s for publishers and viewers from an offer.
//!
//! Each peer gets a media engine holding exactly the codecs we will use with it — chosen
//! from the offer by [`crate::offer`] — under the client's own payload types, so the answer
//! is unambiguous and forwarded packets need only the per-viewer rewrite. Peers are
//! ICE-lite with a fixed, unique ufrag (the demux key) and our one host candidate; they
//! share one DTLS certificate. Building happens off the shard thread: the result is a
//! plain value moved into the shard.

use crate::error::SfuError;
use crate::fast_path::SrtpKeyTap;
use crate::feedback_delivery::{FEEDBACK_DELIVERY_SLOT, FeedbackDelivery};
use crate::media::{Codec, MediaKind};
use crate::offer::{OfferSummary, OfferedCodec, VIDEO_ORIENTATION_URI};
use rand::Rng;
use rand::distr::Alphanumeric;
use rtc::interceptor::{
    NackGeneratorBuilder, ReceiverReportBuilder, Registry, SenderReportBuilder, Slot,
    TwccReceiverBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use std::net::SocketAddr;
use std::time::Instant;

/// The transport-wide congestion control header extension.
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// The media-id header extension (BUNDLE demux for clients that rely on it).
const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// What every peer shares: our certificate and the candidate we advertise.
#[derive(Clone)]
pub struct PeerEnvironment {
    /// One DTLS certificate for every peer (generating one per peer costs join latency).
    pub certificate: RTCCertificate,
    /// The address advertised as our only (host) candidate: the public IP and UDP port.
    pub advertised: SocketAddr,
    /// Whether viewers' NACKs reach the core (and are answered from the room's ring).
    /// On by default: NACKs are answered from the ring through the fast path.
    pub answer_nacks: bool,
    /// Whether viewers' forwarded RTP is protected by our own SRTP context and sent as a
    /// prebuilt header plus the shared payload ([`crate::fast_path`]). On by default.
    pub fast_path: bool,
}

impl PeerEnvironment {
    /// Generates the shared certificate.
    pub fn new(advertised: SocketAddr) -> Result<Self, SfuError> {
        let provider =
            rtc::crypto::default_provider().map_err(|e| SfuError::Engine(e.to_string()))?;
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            rtc::peer_connection::certificate::CertificateParams::new(vec!["queqiao".to_owned()])
                .map_err(|e| SfuError::Engine(e.to_string()))?,
        )
        .map_err(|e| SfuError::Engine(e.to_string()))?;
        Ok(Self {
            certificate,
            advertised,
            answer_nacks: true,
            fast_path: true,
        })
    }
}

/// One track a publisher will send us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTrackPlan {
    /// The codec.
    pub codec: Codec,
    /// The publisher's payload type for it.
    pub payload_type: u8,
    /// The publisher's fmtp line (profile-level-id for H.264).
    pub fmtp: String,
    /// The publisher's extension id for video orientation, if negotiated.
    pub video_orientation_id: Option<u8>,
}

/// One track we will send a viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundTrackPlan {
    /// The codec.
    pub codec: Codec,
    /// The viewer's payload type for it.
    pub payload_type: u8,
    /// Our SSRC for it, announced in the answer.
    pub ssrc: u32,
    /// The viewer's extension id for video orientation, if negotiated.
    pub video_orientation_id: Option<u8>,
    /// The engine's sender handle.
    pub sender: RTCRtpSenderId,
}

/// A negotiated peer, ready to be moved into the shard.
pub struct NegotiatedPeer<T> {
    /// The engine.
    pub connection: RTCPeerConnection,
    /// Our answer SDP.
    pub answer: String,
    /// Our ICE ufrag: the demux key.
    pub local_ufrag: String,
    /// Our ICE password: the key that authenticates the peer's STUN requests.
    pub local_pwd: String,
    /// Per kind (audio, video): what flows.
    pub tracks: [Option<T>; 2],
    /// Whether the offer had a data-channel section.
    pub has_data_channel: bool,
    /// The tap on the engine's crypto provider that learns the SRTP keys (viewers with the
    /// fast path on).
    pub srtp_tap: Option<SrtpKeyTap>,
}

/// The codecs a room forwards: what viewers are offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomCodecs {
    /// Audio codec, if the publisher sends audio.
    pub audio: Option<Codec>,
    /// Video codec and the publisher's H.264 profile-level-id, if it sends video.
    pub video: Option<(Codec, Option<String>)>,
}

/// Negotiates a publisher (WHIP) session. The answer is recvonly for every track we take.
pub fn negotiate_publisher(
    offer_sdp: &str,
    offer: &OfferSummary,
    env: &PeerEnvironment,
    now: Instant,
) -> Result<NegotiatedPeer<InboundTrackPlan>, SfuError> {
    let plan = offer.publish_plan()?;
    let mut media_engine = MediaEngine::default();
    let mut tracks: [Option<InboundTrackPlan>; 2] = [None, None];
    for (index, chosen) in plan {
        let media = &offer.media[index];
        let codec = chosen
            .codec
            .ok_or_else(|| SfuError::Engine("chosen codec is unknown".into()))?;
        register(
            &mut media_engine,
            chosen,
            codec,
            feedback_for(codec.kind(), true),
        )?;
        if let Some(rtx) = media.rtx_for(chosen.payload_type) {
            register_rtx(&mut media_engine, rtx)?;
        }
        let video_orientation_id = media
            .extension_id(VIDEO_ORIENTATION_URI)
            .filter(|_| codec.kind() == MediaKind::Video);
        tracks[codec.kind().index()] = Some(InboundTrackPlan {
            codec,
            payload_type: chosen.payload_type,
            fmtp: chosen.fmtp.clone(),
            video_orientation_id,
        });
    }
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        register_extension(&mut media_engine, SDES_MID_URI, kind)?;
        register_extension(&mut media_engine, TRANSPORT_CC_URI, kind)?;
    }
    register_extension(
        &mut media_engine,
        VIDEO_ORIENTATION_URI,
        RtpCodecKind::Video,
    )?;

    let registry = Registry::new()
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(
            FEEDBACK_DELIVERY_SLOT,
            FeedbackDelivery::new(env.answer_nacks),
        );

    let (connection, credentials) = build(media_engine, registry, env, None, now)?;
    finish(connection, credentials, offer_sdp, offer, env, now, tracks)
}

/// Negotiates a viewer (WHEP) session: we send the room's tracks with fresh SSRCs under
/// the viewer's payload types.
pub fn negotiate_viewer(
    offer_sdp: &str,
    offer: &OfferSummary,
    room: &RoomCodecs,
    stream_id: &str,
    env: &PeerEnvironment,
    now: Instant,
) -> Result<NegotiatedPeer<OutboundTrackPlan>, SfuError> {
    let mut media_engine = MediaEngine::default();
    let mut wanted: [Option<(Codec, OfferedCodec, Option<u8>)>; 2] = [None, None];
    let mut missing = Vec::new();
    let room_tracks = [room.audio.map(|codec| (codec, None)), room.video.clone()];
    for (codec, profile) in room_tracks.into_iter().flatten() {
        let chosen = offer
            .media
            .iter()
            .filter(|m| m.kind == codec.kind() && m.direction.client_receives())
            .find_map(|m| {
                m.matching_view_codec(codec, profile.as_deref())
                    .map(|c| (c.clone(), m.extension_id(VIDEO_ORIENTATION_URI)))
            });
        match chosen {
            Some((offered, orientation)) => {
                let orientation = orientation.filter(|_| codec.kind() == MediaKind::Video);
                wanted[codec.kind().index()] = Some((codec, offered, orientation));
            }
            None => missing.push(codec.to_string()),
        }
    }
    if wanted.iter().all(Option::is_none) {
        let reason = if missing.is_empty() {
            "the room has no tracks yet".to_owned()
        } else {
            format!(
                "the room forwards [{}] and the offer cannot receive any of them",
                missing.join(", ")
            )
        };
        return Err(SfuError::Offer(crate::offer::OfferError::NoUsableCodec(
            reason,
        )));
    }
    for (codec, offered, _) in wanted.iter().flatten() {
        register(
            &mut media_engine,
            offered,
            *codec,
            feedback_for(codec.kind(), false),
        )?;
    }
    register_extension(
        &mut media_engine,
        VIDEO_ORIENTATION_URI,
        RtpCodecKind::Video,
    )?;
    let registry = Registry::new()
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
        .with(
            FEEDBACK_DELIVERY_SLOT,
            FeedbackDelivery::new(env.answer_nacks),
        );
    let srtp_tap = if env.fast_path {
        Some(SrtpKeyTap::new().map_err(|e| SfuError::Engine(e.to_string()))?)
    } else {
        None
    };
    let (mut connection, credentials) = build(media_engine, registry, env, srtp_tap.as_ref(), now)?;

    let mut rng = rand::rng();
    let mut tracks: [Option<OutboundTrackPlan>; 2] = [None, None];
    for (codec, offered, orientation) in wanted.iter().flatten() {
        let ssrc: u32 = rng.random();
        let kind = rtp_kind(codec.kind());
        let label = match codec.kind() {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        let track = MediaStreamTrack::new(
            stream_id.to_owned(),
            label.to_owned(),
            label.to_owned(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: rtp_codec(offered, *codec, vec![]),
                ..Default::default()
            }],
        );
        let sender = connection.add_track(track).map_err(engine)?;
        tracks[codec.kind().index()] = Some(OutboundTrackPlan {
            codec: *codec,
            payload_type: offered.payload_type,
            ssrc,
            video_orientation_id: *orientation,
            sender,
        });
    }
    let mut negotiated = finish(connection, credentials, offer_sdp, offer, env, now, tracks)?;
    negotiated.srtp_tap = srtp_tap;
    Ok(negotiated)
}

fn finish<T>(
    mut connection: RTCPeerConnection,
    credentials: IceCredentials,
    offer_sdp: &str,
    offer: &OfferSummary,
    env: &PeerEnvironment,
    now: Instant,
    tracks: [Option<T>; 2],
) -> Result<NegotiatedPeer<T>, SfuError> {
    let description = RTCSessionDescription::offer(offer_sdp.to_owned())
        .map_err(|e| SfuError::Offer(crate::offer::OfferError::Malformed(e.to_string())))?;
    connection
        .set_remote_description(now, description)
        .map_err(|e| SfuError::Offer(crate::offer::OfferError::Malformed(e.to_string())))?;
    let answer = connection.create_answer(None).map_err(engine)?;
    connection
        .set_local_description(now, answer)
        .map_err(engine)?;
    connection
        .add_local_candidate(host_candidate(env.advertised)?)
        .map_err(engine)?;
    connection
        .add_local_candidate(RTCIceCandidateInit::default())
        .map_err(engine)?;
    let answer = connection
        .local_description()
        .ok_or_else(|| SfuError::Engine("no local description after answering".into()))?
        .sdp;
    Ok(NegotiatedPeer {
        connection,
        answer,
        local_ufrag: credentials.ufrag,
        local_pwd: credentials.pwd,
        tracks,
        has_data_channel: offer.has_data_channel,
        srtp_tap: None,
    })
}

fn build(
    media_engine: MediaEngine,
    registry: Registry,
    env: &PeerEnvironment,
    srtp_tap: Option<&SrtpKeyTap>,
    now: Instant,
) -> Result<(RTCPeerConnection, IceCredentials), SfuError> {
    let credentials = IceCredentials {
        ufrag: random_token(16),
        pwd: random_token(32),
    };
    let mut settings = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(credentials.ufrag.clone(), credentials.pwd.clone());
    if let Some(tap) = srtp_tap {
        settings = settings.with_crypto_provider(tap.provider());
    }
    let settings = settings.build();
    let configuration = RTCConfigurationBuilder::new()
        .with_certificates(vec![env.certificate.clone()])
        .build();
    let connection = RTCPeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_setting_engine(settings)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(engine)?;
    Ok((connection, credentials))
}

/// Our side of a peer's ICE credentials.
struct IceCredentials {
    ufrag: String,
    pwd: String,
}

/// Our one host candidate, on the shared port.
fn host_candidate(advertised: SocketAddr) -> Result<RTCIceCandidateInit, SfuError> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: advertised.ip().to_string(),
            port: advertised.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(|e| SfuError::Engine(e.to_string()))?;
    RTCIceCandidate::from(&candidate).to_json().map_err(engine)
}

fn register(
    media_engine: &mut MediaEngine,
    offered: &OfferedCodec,
    codec: Codec,
    feedback: Vec<RTCPFeedback>,
) -> Result<(), SfuError> {
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: rtp_codec(offered, codec, feedback),
                payload_type: offered.payload_type,
            },
            rtp_kind(codec.kind()),
        )
        .map_err(engine)
}

fn register_rtx(media_engine: &mut MediaEngine, rtx: &OfferedCodec) -> Result<(), SfuError> {
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "video/rtx".to_owned(),
                    clock_rate: rtx.clock_rate,
                    channels: 0,
                    sdp_fmtp_line: rtx.fmtp.clone(),
                    rtcp_feedback: vec![],
                },
                payload_type: rtx.payload_type,
            },
            RtpCodecKind::Video,
        )
        .map_err(engine)
}

fn rtp_codec(
    offered: &OfferedCodec,
    codec: Codec,
    rtcp_feedback: Vec<RTCPFeedback>,
) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: codec.mime_type().to_owned(),
        clock_rate: codec.clock_rate(),
        channels: if codec == Codec::Opus { 2 } else { 0 },
        sdp_fmtp_line: offered.fmtp.clone(),
        rtcp_feedback,
    }
}

fn feedback_for(kind: MediaKind, publisher: bool) -> Vec<RTCPFeedback> {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let mut feedback = Vec::new();
    if kind == MediaKind::Video {
        feedback.push(fb("nack", ""));
        feedback.push(fb("nack", "pli"));
        feedback.push(fb("ccm", "fir"));
    }
    if publisher {
        feedback.push(fb("transport-cc", ""));
    }
    feedback
}

fn register_extension(
    media_engine: &mut MediaEngine,
    uri: &str,
    kind: RtpCodecKind,
) -> Result<(), SfuError> {
    media_engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: uri.to_owned(),
            },
            kind,
            None,
        )
        .map_err(engine)
}

fn rtp_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        MediaKind::Video => RtpCodecKind::Video,
    }
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn engine(err: rtc::shared::error::Error) -> SfuError {
    SfuError::Engine(err.to_string())
}
