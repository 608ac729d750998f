//! RTMP ingest: publishers that push RTMP (OBS, ffmpeg, WeChat `<live-pusher>`) into a room.
//!
//! An RTMP publisher takes a room's publisher seat like a WHIP publisher, but it sends
//! FLV-style tags (H.264 with B-frames possible, AAC) instead of RTP. Everything here is
//! sans-IO: the ingest task owns the TCP connection and the clock.
//!
//! # Data flow
//!
//! ```text
//! RTMP chunks (TCP)
//!   │
//!   ▼ rtmp_session::IngestSession (handshake, chunk stream, connect/publish)
//! FLV tag bodies as sfu::media::NativeFrame (codec header bytes included)
//!   ├─► untouched to the bridge outputs (FLV, HLS, LL-HLS, recordings, RTMP push):
//!   │   they carry the source's own H.264/AAC, no transcoding
//!   └─► to_webrtc::WebRtcConverter
//!         ├─ video: h264_packetizer (RFC 6184: STAP-A SPS/PPS before IDRs, FU-A),
//!         │         B-frames dropped (WebRTC cannot reorder)
//!         └─ audio: aac_to_opus (AAC → PCM → 48 kHz → Opus 20 ms)
//!       → sfu::media::SourcePacket for the SFU core (it sets the epoch and fans the
//!         packets out to WebRTC viewers like a WHIP publisher's)
//! ```

pub mod aac_to_opus;
pub mod h264_packetizer;
pub mod rtmp_session;
pub mod to_webrtc;
