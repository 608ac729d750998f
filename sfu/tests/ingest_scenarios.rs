//! An ingest publisher (RTMP) in the sans-IO core, on the virtual clock: it takes the
//! publisher seat, WebRTC viewers get its packets from a keyframe, the bridge tap gets its
//! native frames first, and a switch to WHIP keeps viewers' sequence numbers continuous.

mod support;

use bytes::Bytes;
use sfu::events::{CloseReason, SfuEvent};
use sfu::media::{Codec, MediaKind, NativeFrame, SourcePacket};
use sfu::peer::RoomCodecs;
use sfu::sfu_core::{Command, Reply};
use sfu::tap::TapEvent;
use sfu::{PeerId, RoomId, SfuConfig};
use std::sync::Arc;
use std::time::Duration;
use support::{Bed, gaps};
use tokio::sync::oneshot;

const INGEST: PeerId = PeerId(0x1_0000);

fn config() -> SfuConfig {
    SfuConfig {
        silence_timeout: Duration::from_secs(5),
        room_idle_timeout: Duration::from_secs(10),
        ..SfuConfig::default()
    }
}

fn codecs() -> RoomCodecs {
    RoomCodecs {
        audio: Some(Codec::Opus),
        video: Some((Codec::H264, Some("42e01f".to_owned()))),
    }
}

fn add_ingest(
    bed: &mut Bed,
    room: &str,
    peer: PeerId,
) -> (Result<(), sfu::SfuError>, oneshot::Receiver<CloseReason>) {
    let (closed, closed_rx) = oneshot::channel();
    let now = bed.now;
    let result = match bed.core.handle_command(
        now,
        Command::AddIngest {
            room: RoomId::parse(room).expect("a valid room"),
            peer,
            codecs: codecs(),
            closed,
        },
    ) {
        Reply::Done(result) => result,
        _ => panic!("AddIngest answers Done"),
    };
    bed.pump();
    (result, closed_rx)
}

/// What an ingest task would send for one 20 ms tick: an audio frame and its Opus packet,
/// and every other tick a one-packet video frame (an IDR if `keyframe`).
struct Feeder {
    tick: u32,
    seq: [u16; 2],
}

impl Feeder {
    fn tick(&mut self, bed: &mut Bed, keyframe: bool) {
        let now = bed.now;
        let mut native = vec![Arc::new(NativeFrame {
            kind: MediaKind::Audio,
            timestamp_ms: self.tick * 20,
            body: Bytes::from_static(&[0xaf, 0x01, 0x21, 0x10, 0x04]),
            received_at: now,
        })];
        let mut packets = vec![SourcePacket {
            codec: Codec::Opus,
            epoch: 0,
            sequence_number: self.seq[0],
            timestamp: self.tick * 960,
            marker: false,
            keyframe: false,
            frame_start: false,
            video_orientation: None,
            received_at: now,
            payload: Bytes::from(vec![0xfc; 80]),
        }];
        self.seq[0] = self.seq[0].wrapping_add(1);
        if self.tick.is_multiple_of(2) || keyframe {
            let nal: Vec<u8> = if keyframe {
                std::iter::once(0x65).chain([0x88; 900]).collect()
            } else {
                std::iter::once(0x41).chain([0x9a; 600]).collect()
            };
            let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
            body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            body.extend_from_slice(&nal);
            native.push(Arc::new(NativeFrame {
                kind: MediaKind::Video,
                timestamp_ms: self.tick * 20,
                body: Bytes::from(body),
                received_at: now,
            }));
            packets.push(SourcePacket {
                codec: Codec::H264,
                epoch: 0,
                sequence_number: self.seq[1],
                timestamp: self.tick * 1800,
                marker: true,
                keyframe: false,
                frame_start: false,
                video_orientation: None,
                received_at: now,
                payload: Bytes::from(nal),
            });
            self.seq[1] = self.seq[1].wrapping_add(1);
        }
        bed.core.handle_command(
            now,
            Command::IngestMedia {
                peer: INGEST,
                codecs: None,
                native,
                packets,
            },
        );
        self.tick += 1;
        bed.advance(Duration::from_millis(20));
    }

