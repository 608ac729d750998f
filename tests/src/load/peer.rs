//! Client-side WebRTC peers on webrtc-rs's sans-IO `rtc` engine: a WHIP publisher (sends
//! H.264 + Opus) and a WHEP viewer (receives them), each an offerer with one host candidate
//! on an address the caller owns. No sockets here: the caller's loop moves the datagrams.

use anyhow::{Context, anyhow};
use rtc::interceptor::{NackGeneratorBuilder, ReceiverReportBuilder, Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// H.264 constrained baseline, packetization mode 1: what browsers offer first.
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Our payload types (the server maps to whatever a peer offered).
pub const VIDEO_PT: u8 = 102;
/// Opus payload type.
pub const AUDIO_PT: u8 = 111;
/// Interval between ICE connectivity checks.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// The data channel browsers' WHEP clients of ours open.
pub const ROOM_CHANNEL: &str = "room";

/// One DTLS certificate shared by every peer of the load generator (generating one per
/// peer would only add join latency; a browser reuses its certificate too).
pub fn certificate() -> anyhow::Result<RTCCertificate> {
    let provider = rtc::crypto::default_provider().map_err(|e| anyhow!("crypto provider: {e}"))?;
    RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        CertificateParams::new(vec!["queqiao-load".to_owned()])
            .map_err(|e| anyhow!("certificate parameters: {e}"))?,
    )
    .map_err(|e| anyhow!("certificate: {e}"))
}

fn h264(feedback: Vec<RTCPFeedback>) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/H264".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: feedback,
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn register(
    engine: &mut MediaEngine,
    codec: RTCRtpCodec,
    pt: u8,
    kind: RtpCodecKind,
) -> anyhow::Result<()> {
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec,
                payload_type: pt,
            },
            kind,
        )
        .map_err(|e| anyhow!("registering a codec: {e}"))
}

fn build(
    engine: MediaEngine,
    registry: Registry,
    certificate: &RTCCertificate,
    now: Instant,
) -> anyhow::Result<RTCPeerConnection> {
    let configuration = RTCConfigurationBuilder::new()
        .with_certificates(vec![certificate.clone()])
        .build();
    // Check pacing like a browser (libwebrtc checks a new pair every ~50 ms; the engine's
    // default of 200 ms would add ~150 ms to every join that a real viewer does not see).
    let settings = SettingEngineBuilder::new()
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), None)
        .build();
    RTCPeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(|e| anyhow!("building a peer: {e}"))
}

/// Adds our one host candidate, then offers.
fn offer(pc: &mut RTCPeerConnection, local: SocketAddr, now: Instant) -> anyhow::Result<String> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(|e| anyhow!("host candidate: {e}"))?;
    let init = RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| anyhow!("host candidate: {e}"))?;
    pc.add_local_candidate(init)
        .map_err(|e| anyhow!("adding the host candidate: {e}"))?;
    let offer = pc
        .create_offer(None)
        .map_err(|e| anyhow!("creating the offer: {e}"))?;
    pc.set_local_description(now, offer)
        .map_err(|e| anyhow!("setting the offer: {e}"))?;
    Ok(pc
        .local_description()
        .context("no local description after offering")?
        .sdp)
}

/// Applies the server's SDP answer.
pub fn apply_answer(pc: &mut RTCPeerConnection, sdp: &str, now: Instant) -> anyhow::Result<()> {
    let answer =
        RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| anyhow!("answer: {e}"))?;
    pc.set_remote_description(now, answer)
        .map_err(|e| anyhow!("applying the answer: {e}"))
}

/// Who generates a viewer's RTCP feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FeedbackMode {
    /// Our Chromium-like feedback ([`crate::load::feedback`]): receiver reports, NACKs
    /// after a reorder wait, TWCC if negotiated, PLIs only when a keyframe is needed. The
    /// offer carries `transport-cc` and `goog-remb` like Chromium's.
    #[default]
    Browser,
    /// The `rtc` engine's NACK generator and receiver report interceptors (the generator's
    /// behaviour before browser-like feedback).
    Engine,
}

/// The transport-wide congestion control header extension.
pub const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// A viewer peer and its offer.
pub struct ViewerPeer {
    /// The engine.
    pub pc: RTCPeerConnection,
    /// The SDP offer to POST.
    pub offer: String,
}

