//! Real SDP offers made by the `webrtc` engine, for tests that post offers by hand.

use crate::whip::{Signals, publisher_engine};
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder};

/// An H.264 + Opus sendonly offer like a browser publisher's. The peer is closed after
/// the offer is made, so nothing ever connects with it.
pub async fn publisher_offer() -> anyhow::Result<String> {
    let (media_engine, registry, video_codec, audio_codec) = publisher_engine()?;
    let (gathered_tx, mut gathered) = mpsc::channel(1);
    let (state_tx, _states) = mpsc::unbounded_channel();
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
    for (kind, codec) in [("video", video_codec), ("audio", audio_codec)] {
        let codec_kind = if kind == "video" {
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video
        } else {
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio
        };
        let track = Arc::new(TrackLocalStaticSample::new(
            Instant::now(),
            crate::whip::track(kind, codec_kind, codec),
        )?);
        pc.add_track(track as Arc<dyn TrackLocal>).await?;
    }
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    tokio::time::timeout(Duration::from_secs(5), gathered.recv())
        .await
        .context("gathering")?;
    let sdp = pc
        .local_description()
        .await
        .context("no local description")?
        .sdp;
    let _ = pc.close().await;
    Ok(sdp)
}
