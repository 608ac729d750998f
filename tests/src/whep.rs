//! A WHEP viewer built on the async `webrtc` crate: a real WebRTC peer that receives a
//! room's tracks (decrypting SRTP) and records what arrived, plus its `room` data channel.

use crate::http::HttpClient;
use crate::whip::{Signals, wait_connected};
use anyhow::{Context, bail};
use bytes::Bytes;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// What one track of a viewer received.
#[derive(Debug, Default, Clone)]
pub struct TrackStats {
    /// RTP packets received.
    pub packets: u64,
    /// Distinct extended sequence numbers received.
    pub sequence_numbers: BTreeSet<u64>,
    /// The largest forward jump between consecutive new sequence numbers.
    pub largest_gap: u64,
    /// When that jump arrived.
    pub largest_gap_at: Option<Instant>,
    /// SSRCs seen on the track (should stay one across publisher reconnects).
    pub ssrcs: BTreeSet<u32>,
    /// Payloads of the first packets, in arrival order.
    pub first_payloads: Vec<Bytes>,
    /// When the first and the latest packet arrived.
    pub first_at: Option<Instant>,
    /// When the latest packet arrived.
    pub last_at: Option<Instant>,
    /// Timestamps of arrivals, for rate checks.
    pub arrivals: Vec<Instant>,
    highest: Option<u64>,
}

impl TrackStats {
    fn record(&mut self, seq: u16, ssrc: u32, payload: &Bytes, now: Instant) {
        self.packets += 1;
        self.ssrcs.insert(ssrc);
        let extended = match self.highest {
            None => seq as u64 + (1 << 16),
            Some(highest) => {
                // Pick the unwrapped value closest to the highest seen.
                let base = highest & !0xffff;
                [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .map(|b| b + seq as u64)
                    .min_by_key(|candidate| candidate.abs_diff(highest))
                    .unwrap_or(seq as u64)
            }
        };
        if self.highest.is_none_or(|highest| extended > highest) {
            if let Some(highest) = self.highest
                && extended - highest > self.largest_gap
            {
                self.largest_gap = extended - highest;
                self.largest_gap_at = Some(now);
            }
            self.highest = Some(extended);
        }
        self.sequence_numbers.insert(extended);
        if self.first_payloads.len() < 8 {
            self.first_payloads.push(payload.clone());
        }
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        self.arrivals.push(now);
    }

    /// Fraction of the sequence range received (1.0 = nothing missing).
    pub fn delivery_ratio(&self) -> f64 {
        match (self.sequence_numbers.first(), self.sequence_numbers.last()) {
            (Some(first), Some(last)) => {
                self.sequence_numbers.len() as f64 / (last - first + 1) as f64
            }
            _ => 0.0,
        }
    }

    /// Packets that arrived at or after `since`.
    pub fn packets_since(&self, since: Instant) -> usize {
        self.arrivals.iter().filter(|at| **at >= since).count()
    }
}

/// Everything a viewer received.
#[derive(Debug, Default, Clone)]
pub struct ViewerStats {
    /// Audio track.
    pub audio: TrackStats,
    /// Video track.
    pub video: TrackStats,
    /// Text messages on the `room` data channel.
    pub messages: Vec<String>,
    /// Whether a data channel labelled `room` is open.
    pub room_channel_open: bool,
    /// Label of every channel the server opened towards us.
    pub server_channels: Vec<String>,
}

impl ViewerStats {
    /// The RMS level (16-bit PCM) of the first Opus packets this viewer received, decoded
    /// as 48 kHz stereo: well above 0 for a tone, near 0 for silence. Panics if they do not
    /// decode (a broken stream is a test failure).
    pub fn first_audio_rms(&self) -> f64 {
        let mut decoder =
            opus::Decoder::new(48_000, opus::Channels::Stereo).expect("an Opus decoder");
        let mut pcm = vec![0i16; 5760 * 2];
        let (mut sum, mut samples) = (0f64, 0usize);
        for payload in &self.audio.first_payloads {
            let n = decoder
                .decode(payload, &mut pcm, false)
                .expect("the received Opus decodes");
            sum += pcm[..n * 2]
                .iter()
                .map(|s| f64::from(*s).powi(2))
                .sum::<f64>();
            samples += n * 2;
        }
        (sum / samples.max(1) as f64).sqrt()
    }
}

struct ViewerHandler {
    signals: Signals,
    stats: Arc<Mutex<ViewerStats>>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ViewerHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.signals.on_ice_gathering_state_change(state).await;
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.signals.on_connection_state_change(state).await;
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        if let Ok(label) = channel.label().await {
            lock(&self.stats).server_channels.push(label);
        }
        let _ = self.channels.send(channel);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let stats = Arc::clone(&self.stats);
        let kind = track.kind().await;
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let now = Instant::now();
                    let mut stats = lock(&stats);
                    let target = if kind == RtpCodecKind::Video {
                        &mut stats.video
                    } else {
                        &mut stats.audio
                    };
                    target.record(
                        packet.header.sequence_number,
                        packet.header.ssrc,
                        &packet.payload,
                        now,
                    );
                }
            }
        });
    }
}

/// Options for a viewer.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Label of the data channel the client opens (`room` normally; something else to
    /// check the server opens `room` itself; `None` for no data channel at all).
    pub data_channel: Option<String>,
    /// Offer VP8 instead of H.264.
    pub vp8: bool,
    /// Bearer token of a logged-in viewer (chat on the data channel needs one).
    pub token: Option<String>,
}