    fn run(&mut self, bed: &mut Bed, duration: Duration, gop: u32) {
        for _ in 0..duration.as_millis() / 20 {
            let keyframe = self.tick.is_multiple_of(gop);
            self.tick(bed, keyframe);
        }
    }
}

fn tap(bed: &mut Bed, room: &str) -> sfu::tap::TapReceiver {
    let now = bed.now;
    match bed.core.handle_command(
        now,
        Command::Tap {
            room: RoomId::parse(room).expect("a valid room"),
        },
    ) {
        Reply::Tap(tap) => tap.expect("the room exists"),
        _ => panic!("Tap answers Tap"),
    }
}

fn drain(tap: &mut sfu::tap::TapReceiver) -> Vec<TapEvent> {
    std::iter::from_fn(|| tap.try_recv().ok()).collect()
}

#[test]
fn an_ingest_publisher_reaches_viewers_and_the_bridge_gets_native_frames_first() {
    let mut bed = Bed::new(config());
    let (seated, _closed) = add_ingest(&mut bed, "rtmp", INGEST);
    seated.expect("the ingest takes the free seat");
    assert!(bed.events.iter().any(|e| matches!(
        e,
        SfuEvent::PeerConnected { peer, role: sfu::PeerRole::Publisher, .. } if *peer == INGEST
    )));
    let mut bridge = tap(&mut bed, "rtmp");
    let mut feeder = Feeder {
        tick: 0,
        seq: [100, 5000],
    };
    feeder.run(&mut bed, Duration::from_millis(500), 50);
    let viewer = bed.add_viewer("rtmp");
    bed.connect(&[viewer]);
    feeder.run(&mut bed, Duration::from_secs(2), 50);

    let video = bed.clients[viewer].video();
    assert!(video.len() >= 40, "video packets: {}", video.len());
    assert!(
        support::is_keyframe(&video[0].payload),
        "the joiner starts on the cached keyframe"
    );
    let seqs: Vec<u16> = video.iter().map(|r| r.sequence_number).collect();
    assert!(gaps(&seqs).is_empty(), "no gaps: {:?}", gaps(&seqs));
    assert!(
        bed.events
            .iter()
            .any(|e| matches!(e, SfuEvent::Live { .. }))
    );

    let events = drain(&mut bridge);
    assert!(
        matches!(events.first(), Some(TapEvent::PublisherStarted { .. })),
        "the session starts the tap"
    );
    let first_native = events
        .iter()
        .position(|e| matches!(e, TapEvent::Native { .. }))
        .expect("native frames reach the tap");
    let first_packet = events
        .iter()
        .position(|e| matches!(e, TapEvent::Packet(_)))
        .expect("packets reach the tap");
    assert!(
        first_native < first_packet,
        "native frames come before their packets"
    );

    // A tap that attaches now is caught up with the GOP as native frames.
    let mut late = tap(&mut bed, "rtmp");
    let catch_up = drain(&mut late);
    assert!(matches!(
        catch_up.first(),
        Some(TapEvent::PublisherStarted { .. })
    ));
    let first_video = catch_up.iter().find_map(|e| match e {
        TapEvent::Native { frame, .. } if frame.kind == MediaKind::Video => Some(frame),
        _ => None,
    });
    assert!(
        first_video.is_some_and(|f| f.is_video_keyframe()),
        "the late tap's first video frame is the GOP's keyframe"
    );
    assert!(
        !catch_up.iter().any(|e| matches!(e, TapEvent::Packet(_))),
        "a native session's tap is caught up with native frames only"
    );
}

