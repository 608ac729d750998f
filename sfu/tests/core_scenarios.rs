//! Deterministic scenarios for the sans-IO [`sfu::SfuCore`] on a virtual clock, against
//! real webrtc-rs engines as publishers and viewers wired in memory (see `support`).

mod support;

use sfu::SfuConfig;
use sfu::events::{CloseReason, SfuEvent};
use std::time::Duration;
use support::{Bed, gaps, is_keyframe};

fn config() -> SfuConfig {
    if std::env::var("BED_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("BED_LOG"))
            .with_test_writer()
            .try_init();
    }
    SfuConfig {
        silence_timeout: Duration::from_secs(5),
        room_idle_timeout: Duration::from_secs(10),
        ..SfuConfig::default()
    }
}

/// A live room: one publisher connected and sending a 1 s GOP for `warmup`.
fn live_room(room: &str, warmup: Duration) -> (Bed, usize) {
    let mut bed = Bed::new(config());
    let publisher = bed.add_publisher(room).expect("the publisher is accepted");
    bed.connect(&[publisher]);
    bed.publish_for(publisher, warmup, Some(50));
    (bed, publisher)
}

#[test]
fn a_viewer_connects_and_receives_the_stream() {
    let (mut bed, publisher) = live_room("basic", Duration::from_millis(200));
    let viewer = bed.add_viewer("basic");
    bed.connect(&[viewer]);
    bed.publish_for(publisher, Duration::from_secs(2), Some(50));
    let video = bed.clients[viewer].video();
    assert!(video.len() >= 40, "video packets received: {}", video.len());
    let audio = bed.clients[viewer].received().len() - video.len();
    assert!(audio >= 90, "audio packets received: {audio}");
    assert!(bed.core.counters().rtp_forwarded > 100);
    // Every packet went through the SRTP fast path (the viewer's engine decrypted it),
    // and the fast path's sender reports went out through the engine's RTCP path.
    let counters = bed.core.counters();
    assert_eq!(counters.fast_path_unavailable, 0);
    assert_eq!(counters.rtp_fast_path, counters.rtp_forwarded);
    assert!(counters.fast_path_sender_reports >= 2, "{counters:?}");
}

#[test]
fn a_joiner_gets_the_cached_gop_starting_on_a_keyframe() {
    // Keyframe at tick 0, then 40 ticks (20 video frames) of deltas.
    let (mut bed, publisher) = live_room("gop", Duration::from_millis(800));
    let plis_before = bed.clients[publisher].plis_on_wire;
    let viewer = bed.add_viewer("gop");
    bed.connect(&[viewer]);
    // Without the publisher sending anything more, the joiner already has the GOP.
    bed.advance(Duration::from_millis(50));
    let video = bed.clients[viewer].video();
    assert!(
        video.len() >= 15,
        "GOP packets replayed before any new media: {}",
        video.len()
    );
    assert!(
        is_keyframe(&video[0].payload),
        "the first packet is a keyframe"
    );
    let seqs: Vec<u16> = video.iter().map(|r| r.sequence_number).collect();
    assert!(gaps(&seqs).is_empty(), "the replay is contiguous: {seqs:?}");
    assert_eq!(bed.core.counters().keyframe_cache_hits, 1);
    bed.advance(Duration::from_millis(500));
    assert_eq!(
        bed.clients[publisher].plis_on_wire, plis_before,
        "a cache hit asks the publisher for nothing"
    );
}

#[test]
fn publisher_replacement_keeps_sequence_numbers_continuous() {
    let (mut bed, first) = live_room("swap", Duration::from_millis(200));
    let viewer = bed.add_viewer("swap");
    bed.connect(&[viewer]);
    bed.publish_for(first, Duration::from_secs(1), Some(50));
    let before = bed.clients[viewer].video().len();
    assert!(before >= 20, "video before the switch: {before}");
    bed.replace_vanished_publisher(first, "swap");
    let video = bed.clients[viewer].video();
    assert!(
        video.len() >= before + 40,
        "video after the switch: {}",
        video.len() - before
    );
    let ssrcs: std::collections::BTreeSet<u32> = video.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC across publishers");
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
    assert!(
        bed.events.iter().any(|e| matches!(
            e,
            SfuEvent::PeerClosed {
                reason: CloseReason::Replaced,
                ..
            }
        )),
        "the old publisher is closed as replaced"
    );
}

