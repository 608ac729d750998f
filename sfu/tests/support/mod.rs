//! An in-memory test bed for [`SfuCore`]: real webrtc-rs `rtc` engines as publishers and
//! viewers, wired back to back with the core by handing datagrams across in memory (no
//! sockets), on a virtual clock the test advances — like str0m's `TestRtc` or
//! quinn-proto's `Pair`. Everything is deterministic except the engines' random ids and
//! keys, which do not change what the scenarios observe.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sfu::events::SfuEvent;
use sfu::ids::{PeerId, RoomId};
use sfu::keyframe::h264_is_keyframe;
use sfu::offer::OfferSummary;
use sfu::peer::{self, PeerEnvironment, RoomCodecs};
use sfu::sfu_core::{Command, Reply, SfuCore};
use sfu::stats::SfuStats;
use sfu::{SfuConfig, SfuSnapshot};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's address as every engine sees it.
pub const SERVER: &str = "10.0.0.1:3478";

/// One received RTP packet, as a viewer saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Video or audio.
    pub video: bool,
    /// The packet's sequence number.
    pub sequence_number: u16,
    /// Its SSRC.
    pub ssrc: u32,
    /// Its payload.
    pub payload: Bytes,
    /// When (virtual time since the bed started).
    pub at: Duration,
}

/// What a client does.
pub enum ClientKind {
    /// Sends H.264 + Opus.
    Publisher {
        /// Payload types the server negotiated (audio, video).
        payload_types: [u8; 2],
        /// Our SSRCs (audio, video).
        ssrcs: [u32; 2],
        /// Our senders (audio, video).
        senders: [RTCRtpSenderId; 2],
        /// Next sequence numbers (audio, video).
        next_seq: [u16; 2],
        /// Frames sent, per kind.
        frames: [u32; 2],
    },
    /// Receives.
    Viewer {
        /// The SSRC the core announced for our video.
        video_ssrc: u32,
        /// Everything received, in order.
        received: Vec<Received>,
        /// The engine's receivers, from `OnTrack` (for sending RTCP).
        receivers: Vec<RTCRtpReceiverId>,
    },
}

/// One in-memory WebRTC client.
pub struct Client {
    /// The session id the core knows it by.
    pub id: PeerId,
    /// The shard its session was placed on.
    pub shard: usize,
    /// Its (fake) address.
    pub addr: SocketAddr,
    /// Its engine.
    pub pc: RTCPeerConnection,
    /// Connected (peer connection state).
    pub connected: bool,
    /// Its datagrams no longer reach the core, and the core's no longer reach it.
    pub unplugged: bool,
    /// Drop the next this-many RTP datagrams the core sends it.
    pub drop_rtp: usize,
    /// SRTCP datagrams the core sent it that start with a PLI (the RTCP header stays in
    /// the clear under SRTCP, so the wire shows what reached the client).
    pub plis_on_wire: usize,
    /// Publisher or viewer state.
    pub kind: ClientKind,
}

impl Client {
    /// What a viewer received.
    pub fn received(&self) -> &[Received] {
        match &self.kind {
            ClientKind::Viewer { received, .. } => received,
            ClientKind::Publisher { .. } => &[],
        }
    }

    /// The SSRC the core sends a viewer's video under.
    pub fn video_ssrc(&self) -> u32 {
        match &self.kind {
            ClientKind::Viewer { video_ssrc, .. } => *video_ssrc,
            ClientKind::Publisher { .. } => 0,
        }
    }

    /// A viewer's received video packets.
    pub fn video(&self) -> Vec<&Received> {
        self.received().iter().filter(|r| r.video).collect()
    }
}

/// The core, its clients and the virtual clock.
pub struct Bed {
    /// The core under test (shard 0).
    pub core: SfuCore,
    /// Shards 1.. of a sharded bed (see [`Bed::sharded`]); a datagram from a client goes
    /// to the shard its address hashes to, as `SO_REUSEPORT` would do it.
    pub shards: Vec<SfuCore>,
    /// Its clients.
    pub clients: Vec<Client>,
    /// Virtual now.
    pub now: Instant,
    /// When the bed started.
    pub start: Instant,
    /// Every event the core emitted.
    pub events: Vec<SfuEvent>,
    env: PeerEnvironment,
    server: SocketAddr,
    next_peer: u64,
    next_addr: u16,
}