/// Builds a recvonly audio + video viewer like a browser's WHEP client: H.264 and Opus,
/// NACK generation and receiver reports (ours or the engine's, see [`FeedbackMode`]),
/// optionally the `room` data channel.
pub fn viewer(
    local: SocketAddr,
    certificate: &RTCCertificate,
    data_channel: bool,
    mode: FeedbackMode,
    now: Instant,
) -> anyhow::Result<ViewerPeer> {
    let mut engine = MediaEngine::default();
    let mut feedback = vec![
        RTCPFeedback {
            typ: "nack".to_owned(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".to_owned(),
            parameter: "pli".to_owned(),
        },
    ];
    let registry = match mode {
        FeedbackMode::Browser => {
            // Chromium offers these on every video codec and the transport-cc extension
            // on every m-line; the server's answer decides what we send.
            for (typ, parameter) in [("goog-remb", ""), ("transport-cc", ""), ("ccm", "fir")] {
                feedback.push(RTCPFeedback {
                    typ: typ.to_owned(),
                    parameter: parameter.to_owned(),
                });
            }
            for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
                engine
                    .register_header_extension(
                        RTCRtpHeaderExtensionCapability {
                            uri: TRANSPORT_CC_URI.to_owned(),
                        },
                        kind,
                        None,
                    )
                    .map_err(|e| anyhow!("registering transport-cc: {e}"))?;
            }
            Registry::new()
        }
        FeedbackMode::Engine => Registry::new()
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build()),
    };
    register(&mut engine, h264(feedback), VIDEO_PT, RtpCodecKind::Video)?;
    register(&mut engine, opus(), AUDIO_PT, RtpCodecKind::Audio)?;
    let mut pc = build(engine, registry, certificate, now)?;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .map_err(|e| anyhow!("adding a recvonly transceiver: {e}"))?;
    }
    if data_channel {
        pc.create_data_channel(ROOM_CHANNEL, None)
            .map_err(|e| anyhow!("creating the data channel: {e}"))?;
    }
    let offer = offer(&mut pc, local, now)?;
    Ok(ViewerPeer { pc, offer })
}

/// One outgoing track of the publisher.
#[derive(Debug, Clone, Copy)]
pub struct OutTrack {
    /// The engine's sender.
    pub sender: RTCRtpSenderId,
    /// Our SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub payload_type: u8,
}

/// A publisher peer and its offer.
pub struct PublisherPeer {
    /// The engine.
    pub pc: RTCPeerConnection,
    /// The SDP offer to POST.
    pub offer: String,
    /// The video track.
    pub video: OutTrack,
    /// The audio track.
    pub audio: OutTrack,
}

/// Builds a sendonly H.264 + Opus publisher with the default interceptors (NACK responder,
/// sender reports, TWCC feedback), like a browser's WHIP client.
pub fn publisher(
    local: SocketAddr,
    certificate: &RTCCertificate,
    now: Instant,
) -> anyhow::Result<PublisherPeer> {
    let mut engine = MediaEngine::default();
    register(&mut engine, h264(vec![]), VIDEO_PT, RtpCodecKind::Video)?;
    register(&mut engine, opus(), AUDIO_PT, RtpCodecKind::Audio)?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)
        .map_err(|e| anyhow!("interceptors: {e}"))?;
    let mut pc = build(engine, registry, certificate, now)?;
    let mut add =
        |kind: RtpCodecKind, codec: RTCRtpCodec, payload_type: u8| -> anyhow::Result<OutTrack> {
            let ssrc: u32 = rand::random();
            let label = if kind == RtpCodecKind::Video {
                "video"
            } else {
                "audio"
            };
            let track = MediaStreamTrack::new(
                "queqiao-load".to_owned(),
                label.to_owned(),
                label.to_owned(),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec,
                    ..Default::default()
                }],
            );
            let sender = pc
                .add_track(track)
                .map_err(|e| anyhow!("adding a track: {e}"))?;
            Ok(OutTrack {
                sender,
                ssrc,
                payload_type,
            })
        };
    let video = add(RtpCodecKind::Video, h264(vec![]), VIDEO_PT)?;
    let audio = add(RtpCodecKind::Audio, opus(), AUDIO_PT)?;
    let offer = offer(&mut pc, local, now)?;
    Ok(PublisherPeer {
        pc,
        offer,
        video,
        audio,
    })
}
