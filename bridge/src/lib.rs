//! Queqiao bridge: a live room's WebRTC media as HTTP-FLV, HLS (MPEG-TS), LL-HLS (fMP4)
//! and recordings, for players that cannot speak WebRTC (WeChat `live-player`, WeChat
//! `video`, hls.js/Safari, CDNs).
//!
//! The media modules are sans-IO: no sockets, no tasks, no threads, no clock reads. Time
//! is passed in, outputs are returned as shared [`bytes::Bytes`] (the only exception is
//! [`hls::DirectorySink`], which writes recordings with `std::fs` behind the
//! [`hls::RecordingSink`] trait). The async shell is [`service`] (one task per live room,
//! started from the SFU's events), [`http`] (the axum routes), [`rtmp_push`] and
//! [`recording`].
//!
//! # Data flow
//!
//! ```text
//! sfu tap (TapEvent: publisher RTP or native RTMP frames, sender reports, session start/end)
//!   │
//!   ▼
//! pipeline::RoomPipeline
//!   ├─ video: reorder::ReorderBuffer → h264_depacketizer (RFC 6184, drop-until-IDR, SPS tracking)
//!   ├─ audio: reorder::ReorderBuffer → audio_transcoder (Opus → PCM FIFO → AAC-LC)
//!   ├─ sync::TimelineSync (RTP clocks + sender reports → one 90 kHz timeline)
//!   └─ native_source (RTMP ingest: FLV tag bodies → H.264 with B-frames and AAC, untouched)
//!   │
//!   ▼ media_unit::MediaUnit (VideoAccessUnit | AudioFrame)
//!   ├─► flv::FlvMuxer      → HTTP-FLV / RTMP tags + GOP cache for joining viewers
//!   ├─► hls::HlsMuxer      → ts::TsMuxer segments + live playlist; hls::HlsRecorder → VOD on disk
//!   └─► llhls::LlHlsMuxer  → fmp4 init + parts + LL-HLS playlist with blocking-reload queries
//! ```
//!
//! RTMP ingest runs the other way round, before the SFU: [`ingest::rtmp_session`] turns
//! an encoder's RTMP connection into FLV tag bodies, which the SFU hands to this pipeline
//! untouched (`TapEvent::Native`) and [`ingest::to_webrtc`] converts once into RTP for
//! WebRTC viewers (H.264 packetized, AAC transcoded to Opus, B-frames dropped).
//!
//! One internal media unit type sits between the pipeline and every muxer, so each
//! output format is one adapter. Every muxer encodes a unit once; what it returns is
//! shared by all viewers (cloning a `Bytes` is a reference-count increment).

#![warn(missing_docs)]

pub mod audio_transcoder;
pub mod error;
pub mod flv;
pub mod fmp4;
pub mod h264_depacketizer;
pub mod hls;
pub mod http;
pub mod ingest;
pub mod llhls;
pub mod media_unit;
pub mod native_source;
pub mod pipeline;
pub mod recording;
pub mod reorder;
mod room;
pub mod rtmp_push;
pub mod service;
pub mod sync;
pub mod target_policy;
pub mod ts;

pub use error::BridgeError;
pub use flv::FlvMuxer;
pub use hls::{HlsConfig, HlsMuxer, HlsRecorder};
pub use llhls::{LlHlsConfig, LlHlsMuxer};
pub use media_unit::{AacConfig, AudioFrame, H264Params, MediaUnit, Tracks, VideoAccessUnit};
pub use pipeline::{ClockAnchor, PipelineConfig, PipelineNotice, PipelineOutput, RoomPipeline};
pub use rtmp_push::{RtmpPushConfig, RtmpState, RtmpTarget, RtmpTargetStatus};
pub use service::{
    BridgeConfig, BridgeEvent, BridgeHandle, BridgeRoomStatus, BridgeStats, OutputError,
    RecordingInfo,
};
