//! Two real rtc engines wired back to back in memory on a virtual clock: a sender (the SFU
//! side, answering) and a receiver (a WHEP viewer, offering recvonly VP8). Shared by the
//! fast-path test and bench (`#[path]`-included).
#![allow(dead_code)]

use bytes::BytesMut;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sfu::fast_path::SrtpKeyTap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The SSRC of the sender's video track (announced in its answer).
pub const MEDIA_SSRC: u32 = 0x5eed_f00d;
/// VP8's payload type on both sides.
pub const PAYLOAD_TYPE: u8 = 96;
/// The extension id the fast path uses for transport-wide sequence numbers in tests.
pub const TWCC_ID: u8 = 5;
/// One tick of the virtual clock.
pub const STEP: Duration = Duration::from_millis(5);
/// Virtual time allowed for ICE + DTLS (they take well under a second here).
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);

/// The one codec both engines register.
pub fn vp8() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            ..Default::default()
        },
        payload_type: PAYLOAD_TYPE,
    }
}

/// One engine and what the test saw come out of it.
pub struct Engine {
    pub pc: RTCPeerConnection,
    pub addr: SocketAddr,
    /// Whether it reported `Connected`.
    pub connected: bool,
    /// Errors `handle_read` returned (decryption failures are logged and dropped inside).
    pub read_errors: Vec<String>,
    /// RTP packets the application got from `poll_read`.
    pub rtp: Vec<rtp::Packet>,
    /// SRTCP datagrams carrying a sender report, as they arrived.
    pub wire_sender_reports: Vec<Vec<u8>>,
}

impl Engine {
    pub fn new(
        addr: SocketAddr,
        settings: SettingEngineBuilder,
        registry: Registry,
        now: Instant,
    ) -> Self {
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_codec(vp8(), RtpCodecKind::Video)
            .expect("VP8 registers");
        let pc = RTCPeerConnectionBuilder::new()
            .with_setting_engine(settings.build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(now)
            .expect("peer connection builds");
        Self {
            pc,
            addr,
            connected: false,
            read_errors: Vec::new(),
            rtp: Vec::new(),
            wire_sender_reports: Vec::new(),
        }
    }

    pub fn add_host_candidate(&mut self) {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.addr.ip().to_string(),
                port: self.addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("host candidate");
        self.pc
            .add_local_candidate(
                RTCIceCandidate::from(&candidate)
                    .to_json()
                    .expect("candidate json"),
            )
            .expect("local candidate");
    }

    /// Feeds one datagram from `from` to the engine.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let result = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        });
        if let Err(error) = result {
            self.read_errors.push(error.to_string());
        }
    }

    /// Drains events and application reads.
    pub fn drain(&mut self) {
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) = event
            {
                self.connected = true;
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = message {
                self.rtp.push(packet);
            }
        }
    }
}

/// An RTCP datagram (RFC 5761 demux: payload type 192–223) whose first packet is an SR.
pub fn is_sender_report(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && datagram[1] == 200
}

/// Moves every pending datagram of `from` to `to`.
pub fn deliver(now: Instant, from: &mut Engine, to: &mut Engine) {
    while let Some(datagram) = from.pc.poll_write() {
        assert_eq!(datagram.transport.peer_addr, to.addr, "only two peers here");
        if is_sender_report(&datagram.message) {
            to.wire_sender_reports.push(datagram.message.to_vec());
        }
        to.receive(now, from.addr, &datagram.message);
    }
}

/// A connected sender/receiver pair on a virtual clock.
pub struct Pair {
    /// The virtual clock.
    pub now: Instant,
    /// The SFU side (answerer, sends the video track).
    pub sender: Engine,
    /// The viewer side (offerer, recvonly).
    pub receiver: Engine,
    /// The sender's video track.
    pub sender_id: RTCRtpSenderId,
    /// The sender's key tap.
    pub tap: SrtpKeyTap,
    /// The receiver's key tap (an independent view of the same handshake).
    pub receiver_tap: SrtpKeyTap,
}

