//! SDP offers from the network: our own inspection, then the engine's negotiation, must
//! never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sfu::offer::OfferSummary;
use sfu::peer::{PeerEnvironment, RoomCodecs, negotiate_publisher, negotiate_viewer};
use std::sync::OnceLock;
use std::time::Instant;

fn env() -> &'static PeerEnvironment {
    static ENV: OnceLock<PeerEnvironment> = OnceLock::new();
    ENV.get_or_init(|| PeerEnvironment::new("127.0.0.1:3478".parse().unwrap()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else { return };
    let Ok(offer) = OfferSummary::parse(sdp) else { return };
    let _ = offer.publish_plan();
    let now = Instant::now();
    let _ = negotiate_publisher(sdp, &offer, env(), now);
    let room = RoomCodecs {
        audio: Some(sfu::media::Codec::Opus),
        video: Some((sfu::media::Codec::H264, Some("42e01f".into()))),
    };
    let _ = negotiate_viewer(sdp, &offer, &room, "stream", env(), now);
});