impl Default for ViewerOptions {
    fn default() -> Self {
        Self {
            data_channel: Some("room".into()),
            vp8: false,
            token: None,
        }
    }
}

/// A live viewer session.
pub struct Viewer {
    pc: Arc<dyn PeerConnection>,
    /// The session URL.
    pub location: String,
    /// What arrived so far.
    pub stats: Arc<Mutex<ViewerStats>>,
    /// When the POST was sent (for time-to-first-packet).
    pub started_at: Instant,
    channel: Arc<Mutex<Option<Arc<dyn DataChannel>>>>,
    http: HttpClient,
}

impl Viewer {
    /// Offers (recvonly audio + video), posts to `whep_url`, connects.
    pub async fn start(whep_url: &str, options: ViewerOptions) -> anyhow::Result<Viewer> {
        let started_at = Instant::now();
        let mut media_engine = MediaEngine::default();
        let feedback = vec![
            RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            },
            RTCPFeedback {
                typ: "nack".into(),
                parameter: "pli".into(),
            },
        ];
        let video_codec = if options.vp8 {
            RTCRtpCodec {
                mime_type: "video/VP8".into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: feedback,
            }
        } else {
            RTCRtpCodec {
                mime_type: "video/H264".into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line:
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
                rtcp_feedback: feedback,
            }
        };
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: video_codec,
                payload_type: if options.vp8 { 96 } else { 106 },
            },
            RtpCodecKind::Video,
        )?;
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "audio/opus".into(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                payload_type: 109,
            },
            RtpCodecKind::Audio,
        )?;
        // NACK generation and receiver reports, like a browser.
        let registry = webrtc::peer_connection::configure_rtcp_reports(
            webrtc::peer_connection::configure_nack(Registry::new(), &mut media_engine),
        );
        let stats = Arc::new(Mutex::new(ViewerStats::default()));
        let (gathered_tx, mut gathered) = mpsc::channel(1);
        let (state_tx, mut states) = mpsc::unbounded_channel();
        let (channel_tx, mut server_channels) = mpsc::unbounded_channel();
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(ViewerHandler {
                    signals: Signals {
                        gathered: gathered_tx,
                        state: state_tx,
                    },
                    stats: Arc::clone(&stats),
                    channels: channel_tx,
                }))
                .with_runtime(crate::runtime())
                .with_udp_addrs(vec!["127.0.0.1:0"])
                .build()
                .await?,
        );
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await?;
        }
        let channel: Arc<Mutex<Option<Arc<dyn DataChannel>>>> = Arc::new(Mutex::new(None));
        if let Some(label) = &options.data_channel {
            let dc = pc.create_data_channel(label, None).await?;
            watch_channel(Arc::clone(&dc), Arc::clone(&stats), Arc::clone(&channel));
        }
        {
            let (stats, channel) = (Arc::clone(&stats), Arc::clone(&channel));
            tokio::spawn(async move {
                while let Some(dc) = server_channels.recv().await {
                    watch_channel(dc, Arc::clone(&stats), Arc::clone(&channel));
                }
            });
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        tokio::time::timeout(Duration::from_secs(5), gathered.recv())
            .await
            .context("ICE gathering did not complete")?;
        let local = pc
            .local_description()
            .await
            .context("no local description")?;
        let http = HttpClient::new();
        let exchange = http
            .post_sdp(whep_url, options.token.as_deref(), &local.sdp)
            .await?;
        if exchange.status != 201 {
            let _ = pc.close().await;
            bail!("WHEP POST answered {}: {}", exchange.status, exchange.body);
        }
        pc.set_remote_description(RTCSessionDescription::answer(exchange.body.clone())?)
            .await?;
        wait_connected(&mut states).await?;
        Ok(Viewer {
            pc,
            location: exchange.location.context("201 without Location")?,
            stats,
            started_at,
            channel,
            http,
        })
    }

    /// A copy of what arrived so far.
    pub fn snapshot(&self) -> ViewerStats {
        lock(&self.stats).clone()
    }

    /// Sends text on the `room` data channel.
    pub async fn send_text(&self, text: &str) -> anyhow::Result<()> {
        let channel = lock(&self.channel)
            .clone()
            .context("no open room channel")?;
        channel.send_text(text).await?;
        Ok(())
    }

    /// Ends the session with `DELETE` and closes the peer; returns the DELETE status.
    pub async fn delete(self, base: &str) -> anyhow::Result<u16> {
        let status = self
            .http
            .delete(&format!("{base}{}", self.location), None)
            .await?;
        let _ = self.pc.close().await;
        Ok(status)
    }

    /// Closes the peer without telling the server.
    pub async fn close(self) {
        let _ = self.pc.close().await;
    }
}

fn watch_channel(
    dc: Arc<dyn DataChannel>,
    stats: Arc<Mutex<ViewerStats>>,
    slot: Arc<Mutex<Option<Arc<dyn DataChannel>>>>,
) {
    tokio::spawn(async move {
        let label = dc.label().await.unwrap_or_default();
        while let Some(event) = dc.poll().await {
            match event {
                DataChannelEvent::OnOpen if label == "room" => {
                    lock(&stats).room_channel_open = true;
                    *lock(&slot) = Some(Arc::clone(&dc));
                }
                DataChannelEvent::OnMessage(message) if message.is_string => {
                    if let Ok(text) = String::from_utf8(message.data.to_vec()) {
                        lock(&stats).messages.push(text);
                    }
                }
                DataChannelEvent::OnClose => break,
                _ => {}
            }
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