impl Pair {
    /// The receiver (a WHEP viewer) offers recvonly video; the sender (the SFU) answers with a
    /// VP8 track, as in production. `answering_role` picks the sender's DTLS role.
    pub fn connect(profile: SrtpProtectionProfile, answering_role: RTCDtlsRole) -> Pair {
        Self::connect_with(profile, answering_role, Registry::new())
    }

    /// [`connect`](Self::connect) with the sender's interceptors (the SFU registers a
    /// sender-report interceptor for viewers).
    pub fn connect_with(
        profile: SrtpProtectionProfile,
        answering_role: RTCDtlsRole,
        sender_registry: Registry,
    ) -> Pair {
        let start = Instant::now();
        let tap = SrtpKeyTap::new().expect("ring provider");
        let mut sender = Engine::new(
            "10.0.0.1:4000".parse().expect("address"),
            SettingEngineBuilder::new()
                .with_crypto_provider(tap.provider())
                .with_srtp_protection_profiles(vec![profile])
                .with_answering_dtls_role(answering_role),
            sender_registry,
            start,
        );
        let receiver_tap = SrtpKeyTap::new().expect("ring provider");
        let mut receiver = Engine::new(
            "10.0.0.2:5000".parse().expect("address"),
            SettingEngineBuilder::new().with_crypto_provider(receiver_tap.provider()),
            Registry::new(),
            start,
        );
        receiver
            .pc
            .add_transceiver_from_kind(
                RtpCodecKind::Video,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .expect("recvonly transceiver");
        let sender_id = sender
            .pc
            .add_track(MediaStreamTrack::new(
                "fast-path".to_owned(),
                "video".to_owned(),
                "video".to_owned(),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(MEDIA_SSRC),
                        ..Default::default()
                    },
                    codec: vp8().rtp_codec,
                    ..Default::default()
                }],
            ))
            .expect("track");
        receiver.add_host_candidate();
        sender.add_host_candidate();

        let offer = receiver.pc.create_offer(None).expect("offer");
        receiver
            .pc
            .set_local_description(start, offer.clone())
            .expect("local offer");
        sender
            .pc
            .set_remote_description(start, offer)
            .expect("remote offer");
        let answer = sender.pc.create_answer(None).expect("answer");
        sender
            .pc
            .set_local_description(start, answer.clone())
            .expect("local answer");
        receiver
            .pc
            .set_remote_description(start, answer)
            .expect("remote answer");

        let mut pair = Pair {
            now: start,
            sender,
            receiver,
            sender_id,
            tap,
            receiver_tap,
        };
        while !(pair.sender.connected && pair.receiver.connected) {
            assert!(
                pair.now - start < HANDSHAKE_LIMIT,
                "engines did not connect in {HANDSHAKE_LIMIT:?} of virtual time"
            );
            pair.step();
        }
        // Let the final handshake flights settle.
        for _ in 0..20 {
            pair.step();
        }
        assert!(
            pair.sender.read_errors.is_empty(),
            "{:?}",
            pair.sender.read_errors
        );
        assert!(
            pair.receiver.read_errors.is_empty(),
            "{:?}",
            pair.receiver.read_errors
        );
        pair
    }

    /// One step of the virtual clock: exchange datagrams, drain, fire timers.
    pub fn step(&mut self) {
        deliver(self.now, &mut self.sender, &mut self.receiver);
        deliver(self.now, &mut self.receiver, &mut self.sender);
        self.sender.drain();
        self.receiver.drain();
        self.now += STEP;
        self.sender
            .pc
            .handle_timeout(self.now)
            .expect("sender timeout");
        self.receiver
            .pc
            .handle_timeout(self.now)
            .expect("receiver timeout");
    }

    /// Hands a fast-path datagram to the receiving engine.
    pub fn send_protected(&mut self, datagram: &[u8]) {
        let from = self.sender.addr;
        self.receiver.receive(self.now, from, datagram);
        self.receiver.drain();
    }
}