impl Bed {
    /// A core with `config` and no clients.
    pub fn new(config: SfuConfig) -> Self {
        Self::sharded(config, 1)
    }

    /// `shards` cores sharing one directory and one set of counters, and no clients.
    pub fn sharded(config: SfuConfig, shards: usize) -> Self {
        let server: SocketAddr = SERVER.parse().expect("a valid address");
        let now = Instant::now();
        let directory = sfu::cross_shard::ShardDirectory::new(shards);
        let stats = Arc::new(SfuStats::default());
        let mut cores: Vec<SfuCore> = (0..shards)
            .map(|shard| {
                SfuCore::new_shard(
                    config.clone(),
                    server,
                    Arc::clone(&stats),
                    now,
                    shard,
                    Arc::clone(&directory),
                )
                .expect("the core builds")
            })
            .collect();
        let core = cores.remove(0);
        Self {
            core,
            shards: cores,
            clients: Vec::new(),
            now,
            start: now,
            events: Vec::new(),
            env: PeerEnvironment {
                answer_nacks: true,
                ..PeerEnvironment::new(server).expect("a certificate")
            },
            server,
            next_peer: 1,
            next_addr: 1,
        }
    }

    /// Shard `shard`'s core.
    pub fn core_of(&mut self, shard: usize) -> &mut SfuCore {
        match shard {
            0 => &mut self.core,
            n => &mut self.shards[n - 1],
        }
    }

    /// Every core, shard 0 first.
    fn cores(&mut self) -> impl Iterator<Item = &mut SfuCore> {
        std::iter::once(&mut self.core).chain(self.shards.iter_mut())
    }

    /// The shard whose socket a datagram from `addr` reaches (the bed's stand-in for the
    /// kernel's `SO_REUSEPORT` hash).
    pub fn arrival_shard(&self, addr: SocketAddr) -> usize {
        let last = match addr.ip() {
            std::net::IpAddr::V4(v4) => v4.octets()[3] as usize,
            std::net::IpAddr::V6(v6) => v6.octets()[15] as usize,
        };
        last % (self.shards.len() + 1)
    }

