//! `queqiao-load`: a load generator for WHIP/WHEP servers (ours or anyone's).
//!
//! The `webrtc` scenario publishes a real H.264 + Opus stream by WHIP and opens N WHEP
//! viewers that are real WebRTC peers (ICE, DTLS, SRTP decryption, NACK, RTCP reports),
//! then measures what GUIDE §7 asks: packets forwarded per second, loss, server CPU per
//! forwarded packet, forwarding delay, time to first frame, RSS per viewer, PLIs.
//!
//! Built on the sans-IO `rtc` engine with our own loops (one thread per viewer worker, one
//! for the publisher) rather than the async `webrtc` crate, whose per-peer sockets, tasks
//! and locks cost 1.6–2× more per received packet (measured in BENCHMARKS.md; the async
//! viewers stay available as `--viewer-engine async` for that comparison).
//!
//! Layout: [`measure`] (pure math, unit-tested), [`net`] (batched UDP), [`media`] (the
//! packetized clip), [`peer`] (client peers), [`publisher`], [`viewers`] (and
//! [`async_viewers`]), [`probe`] (server `/proc` and `/metrics`), [`report`] and
//! [`summary`] (medians of repeated runs into BENCHMARKS.md), and one module per scenario
//! ([`webrtc`], and [`http_players`] for `flv` and `hls`, whose sans-IO parsers are in
//! [`http_media`]); `chat` lives in [`crate::chatload`].

pub mod async_viewers;
pub mod feedback;
pub mod http_media;
pub mod http_players;
pub mod measure;
pub mod media;
pub mod net;
pub mod peer;
pub mod probe;
pub mod publisher;
pub mod report;
pub mod summary;
pub mod viewers;
pub mod webrtc;
