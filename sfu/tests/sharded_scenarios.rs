//! Deterministic scenarios for several [`sfu::SfuCore`] shards sharing one directory, on a
//! virtual clock (see `support`): a room homed on shard 0, viewers placed on other shards,
//! datagrams arriving on whichever shard the client's address hashes to.

mod support;

use sfu::SfuConfig;
use std::time::Duration;
use support::{Bed, assert_started_on_keyframe, gaps, is_keyframe};

fn config() -> SfuConfig {
    SfuConfig {
        silence_timeout: Duration::from_secs(5),
        room_idle_timeout: Duration::from_secs(10),
        ..SfuConfig::default()
    }
}

/// A room homed on shard 0 of a two-shard bed, its publisher sending a 1 s GOP.
fn live_room(room: &str, warmup: Duration) -> (Bed, usize) {
    let mut bed = Bed::sharded(config(), 2);
    let publisher = bed.add_publisher(room).expect("the publisher is accepted");
    bed.connect(&[publisher]);
    bed.publish_for(publisher, warmup, Some(50));
    (bed, publisher)
}

fn mirrors(bed: &mut Bed, shard: usize) -> usize {
    bed.snapshot_of(shard).shards[0].mirrors
}

#[test]
fn viewers_on_another_shard_start_on_the_gop_and_follow_the_stream() {
    let (mut bed, publisher) = live_room("spread", Duration::from_millis(800));
    // Four viewers, two per shard; the bed's addresses alternate between the shards'
    // sockets, so some of each shard's datagrams arrive on the other one.
    let viewers: Vec<usize> = (0..4).map(|i| bed.add_viewer_on("spread", i % 2)).collect();
    let landed_elsewhere = viewers
        .iter()
        .filter(|&&v| bed.arrival_shard(bed.clients[v].addr) != bed.clients[v].shard)
        .count();
    assert!(landed_elsewhere > 0, "the bed exercises hand-overs");
    bed.connect(&viewers);
    bed.advance(Duration::from_millis(50));
    for &viewer in &viewers {
        assert_started_on_keyframe(&bed, viewer, 15);
    }
    bed.publish_for(publisher, Duration::from_secs(2), Some(50));
    for &viewer in &viewers {
        let video = bed.clients[viewer].video();
        let seqs: Vec<u16> = video.iter().map(|r| r.sequence_number).collect();
        assert!(gaps(&seqs).is_empty(), "viewer {viewer}: contiguous");
        assert!(
            video.len() >= 65,
            "viewer {viewer}: {} video packets",
            video.len()
        );
        let audio = bed.clients[viewer].received().len() - video.len();
        assert!(audio >= 95, "viewer {viewer}: {audio} audio packets");
    }
    let home = *bed.core.counters();
    let other = *bed.core_of(1).counters();
    assert!(home.relay_packets >= 150, "{home:?}");
    assert!(
        home.datagrams_handed_over + other.datagrams_handed_over > 0,
        "some datagrams were handed to their owner"
    );
    assert_eq!(mirrors(&mut bed, 0), 0);
    assert_eq!(mirrors(&mut bed, 1), 1, "shard 1 mirrors the room");
    // One relayed copy per packet for the shard, not one per viewer on it.
    assert!(home.relay_packets <= home.rtp_in + 50, "{home:?}");
}

#[test]
fn publisher_replacement_keeps_numbering_on_every_shard() {
    let (mut bed, first) = live_room("swap", Duration::from_millis(200));
    let viewers = [bed.add_viewer_on("swap", 0), bed.add_viewer_on("swap", 1)];
    bed.connect(&viewers);
    bed.publish_for(first, Duration::from_secs(1), Some(50));
    let before: Vec<usize> = viewers
        .iter()
        .map(|&v| bed.clients[v].video().len())
        .collect();
    bed.replace_vanished_publisher(first, "swap");
    for (&viewer, before) in viewers.iter().zip(before) {
        let video = bed.clients[viewer].video();
        assert!(
            video.len() >= before + 40,
            "viewer {viewer}: video after the switch"
        );
        let ssrcs: std::collections::BTreeSet<u32> = video.iter().map(|r| r.ssrc).collect();
        assert_eq!(
            ssrcs.len(),
            1,
            "viewer {viewer}: one SSRC across publishers"
        );
        let largest_step = video
            .windows(2)
            .map(|w| w[1].sequence_number.wrapping_sub(w[0].sequence_number))
            .max()
            .expect("packets");
        assert!(largest_step <= 2, "viewer {viewer}: jump of {largest_step}");
    }
}

