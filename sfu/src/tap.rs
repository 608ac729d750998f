//! The in-process tap: how the bridge receives a room's media without a WebRTC leg.
//!
//! A tap is a bounded channel of [`TapEvent`]s fed by the shard that owns the room. The
//! shard never waits on it: when a tap's queue is full the event is dropped and counted
//! (the bridge notices the sequence gap and waits for the next keyframe), so a slow
//! consumer cannot slow the publisher or the WebRTC viewers.

use crate::media::{Codec, NativeFrame, SourcePacket};
use std::sync::Arc;
use std::time::SystemTime;

/// Events delivered to a tap, in the order the shard saw them.
#[derive(Debug, Clone)]
pub enum TapEvent {
    /// A publisher session began (first publish, or a reconnect). Packets that follow carry
    /// this `epoch`.
    PublisherStarted {
        /// Publisher session generation.
        epoch: u32,
        /// The negotiated audio codec, if the publisher sends audio.
        audio: Option<Codec>,
        /// The negotiated video codec, if the publisher sends video.
        video: Option<Codec>,
    },
    /// One RTP packet from the publisher (deduplicated, not reordered).
    Packet(Arc<SourcePacket>),
    /// A frame of a publisher that sends no RTP (RTMP ingest), as its container carried
    /// it. Once an epoch has sent one, the bridge builds its outputs from these and ignores
    /// that epoch's [`TapEvent::Packet`]s (the SFU's copy for WebRTC viewers: Opus made
    /// from the AAC, H.264 without B-frames). For such an epoch every `Native` frame comes
    /// before the packets made from it, and a new tap gets the sequence headers and the
    /// current GOP as `Native` frames.
    Native {
        /// Publisher session generation.
        epoch: u32,
        /// The frame.
        frame: Arc<NativeFrame>,
    },
    /// An RTCP sender report from the publisher: maps an RTP timestamp of one track to
    /// wall-clock time, for audio/video synchronisation.
    SenderReport {
        /// Publisher session generation.
        epoch: u32,
        /// The codec of the reported track.
        codec: Codec,
        /// The RTP timestamp that corresponds to `wallclock`.
        rtp_time: u32,
        /// The sender's wall clock (NTP time converted to `SystemTime`).
        wallclock: SystemTime,
    },
    /// The publisher session with this epoch ended (DELETE, failure or timeout).
    PublisherEnded {
        /// Publisher session generation.
        epoch: u32,
    },
    /// The room was closed; no more events will follow.
    RoomClosed,
}

/// The receiving half of a tap.
pub type TapReceiver = tokio::sync::mpsc::Receiver<TapEvent>;