    fn new_client_engine(&mut self) -> (RTCPeerConnection, SocketAddr) {
        self.next_addr += 1;
        let addr: SocketAddr = format!(
            "10.1.{}.{}:5000",
            self.next_addr / 200,
            self.next_addr % 200 + 2
        )
        .parse()
        .expect("a valid address");
        let mut media = MediaEngine::default();
        media
            .register_default_codecs()
            .expect("default codecs register");
        // AES-CM with HMAC-SHA1: the profile every implementation has.
        let settings = SettingEngineBuilder::new()
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80])
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_setting_engine(settings)
            .with_media_engine(media)
            .build(self.now)
            .expect("a client engine");
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("a host candidate");
        pc.add_local_candidate(
            RTCIceCandidate::from(&candidate)
                .to_json()
                .expect("candidate json"),
        )
        .expect("candidate added");
        (pc, addr)
    }

    fn offer(&mut self, pc: &mut RTCPeerConnection) -> String {
        let offer = pc.create_offer(None).expect("an offer");
        pc.set_local_description(self.now, offer.clone())
            .expect("local description");
        offer.sdp
    }

    fn answer(&mut self, pc: &mut RTCPeerConnection, sdp: String) {
        let answer = RTCSessionDescription::answer(sdp).expect("an answer");
        pc.set_remote_description(self.now, answer)
            .expect("remote description");
    }

    /// Adds an H.264 + Opus publisher to `room` (the core's answer applied) and returns
    /// its index; `Err` is the core's refusal.
    pub fn add_publisher(&mut self, room: &str) -> Result<usize, sfu::SfuError> {
        let (mut pc, addr) = self.new_client_engine();
        let mut senders = Vec::new();
        let mut ssrcs = Vec::new();
        for (kind, mime, clock, channels, fmtp) in [
            (
                RtpCodecKind::Audio,
                "audio/opus",
                48_000,
                2,
                "minptime=10;useinbandfec=1",
            ),
            (
                RtpCodecKind::Video,
                "video/H264",
                90_000,
                0,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            ),
        ] {
            let ssrc = rand_ssrc();
            let track = MediaStreamTrack::new(
                "stream".to_owned(),
                format!("{mime}-track"),
                format!("{mime}-label"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: RTCRtpCodec {
                        mime_type: mime.to_owned(),
                        clock_rate: clock,
                        channels,
                        sdp_fmtp_line: fmtp.to_owned(),
                        rtcp_feedback: vec![],
                    },
                    ..Default::default()
                }],
            );
            senders.push(pc.add_track(track).expect("track added"));
            ssrcs.push(ssrc);
        }
        let sdp = self.offer(&mut pc);
        let summary = OfferSummary::parse(&sdp).map_err(sfu::SfuError::Offer)?;
        let negotiated = peer::negotiate_publisher(&sdp, &summary, &self.env, self.now)?;
        let payload_types = [0, 1].map(|kind| {
            negotiated.tracks[kind]
                .as_ref()
                .map(|t| t.payload_type)
                .expect("both tracks negotiated")
        });
        let answer = negotiated.answer.clone();
        let id = self.new_peer_id();
        let reply = self.core.handle_command(
            self.now,
            Command::AddPublisher {
                room: RoomId::parse(room).expect("a valid room id"),
                peer: id,
                negotiated: Box::new(negotiated),
            },
        );
        match reply {
            Reply::Done(result) => result?,
            _ => panic!("AddPublisher answers Done"),
        }
        self.answer(&mut pc, answer);
        self.clients.push(Client {
            id,
            shard: 0,
            addr,
            pc,
            connected: false,
            unplugged: false,
            drop_rtp: 0,
            plis_on_wire: 0,
            kind: ClientKind::Publisher {
                payload_types,
                ssrcs: [ssrcs[0], ssrcs[1]],
                senders: [senders[0], senders[1]],
                next_seq: [rand_ssrc() as u16, rand_ssrc() as u16],
                frames: [0, 0],
            },
        });
        Ok(self.clients.len() - 1)
    }

    /// Adds a recvonly audio + video viewer to `room` and returns its index.
    pub fn add_viewer(&mut self, room: &str) -> usize {
        self.add_viewer_on(room, 0)
    }

    /// Adds a viewer whose session is placed on `shard` (the room's home is shard 0).
    pub fn add_viewer_on(&mut self, room: &str, shard: usize) -> usize {
        let room = RoomId::parse(room).expect("a valid room id");
        let (mut pc, addr) = self.new_client_engine();
        pc.add_transceiver_from_kind(RtpCodecKind::Audio, None)
            .expect("audio transceiver");
        pc.add_transceiver_from_kind(RtpCodecKind::Video, None)
            .expect("video transceiver");
        let sdp = self.offer(&mut pc);
        let codecs: RoomCodecs = match self
            .core
            .handle_command(self.now, Command::RoomCodecs { room: room.clone() })
        {
            Reply::Codecs(codecs) => codecs.expect("the room is live"),
            _ => panic!("RoomCodecs answers Codecs"),
        };
        let summary = OfferSummary::parse(&sdp).expect("our offer parses");
        let negotiated = peer::negotiate_viewer(
            &sdp,
            &summary,
            &codecs,
            &format!("queqiao-{room}"),
            &self.env,
            self.now,
        )
        .expect("the viewer negotiates");
        let answer = negotiated.answer.clone();
        let video_ssrc = negotiated.tracks[1]
            .as_ref()
            .map(|t| t.ssrc)
            .expect("video negotiated");
        let id = self.new_peer_id();
        let now = self.now;
        match self.core_of(shard).handle_command(
            now,
            Command::AddViewer {
                room,
                home: 0,
                peer: id,
                codecs,
                negotiated: Box::new(negotiated),
            },
        ) {
            Reply::Done(result) => result.expect("the viewer is added"),
            _ => panic!("AddViewer answers Done"),
        }
        self.answer(&mut pc, answer);
        self.clients.push(Client {
            id,
            shard,
            addr,
            pc,
            connected: false,
            unplugged: false,
            drop_rtp: 0,
            plis_on_wire: 0,
            kind: ClientKind::Viewer {
                video_ssrc,
                received: Vec::new(),
                receivers: Vec::new(),
            },
        });
        self.clients.len() - 1
    }

    fn new_peer_id(&mut self) -> PeerId {
        self.next_peer += 2;
        PeerId(self.next_peer)
    }

    /// Closes a session as `DELETE` would.
    pub fn close(&mut self, client: usize) {
        let (id, shard, now) = (
            self.clients[client].id,
            self.clients[client].shard,
            self.now,
        );
        match self
            .core_of(shard)
            .handle_command(now, Command::ClosePeer { peer: id })
        {
            Reply::Session(result) => {
                result.expect("the session exists");
            }
            _ => panic!("ClosePeer answers Session"),
        }
        self.clients[client].unplugged = true;
        self.pump();
    }

    /// The core's snapshot.
    pub fn snapshot(&mut self) -> SfuSnapshot {
        self.snapshot_of(0)
    }

    /// Shard `shard`'s own snapshot.
    pub fn snapshot_of(&mut self, shard: usize) -> SfuSnapshot {
        let now = self.now;
        match self.core_of(shard).handle_command(now, Command::Snapshot) {
            Reply::Snapshot(snapshot) => snapshot,
            _ => panic!("Snapshot answers Snapshot"),
        }
    }

    /// Hands datagrams across until nobody has anything more to send.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            for c in 0..self.clients.len() {
                while let Some(datagram) = self.clients[c].pc.poll_write() {
                    moved = true;
                    if !self.clients[c].unplugged {
                        let from = self.clients[c].addr;
                        let (shard, now) = (self.arrival_shard(from), self.now);
                        self.core_of(shard)
                            .handle_datagram(now, from, &datagram.message);
                    }
                }
            }
            // Messages between shards, until none is left.
            loop {
                let now = self.now;
                let messages: Vec<_> = self
                    .cores()
                    .flat_map(|core| std::iter::from_fn(move || core.poll_shard_message()))
                    .collect();
                if messages.is_empty() {
                    break;
                }
                moved = true;
                for (to, message) in messages {
                    self.core_of(to).handle_shard_message(now, message);
                }
            }
            let transmits: Vec<_> = self
                .cores()
                .flat_map(|core| std::iter::from_fn(move || core.poll_transmit()))
                .collect();
            for transmit in transmits {
                moved = true;
                let Some(client) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.addr == transmit.destination)
                else {
                    continue;
                };
                if client.unplugged {
                    continue;
                }
                if client.drop_rtp > 0 && is_srtp(&transmit.contents) {
                    client.drop_rtp -= 1;
                    continue;
                }
                let message = TaggedBytesMut {
                    now: self.now,
                    transport: TransportContext {
                        local_addr: client.addr,
                        peer_addr: self.server,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(&transmit.contents[..]),
                };
                if is_pli(&transmit.contents) {
                    client.plis_on_wire += 1;
                }
                let _ = client.pc.handle_read(message);
            }
            for c in 0..self.clients.len() {
                self.drain_client(c);
            }
            let events: Vec<_> = self
                .cores()
                .flat_map(|core| std::iter::from_fn(move || core.poll_event()))
                .collect();
            self.events.extend(events);
            if !moved {
                break;
            }
        }
    }

    fn drain_client(&mut self, c: usize) {
        let at = self.now - self.start;
        let client = &mut self.clients[c];
        while let Some(event) = client.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    client.connected = state == RTCPeerConnectionState::Connected;
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    if let ClientKind::Viewer { receivers, .. } = &mut client.kind {
                        receivers.push(init.receiver_id);
                    }
                }
                _ => {}
            }
        }
        while let Some(message) = client.pc.poll_read() {
            if let (
                RTCMessage::RtpPacket(_, packet),
                ClientKind::Viewer {
                    received,
                    video_ssrc,
                    ..
                },
            ) = (message.message, &mut client.kind)
            {
                received.push(Received {
                    video: packet.header.ssrc == *video_ssrc,
                    sequence_number: packet.header.sequence_number,
                    ssrc: packet.header.ssrc,
                    payload: packet.payload,
                    at,
                });
            }
        }
    }

    /// Advances the virtual clock by `duration`, running every timer that falls due.
    pub fn advance(&mut self, duration: Duration) {
        let target = self.now + duration;
        loop {
            self.pump();
            let mut next = self
                .cores()
                .map(|core| core.poll_timeout())
                .min()
                .expect("at least one core");
            for client in &mut self.clients {
                if let Some(at) = client.pc.poll_timeout() {
                    next = next.min(at);
                }
            }
            if next > target {
                self.now = target;
                break;
            }
            // Never stand still: an engine that keeps reporting a past deadline would spin.
            self.now = next.max(self.now + Duration::from_micros(200)).min(target);
            let now = self.now;
            for core in self.cores() {
                if core.poll_timeout() <= now {
                    core.handle_timeout(now);
                }
            }
            for client in &mut self.clients {
                if client.pc.poll_timeout().is_some_and(|at| at <= now) {
                    let _ = client.pc.handle_timeout(now);
                }
            }
            if self.now >= target {
                break;
            }
        }
        self.pump();
    }

    /// Advances until `done` holds, at most `limit` of virtual time; whether it held.
    pub fn advance_until(&mut self, limit: Duration, mut done: impl FnMut(&Bed) -> bool) -> bool {
        let deadline = self.now + limit;
        while self.now < deadline {
            if done(self) {
                return true;
            }
            self.advance(Duration::from_millis(10));
        }
        done(self)
    }

    /// Advances until every client listed is connected (at most 10 s of virtual time).
    pub fn connect(&mut self, clients: &[usize]) {
        let connected = self.advance_until(Duration::from_secs(10), |bed| {
            clients.iter().all(|&c| bed.clients[c].connected)
        });
        assert!(
            connected,
            "clients {clients:?} connect within 10 virtual seconds"
        );
    }

    /// Sends one audio packet (20 ms of Opus) and, every other call, one single-packet
    /// video frame — a keyframe if `keyframe`.
    pub fn send_media(&mut self, publisher: usize, keyframe: bool) {
        let now = self.now;
        let client = &mut self.clients[publisher];
        let ClientKind::Publisher {
            payload_types,
            ssrcs,
            senders,
            next_seq,
            frames,
            ..
        } = &mut client.kind
        else {
            panic!("not a publisher");
        };
        for kind in [0usize, 1] {
            if kind == 1 && !frames[0].is_multiple_of(2) && !keyframe {
                continue;
            }
            let payload: Bytes = if kind == 0 {
                Bytes::from(vec![0xfc; 80])
            } else if keyframe {
                // A single-NAL IDR slice.
                let mut p = vec![0x65];
                p.extend_from_slice(&[0x88; 900]);
                Bytes::from(p)
            } else {
                // A non-IDR slice.
                let mut p = vec![0x41];
                p.extend_from_slice(&[0x9a; 600]);
                Bytes::from(p)
            };
            let clock = if kind == 0 { 960 } else { 3000 };
            let packet = rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: kind == 1,
                    payload_type: payload_types[kind],
                    sequence_number: next_seq[kind],
                    timestamp: frames[kind].wrapping_mul(clock),
                    ssrc: ssrcs[kind],
                    ..Default::default()
                },
                payload,
            };
            next_seq[kind] = next_seq[kind].wrapping_add(1);
            frames[kind] += 1;
            let mut sender = client.pc.rtp_sender(senders[kind]).expect("our sender");
            sender
                .write_rtp(now, packet)
                .expect("the engine takes our RTP");
        }
    }

    /// Publishes for `duration`: a media tick every 20 ms, a keyframe every `gop` ticks
    /// (`None`: never).
    pub fn publish_for(&mut self, publisher: usize, duration: Duration, gop: Option<u32>) {
        let ticks = (duration.as_millis() / 20) as u32;
        for _ in 0..ticks {
            let tick = match &self.clients[publisher].kind {
                ClientKind::Publisher { frames, .. } => frames[0],
                ClientKind::Viewer { .. } => unreachable!(),
            };
            let keyframe = gop.is_some_and(|gop| tick.is_multiple_of(gop));
            self.send_media(publisher, keyframe);
            self.advance(Duration::from_millis(20));
        }
    }
}