#[test]
fn a_nack_is_answered_from_the_ring() {
    let (mut bed, publisher) = live_room("nack", Duration::from_millis(200));
    let viewer = bed.add_viewer("nack");
    bed.connect(&[viewer]);
    bed.publish_for(publisher, Duration::from_millis(400), Some(50));
    // Lose the next three RTP datagrams on the way to the viewer.
    bed.clients[viewer].drop_rtp = 3;
    bed.publish_for(publisher, Duration::from_millis(400), Some(50));
    let video: Vec<u16> = bed.clients[viewer]
        .video()
        .iter()
        .map(|r| r.sequence_number)
        .collect();
    let missing: Vec<u16> = gaps(&video).into_iter().collect();
    assert!(!missing.is_empty(), "a video packet was lost");
    let ssrc = bed.clients[viewer].video_ssrc();
    let rtp_in = bed.core.counters().rtp_in;
    bed.nack(viewer, ssrc, &missing);
    bed.advance(Duration::from_millis(20));
    let after: Vec<&support::Received> = bed.clients[viewer].video();
    for seq in &missing {
        let packet = after
            .iter()
            .find(|r| r.sequence_number == *seq)
            .unwrap_or_else(|| panic!("sequence number {seq} retransmitted"));
        assert!(!packet.payload.is_empty());
    }
    assert_eq!(
        bed.core.counters().rtp_in,
        rtp_in,
        "answered from the ring, not by asking the publisher"
    );
    assert_eq!(bed.core.counters().nacks_received, missing.len() as u64);
    assert_eq!(bed.core.counters().retransmissions, missing.len() as u64);
    assert_eq!(bed.core.counters().retransmission_misses, 0);
    // The answers went out through the SRTP fast path (same SSRC, same sequence numbers,
    // protected with the rollover counter they had), and the viewer's engine took them.
    let counters = bed.core.counters();
    assert_eq!(counters.rtp_fast_path, counters.rtp_forwarded);
    let video: Vec<u16> = bed.clients[viewer]
        .video()
        .iter()
        .map(|r| r.sequence_number)
        .collect();
    assert!(gaps(&video).is_empty(), "nothing missing after the answers");
}

/// Five PLIs from one viewer, 20 ms apart.
fn viewer_plis(bed: &mut Bed, viewer: usize) {
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    let ssrc = bed.clients[viewer].video_ssrc();
    for _ in 0..5 {
        bed.send_rtcp(
            viewer,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: ssrc,
            })],
        );
        bed.advance(Duration::from_millis(20));
    }
}

#[test]
fn a_viewer_pli_reaches_the_publisher_coalesced() {
    let (mut bed, publisher) = live_room("vpli", Duration::from_millis(200));
    let viewer = bed.add_viewer("vpli");
    bed.connect(&[viewer]);
    bed.publish_for(publisher, Duration::from_millis(1500), Some(50));

    // Right after a keyframe reached the viewer: the request crossed it, nobody is asked.
    bed.publish_for(publisher, Duration::from_millis(20), Some(1));
    let before = bed.clients[publisher].plis_on_wire;
    viewer_plis(&mut bed, viewer);
    let counters = bed.core.counters();
    assert_eq!(counters.viewer_keyframe_requests, 5);
    assert_eq!(counters.viewer_keyframe_requests_already_served, 5);
    assert_eq!(bed.clients[publisher].plis_on_wire - before, 0);

    // Long after the last keyframe, with a complete GOP cached: replayed to that viewer
    // alone, the publisher is not asked.
    bed.publish_for(publisher, Duration::from_millis(1200), None);
    let received = bed.clients[viewer].video().len();
    let before = bed.clients[publisher].plis_on_wire;
    viewer_plis(&mut bed, viewer);
    assert_eq!(bed.core.counters().viewer_keyframe_requests_replayed, 1);
    assert_eq!(bed.clients[publisher].plis_on_wire - before, 0);
    let replayed = &bed.clients[viewer].video()[received..];
    assert!(
        replayed.iter().any(|r| is_keyframe(&r.payload)),
        "the cached keyframe was sent again"
    );

    // No usable cache (the GOP outgrew it): the publisher is asked, five PLIs as one.
    bed.publish_for(publisher, Duration::from_secs(24), None);
    let before = bed.clients[publisher].plis_on_wire;
    viewer_plis(&mut bed, viewer);
    assert_eq!(
        bed.clients[publisher].plis_on_wire - before,
        1,
        "five PLIs in 100 ms reach the publisher as one: {:?}",
        bed.core.counters()
    );
}