#[test]
fn joins_on_another_shard_cost_the_publisher_at_most_one_pli_per_second() {
    let mut bed = Bed::sharded(config(), 2);
    let publisher = bed.add_publisher("pli").expect("accepted");
    bed.connect(&[publisher]);
    // An encoder that sends no keyframe: every joiner misses the cache and waits.
    bed.publish_for(publisher, Duration::from_millis(200), None);
    let plis_before = bed.clients[publisher].plis_on_wire;
    let mut viewers = Vec::new();
    for i in 0..20 {
        viewers.push(bed.add_viewer_on("pli", i % 2));
        bed.publish_for(publisher, Duration::from_millis(100), None);
    }
    bed.connect(&viewers);
    bed.publish_for(publisher, Duration::from_secs(1), None);
    let plis = bed.clients[publisher].plis_on_wire - plis_before;
    assert!(plis >= 1, "the publisher was asked for a keyframe");
    assert!(plis <= 4, "{plis} PLIs reached the publisher in 3 s");
    // Then the encoder sends a keyframe: every viewer on both shards starts on it.
    bed.send_media(publisher, true);
    bed.publish_for(publisher, Duration::from_millis(400), None);
    for &viewer in &viewers {
        let video = bed.clients[viewer].video();
        assert!(!video.is_empty(), "viewer {viewer} receives");
        assert!(
            is_keyframe(&video[0].payload),
            "viewer {viewer} starts on a keyframe"
        );
    }
}

#[test]
fn a_nack_on_a_mirror_is_answered_from_its_ring() {
    let (mut bed, publisher) = live_room("nack", Duration::from_millis(200));
    let viewer = bed.add_viewer_on("nack", 1);
    bed.connect(&[viewer]);
    bed.publish_for(publisher, Duration::from_millis(500), Some(50));
    // Six datagrams in a row: at least two are video (one video frame per two ticks).
    bed.clients[viewer].drop_rtp = 6;
    bed.publish_for(publisher, Duration::from_millis(200), Some(50));
    let video = bed.clients[viewer].video();
    let seqs: Vec<u16> = video.iter().map(|r| r.sequence_number).collect();
    let missing: Vec<u16> = gaps(&seqs).into_iter().collect();
    assert!(!missing.is_empty(), "video packets were lost");
    let ssrc = bed.clients[viewer].video_ssrc();
    bed.nack(viewer, ssrc, &missing);
    bed.advance(Duration::from_millis(20));
    assert!(bed.core_of(1).counters().retransmissions >= missing.len() as u64);
    let seqs: Vec<u16> = bed.clients[viewer]
        .video()
        .iter()
        .map(|r| r.sequence_number)
        .collect();
    for seq in missing {
        assert!(seqs.contains(&seq), "{seq} was retransmitted");
    }
}

#[test]
fn a_mirror_without_viewers_unsubscribes_and_the_home_stops_relaying() {
    let (mut bed, publisher) = live_room("leave", Duration::from_millis(200));
    let viewer = bed.add_viewer_on("leave", 1);
    bed.connect(&[viewer]);
    bed.publish_for(publisher, Duration::from_millis(500), Some(50));
    assert_eq!(mirrors(&mut bed, 1), 1);
    bed.close(viewer);
    bed.publish_for(publisher, Duration::from_secs(3), Some(50));
    assert_eq!(mirrors(&mut bed, 1), 0, "the empty mirror is gone");
    let relayed = bed.core.counters().relay_packets;
    bed.publish_for(publisher, Duration::from_secs(1), Some(50));
    assert_eq!(
        bed.core.counters().relay_packets,
        relayed,
        "nothing is relayed"
    );
    // A new viewer there subscribes again and starts on the GOP.
    let again = bed.add_viewer_on("leave", 1);
    bed.connect(&[again]);
    bed.advance(Duration::from_millis(50));
    let video = bed.clients[again].video();
    assert!(!video.is_empty() && is_keyframe(&video[0].payload));
    let snapshot = bed.snapshot_of(0);
    assert_eq!(snapshot.rooms.len(), 1, "the home room stayed");
}