impl Bed {
    /// The publisher vanishes (no DELETE); after the stale time a new one takes over the
    /// room and publishes a 1 s GOP for 2 s. Returns the new publisher.
    pub fn replace_vanished_publisher(&mut self, publisher: usize, room: &str) -> usize {
        self.clients[publisher].unplugged = true;
        self.advance(Duration::from_secs(4));
        let second = self
            .add_publisher(room)
            .expect("a stale publisher is replaced");
        self.connect(&[second]);
        self.publish_for(second, Duration::from_secs(2), Some(50));
        second
    }

    /// Sends RTCP from a viewer (NACK, PLI) through its engine, as a browser would.
    pub fn send_rtcp(&mut self, viewer: usize, packets: Vec<Box<dyn rtc::rtcp::packet::Packet>>) {
        let now = self.now;
        let client = &mut self.clients[viewer];
        let ClientKind::Viewer { receivers, .. } = &client.kind else {
            panic!("not a viewer");
        };
        let receiver = *receivers.first().expect("a track opened");
        client
            .pc
            .rtp_receiver(receiver)
            .expect("our receiver")
            .write_rtcp(now, packets)
            .expect("the engine takes our RTCP");
        self.pump();
    }

    /// Sends a NACK from a viewer for `sequence_numbers` of the stream `media_ssrc`.
    pub fn nack(&mut self, viewer: usize, media_ssrc: u32, sequence_numbers: &[u16]) {
        let nacks = sequence_numbers
            .iter()
            .map(|&packet_id| NackPair {
                packet_id,
                lost_packets: 0,
            })
            .collect();
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc,
            nacks,
        };
        self.send_rtcp(viewer, vec![Box::new(nack)]);
    }
}