#[test]
fn many_joins_cost_at_most_one_pli_per_second() {
    let mut bed = Bed::new(config());
    let publisher = bed.add_publisher("pli").expect("accepted");
    bed.connect(&[publisher]);
    // An encoder that sends no keyframe: every joiner misses the cache and waits.
    bed.publish_for(publisher, Duration::from_millis(200), None);
    let plis_before = bed.clients[publisher].plis_on_wire;
    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(bed.add_viewer("pli"));
        bed.publish_for(publisher, Duration::from_millis(100), None);
    }
    bed.connect(&viewers);
    // 2 s of joins and waiting in all (the encoder ignores every PLI).
    bed.publish_for(publisher, Duration::from_secs(1), None);
    let plis = bed.clients[publisher].plis_on_wire - plis_before;
    let elapsed_secs = 3;
    assert!(plis >= 1, "the publisher was asked for a keyframe");
    assert!(
        plis <= elapsed_secs + 1,
        "{plis} PLIs reached the publisher in {elapsed_secs} s"
    );
    assert_eq!(bed.core.counters().plis_sent as usize, plis_before + plis);
    assert!(
        bed.core.counters().keyframe_requests >= 20,
        "requests were made and coalesced: {}",
        bed.core.counters().keyframe_requests
    );
}

#[test]
fn an_empty_room_is_removed_after_the_idle_timeout() {
    let (mut bed, publisher) = live_room("idle", Duration::from_millis(200));
    let viewer = bed.add_viewer("idle");
    bed.connect(&[viewer]);
    bed.close(viewer);
    bed.close(publisher);
    assert_eq!(
        bed.snapshot().rooms.len(),
        1,
        "the room outlives its sessions a while"
    );
    bed.advance(Duration::from_secs(5));
    assert_eq!(
        bed.snapshot().rooms.len(),
        1,
        "still within the idle timeout"
    );
    bed.advance(Duration::from_secs(6));
    let snapshot = bed.snapshot();
    assert!(
        snapshot.rooms.is_empty(),
        "rooms left: {:?}",
        snapshot.rooms
    );
    assert_eq!(snapshot.peers, 0);
    assert_eq!(snapshot.demux_ufrags, 0);
    assert_eq!(snapshot.demux_addresses, 0);
}

#[test]
fn a_viewer_that_stops_answering_is_removed() {
    let (mut bed, publisher) = live_room("silent", Duration::from_millis(200));
    let quiet = bed.add_viewer("silent");
    let chatty = bed.add_viewer("silent");
    bed.connect(&[quiet, chatty]);
    bed.publish_for(publisher, Duration::from_secs(1), Some(50));
    // The viewer goes away without a word: no consent checks, nothing.
    bed.clients[quiet].unplugged = true;
    bed.publish_for(publisher, Duration::from_secs(7), Some(50));
    let quiet_id = bed.clients[quiet].id;
    assert!(
        bed.events.iter().any(|e| matches!(
            e,
            SfuEvent::PeerClosed { peer, reason: CloseReason::Silent, .. } if *peer == quiet_id
        )),
        "the silent viewer is closed for silence"
    );
    assert_eq!(bed.core.counters().peers_silent, 1);
    let snapshot = bed.snapshot();
    assert_eq!(snapshot.peers, 2, "the publisher and the live viewer stay");
    assert_eq!(snapshot.rooms[0].viewers, 1);
    // The live viewer kept receiving all along.
    let recent = bed.clients[chatty]
        .video()
        .iter()
        .filter(|r| r.at > Duration::from_secs(6))
        .count();
    assert!(recent >= 20, "the other viewer still receives: {recent}");
}

