//! Datagrams from the shared UDP port: the demux (STUN USERNAME parsing, address table),
//! keyframe detection on RTP payloads, and a negotiated peer's engine reading the bytes
//! must never panic, whatever arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sfu::demux::{DemuxTable, stun_local_ufrag};
use sfu::ids::PeerId;
use sfu::keyframe::is_keyframe;
use sfu::media::Codec;
use sfu::offer::OfferSummary;
use sfu::peer::{PeerEnvironment, negotiate_publisher};
use std::sync::Mutex;
use std::time::Instant;

static PEER: Mutex<Option<rtc::peer_connection::RTCPeerConnection>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let crypto = rtc::crypto::default_provider().expect("rtc ships a default crypto provider");
    let mut table = DemuxTable::new(crypto);
    table.register(PeerId(1), "abcd", "the-ice-password");
    let from = "10.0.0.1:5000".parse().unwrap();
    let _ = table.route(data, from);
    let _ = stun_local_ufrag(data);
    for codec in [Codec::Opus, Codec::H264, Codec::Vp8] {
        let _ = is_keyframe(codec, data);
    }

    let mut guard = PEER.lock().unwrap();
    let peer = guard.get_or_insert_with(|| {
        let sdp = include_str!("../seed_offer.sdp");
        let offer = OfferSummary::parse(sdp).unwrap();
        let env = PeerEnvironment::new("127.0.0.1:3478".parse().unwrap()).unwrap();
        negotiate_publisher(sdp, &offer, &env, Instant::now()).unwrap().connection
    });
    let now = Instant::now();
    let _ = peer.handle_read(TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: "127.0.0.1:3478".parse().unwrap(),
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: bytes::BytesMut::from(data),
    });
    while peer.poll_event().is_some() {}
    while peer.poll_read().is_some() {}
    while peer.poll_write().is_some() {}
    let _ = peer.handle_timeout(now);
});