/// Asserts that a viewer received at least `at_least` video packets, the first a keyframe.
pub fn assert_started_on_keyframe(bed: &Bed, viewer: usize, at_least: usize) {
    let video = bed.clients[viewer].video();
    assert!(
        video.len() >= at_least,
        "viewer {viewer}: {} video packets, expected at least {at_least}",
        video.len()
    );
    assert!(
        is_keyframe(&video[0].payload),
        "viewer {viewer}: the first video packet is a keyframe"
    );
}

/// Whether a received payload starts an H.264 keyframe.
pub fn is_keyframe(payload: &[u8]) -> bool {
    h264_is_keyframe(payload)
}

/// The sequence numbers missing between the first and last of `seqs` (in order received).
pub fn gaps(seqs: &[u16]) -> BTreeSet<u16> {
    let have: BTreeSet<u16> = seqs.iter().copied().collect();
    let mut missing = BTreeSet::new();
    if let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) {
        let mut s = first;
        while s != last {
            if !have.contains(&s) {
                missing.insert(s);
            }
            s = s.wrapping_add(1);
        }
    }
    missing
}

/// An SRTCP datagram whose first RTCP packet is a PLI (PSFB, FMT 1: RFC 4585 §6.3.1).
fn is_pli(datagram: &[u8]) -> bool {
    matches!(datagram, [first, 206, ..] if first & 0xc0 == 0x80 && first & 0x1f == 1)
}

/// SRTP rather than SRTCP (RFC 5761 §4).
fn is_srtp(datagram: &[u8]) -> bool {
    matches!(datagram, [128..=191, second, ..] if !(192..=223).contains(second))
}

fn rand_ssrc() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0x1234_5678);
    NEXT.fetch_add(0x0101_0101, Ordering::Relaxed)
}