#[test]
fn a_forged_stun_request_learns_no_address_and_the_peer_still_connects() {
    use rtc::stun::integrity::MessageIntegrity;
    use rtc::stun::message::{BINDING_REQUEST, Message, Setter};
    use rtc::stun::textattrs::TextAttribute;
    let (mut bed, _publisher) = live_room("forged", Duration::from_millis(200));
    let viewer = bed.add_viewer("forged");
    // Our ufrag for the viewer, from the core's answer as the client saw it.
    let remote = bed.clients[viewer]
        .pc
        .remote_description()
        .expect("the answer is set")
        .sdp
        .clone();
    let ufrag = remote
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("the answer has a ufrag")
        .trim()
        .to_owned();
    let crypto = rtc::crypto::default_provider().expect("a crypto provider");
    let mut forged = Message::new();
    forged.set_type(BINDING_REQUEST);
    forged.new_transaction_id().expect("a transaction id");
    forged.write_header();
    TextAttribute::new(
        rtc::stun::attributes::ATTR_USERNAME,
        format!("{ufrag}:evil"),
    )
    .add_to(&mut forged)
    .expect("USERNAME fits");
    MessageIntegrity::new_short_term_integrity_with_provider("guessed".into(), crypto.crypto())
        .add_to(&mut forged)
        .expect("MESSAGE-INTEGRITY fits");
    let attacker: std::net::SocketAddr = "203.0.113.66:4000".parse().unwrap();
    let addresses_before = bed.snapshot().demux_addresses;
    bed.core.handle_datagram(bed.now, attacker, &forged.raw);
    assert_eq!(bed.core.counters().dropped_bad_integrity, 1);
    assert_eq!(
        bed.snapshot().demux_addresses,
        addresses_before,
        "the forged request taught the table nothing"
    );
    assert!(bed.core.poll_transmit().is_none(), "and got no answer");
    // The real viewer, with the right password, connects as usual.
    bed.connect(&[viewer]);
    assert_eq!(bed.snapshot().demux_addresses, addresses_before + 1);
}

#[test]
fn a_joiners_gop_replay_is_paced_with_live_packets_queued_behind_it() {
    // A 2 s GOP: one keyframe, then 49 delta frames (one packet each, ~31 KB in all).
    let mut bed = Bed::new(config());
    let publisher = bed.add_publisher("paced").expect("accepted");
    bed.connect(&[publisher]);
    bed.publish_for(publisher, Duration::from_secs(2), Some(1000));
    let viewer = bed.add_viewer("paced");
    bed.connect(&[viewer]);
    let joined = bed.now - bed.start;
    // The replay runs at ≥ 2 Mbit/s: ~1.25 KB per 5 ms tick, not the whole GOP at once.
    let first_tick = bed.clients[viewer]
        .video()
        .iter()
        .filter(|r| r.at <= joined + Duration::from_millis(1))
        .count();
    assert!(
        (1..=4).contains(&first_tick),
        "{first_tick} video packets in the first tick"
    );
    // Meanwhile the publisher goes on; its packets wait behind the replay, in order.
    bed.publish_for(publisher, Duration::from_millis(400), None);
    let video = bed.clients[viewer].video();
    assert!(is_keyframe(&video[0].payload));
    assert!(video.len() >= 60, "GOP and live packets: {}", video.len());
    let seqs: Vec<u16> = video.iter().map(|r| r.sequence_number).collect();
    assert!(gaps(&seqs).is_empty(), "contiguous: {seqs:?}");
    let steps_forward = seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
    assert!(steps_forward, "in order: {seqs:?}");
    let replay_end = video[49].at - joined;
    assert!(
        replay_end >= Duration::from_millis(50) && replay_end <= Duration::from_millis(300),
        "the 50-packet GOP took {replay_end:?}"
    );
}
