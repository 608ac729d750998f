//! A WHIP publisher built on the async `webrtc` crate: a real WebRTC peer that streams the
//! committed clip (H.264 + Opus) in a loop, paced like a live encoder.

use crate::clip::Clip;
use crate::http::{HttpClient, SdpExchange};
use anyhow::{Context, bail};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, StatsSelector, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

/// Gathering and connection state signals from the engine.
pub(crate) struct Signals {
    pub(crate) gathered: mpsc::Sender<()>,
    pub(crate) state: mpsc::UnboundedSender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Signals {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
}

/// A live publisher session.
pub struct Publisher {
    pc: Arc<dyn PeerConnection>,
    http: HttpClient,
    /// The session URL (`Location`).
    pub location: String,
    /// The ETag of the session.
    pub etag: Option<String>,
    stop: Arc<AtomicBool>,
    /// Video frames written so far.
    pub frames_sent: Arc<AtomicU64>,
    /// Audio packets written so far.
    pub audio_sent: Arc<AtomicU64>,
    senders: Vec<Arc<dyn RtpSender>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Publisher {
    /// Offers, posts to `whip_url` with `token`, connects, and starts streaming `clip`.
    pub async fn start(
        whip_url: &str,
        token: Option<&str>,
        clip: Arc<Clip>,
    ) -> anyhow::Result<Publisher> {
        let (media_engine, registry, video_codec, audio_codec) = publisher_engine()?;
        let (gathered_tx, mut gathered) = mpsc::channel(1);
        let (state_tx, mut states) = mpsc::unbounded_channel();
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Signals {
                    gathered: gathered_tx,
                    state: state_tx,
                }))
                .with_runtime(crate::runtime())
                .with_udp_addrs(vec!["127.0.0.1:0"])
                .build()
                .await?,
        );
        let video = Arc::new(TrackLocalStaticSample::new(
            Instant::now(),
            track("video", RtpCodecKind::Video, video_codec),
        )?);
        let audio = Arc::new(TrackLocalStaticSample::new(
            Instant::now(),
            track("audio", RtpCodecKind::Audio, audio_codec),
        )?);
        let video_sender = pc
            .add_track(Arc::clone(&video) as Arc<dyn TrackLocal>)
            .await?;
        let audio_sender = pc
            .add_track(Arc::clone(&audio) as Arc<dyn TrackLocal>)
            .await?;

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
        let exchange: SdpExchange = http.post_sdp(whip_url, token, &local.sdp).await?;
        if exchange.status != 201 {
            bail!("WHIP POST answered {}: {}", exchange.status, exchange.body);
        }
        pc.set_remote_description(RTCSessionDescription::answer(exchange.body.clone())?)
            .await?;
        wait_connected(&mut states).await?;

        let stop = Arc::new(AtomicBool::new(false));
        let frames_sent = Arc::new(AtomicU64::new(0));
        let audio_sent = Arc::new(AtomicU64::new(0));
        let video_pt = negotiated_payload_type(&video_sender).await?;
        let audio_pt = negotiated_payload_type(&audio_sender).await?;
        let video_ssrc = *video
            .ssrcs()
            .await
            .first()
            .context("video track has no SSRC")?;
        let audio_ssrc = *audio
            .ssrcs()
            .await
            .first()
            .context("audio track has no SSRC")?;

        let mut tasks = Vec::new();
        {
            let (stop, sent, clip) = (
                Arc::clone(&stop),
                Arc::clone(&frames_sent),
                Arc::clone(&clip),
            );
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(clip.frame_duration);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for frame in clip.video.iter().cycle() {
                    ticker.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sample = Sample {
                        data: frame.annex_b.clone(),
                        duration: clip.frame_duration,
                        ..Sample::new(Instant::now())
                    };
                    if video
                        .sample_writer(video_ssrc, video_pt)
                        .write_sample(&sample)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        {
            let (stop, sent, clip) = (
                Arc::clone(&stop),
                Arc::clone(&audio_sent),
                Arc::clone(&clip),
            );
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_millis(20));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for packet in clip.audio.iter().cycle() {
                    ticker.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sample = Sample {
                        data: packet.clone(),
                        duration: Duration::from_millis(20),
                        ..Sample::new(Instant::now())
                    };
                    if audio
                        .sample_writer(audio_ssrc, audio_pt)
                        .write_sample(&sample)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        Ok(Publisher {
            pc,
            http,
            location: exchange.location.context("201 without Location")?,
            etag: exchange.etag,
            stop,
            frames_sent,
            audio_sent,
            senders: vec![video_sender, audio_sender],
            tasks,
        })
    }

    /// PLIs received from the server for the video track (from the engine's statistics).
    pub async fn pli_count(&self) -> u32 {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        report.outbound_rtp_streams().map(|s| s.pli_count).sum()
    }

    /// RTP packets sent, all tracks.
    pub async fn packets_sent(&self) -> u64 {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        report
            .outbound_rtp_streams()
            .map(|s| s.sent_rtp_stream_stats.packets_sent)
            .sum()
    }

    /// Ends the session properly: `DELETE` on the session URL, then closes the peer.
    pub async fn delete(mut self, base: &str, token: Option<&str>) -> anyhow::Result<u16> {
        let status = self
            .http
            .delete(&format!("{base}{}", self.location), token)
            .await?;
        self.stop_streaming().await;
        Ok(status)
    }

    /// Vanishes without telling the server (a crashed app, a lost network).
    pub async fn drop_silently(mut self) {
        self.stop_streaming().await;
    }

    async fn stop_streaming(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let _ = &self.senders;
        let _ = self.pc.close().await;
    }
}

/// The publisher's engine: H.264 constrained baseline (PT 102) and Opus (PT 111), with
/// the default interceptors (NACK responder, reports, TWCC), like a browser.
pub(crate) fn publisher_engine() -> anyhow::Result<(MediaEngine, Registry, RTCRtpCodec, RTCRtpCodec)>
{
    let mut media_engine = MediaEngine::default();
    let video_codec = RTCRtpCodec {
        mime_type: "video/H264".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .to_owned(),
        rtcp_feedback: vec![],
    };
    let audio_codec = RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    };
    media_engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: video_codec.clone(),
            payload_type: 102,
        },
        RtpCodecKind::Video,
    )?;
    media_engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: audio_codec.clone(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
    Ok((media_engine, registry, video_codec, audio_codec))
}

pub(crate) fn track(kind: &str, codec_kind: RtpCodecKind, codec: RTCRtpCodec) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "queqiao-test".to_owned(),
        kind.to_owned(),
        kind.to_owned(),
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(rand::random()),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>) -> anyhow::Result<u8> {
    sender
        .get_parameters()
        .await?
        .rtp_parameters
        .codecs
        .first()
        .map(|codec| codec.payload_type)
        .context("sender has no negotiated codec")
}

/// Waits for `Connected` (10 s), failing on `Failed`/`Closed`.
pub(crate) async fn wait_connected(
    states: &mut mpsc::UnboundedReceiver<RTCPeerConnectionState>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, states.recv()).await {
            Ok(Some(RTCPeerConnectionState::Connected)) => return Ok(()),
            Ok(Some(RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)) => {
                bail!("connection failed")
            }
            Ok(Some(_)) => continue,
            Ok(None) => bail!("connection state channel closed"),
            Err(_) => bail!("not connected within 10 s"),
        }
    }
}