#[test]
fn a_second_publisher_is_refused_while_the_ingest_is_live_and_a_switch_to_whip_is_seamless() {
    let mut bed = Bed::new(config());
    let (seated, mut closed) = add_ingest(&mut bed, "switch", INGEST);
    seated.expect("seated");
    let mut feeder = Feeder {
        tick: 0,
        seq: [0, 60_000],
    };
    feeder.run(&mut bed, Duration::from_millis(300), 50);
    let viewer = bed.add_viewer("switch");
    bed.connect(&[viewer]);
    feeder.run(&mut bed, Duration::from_secs(1), 50);

    let (second, _) = add_ingest(&mut bed, "switch", PeerId(0x2_0000));
    assert!(
        matches!(second, Err(sfu::SfuError::PublisherConflict(_))),
        "a second ingest is refused: {second:?}"
    );
    assert!(
        matches!(
            bed.add_publisher("switch"),
            Err(sfu::SfuError::PublisherConflict(_))
        ),
        "a WHIP publisher is refused while the ingest is live"
    );

    // The host stops RTMP (the ingest task closes the session) and goes live by WHIP.
    let before = bed.clients[viewer].video().len();
    let now = bed.now;
    match bed
        .core
        .handle_command(now, Command::ClosePeer { peer: INGEST })
    {
        Reply::Session(result) => {
            result.expect("the ingest session exists");
        }
        _ => panic!("ClosePeer answers Session"),
    }
    bed.pump();
    assert_eq!(closed.try_recv().ok(), Some(CloseReason::Deleted));
    assert!(
        bed.events
            .iter()
            .any(|e| matches!(e, SfuEvent::Offline { .. }))
    );
    let publisher = bed.add_publisher("switch").expect("the seat is free");
    bed.connect(&[publisher]);
    bed.publish_for(publisher, Duration::from_secs(2), Some(50));
    let video = bed.clients[viewer].video();
    assert!(
        video.len() >= before + 40,
        "video after the switch: {}",
        video.len() - before
    );
    let seqs: Vec<u16> = video.iter().map(|r| r.sequence_number).collect();
    let largest_step = seqs
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .max()
        .expect("packets");
    assert!(
        largest_step <= 2,
        "sequence numbers jump by {largest_step} across the switch"
    );
}

#[test]
fn a_stale_ingest_is_replaced_and_told_why() {
    let mut bed = Bed::new(config());
    let (seated, mut closed) = add_ingest(&mut bed, "stale", INGEST);
    seated.expect("seated");
    let mut feeder = Feeder {
        tick: 0,
        seq: [0, 0],
    };
    feeder.run(&mut bed, Duration::from_millis(300), 50);
    // The encoder stalls (no media) past the stale time: a WHIP publisher takes over.
    bed.advance(Duration::from_secs(4));
    let publisher = bed
        .add_publisher("stale")
        .expect("a stale ingest is replaced");
    bed.connect(&[publisher]);
    assert_eq!(closed.try_recv().ok(), Some(CloseReason::Replaced));
    // Media from the replaced ingest is ignored.
    feeder.tick(&mut bed, true);
    let snapshot = bed.snapshot();
    let room = snapshot
        .rooms
        .iter()
        .find(|r| r.id == "stale")
        .expect("room");
    assert_eq!(
        room.publisher.as_deref(),
        Some(bed.clients[publisher].id.to_string().as_str())
    );
}

#[test]
fn a_viewers_keyframe_request_is_not_sent_anywhere_but_counted() {
    let mut bed = Bed::new(config());
    let (seated, _closed) = add_ingest(&mut bed, "pli", INGEST);
    seated.expect("seated");
    let mut feeder = Feeder {
        tick: 1,
        seq: [0, 0],
    };
    // No keyframe yet (a long GOP): a joiner waits, and the request cannot reach RTMP.
    feeder.run(&mut bed, Duration::from_millis(200), 1000);
    feeder.tick(&mut bed, false);
    let viewer = bed.add_viewer("pli");
    bed.connect(&[viewer]);
    feeder.run(&mut bed, Duration::from_millis(400), 1000);
    assert!(
        bed.core.counters().ingest_keyframe_requests >= 1,
        "the unanswerable request is counted"
    );
    assert_eq!(bed.core.counters().plis_sent, 0);
    // The encoder's own next keyframe starts the viewer.
    feeder.tick(&mut bed, true);
    feeder.run(&mut bed, Duration::from_millis(200), 1000);
    let video = bed.clients[viewer].video();
    assert!(!video.is_empty(), "the viewer starts at the next keyframe");
    assert!(support::is_keyframe(&video[0].payload));
}
