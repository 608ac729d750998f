//! The fast path allocates nothing per packet: a counting global allocator (per thread, so
//! the test harness's own threads do not count) around `protect_rtp` for every profile, with
//! and without the TWCC and video-orientation slots, across a sequence-number wrap, and for
//! sender reports.

use sfu::fast_path::{
    FastPathSender, MasterKeys, OutboundStream, PacketFields, ProtectionProfile, RtpHeaderTemplate,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn protect_rtp_and_sender_reports_allocate_nothing() {
    let crypto_provider = rtc::crypto::default_provider().expect("ring");
    let payload = vec![0x5a; 1100];
    let mut out = vec![0u8; 1500];
    for profile in [
        ProtectionProfile::AeadAes128Gcm,
        ProtectionProfile::AeadAes256Gcm,
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::Aes128CmHmacSha1_32,
    ] {
        let keys = MasterKeys {
            key: vec![7; profile.key_len()],
            salt: vec![9; profile.salt_len()],
        };
        let mut sender = FastPathSender::with_master_keys(profile, &keys, crypto_provider.crypto())
            .expect("sender");
        let template = RtpHeaderTemplate::new(0x1234, 102)
            .with_video_orientation(4)
            .and_then(|t| t.with_transport_cc(5))
            .expect("ids");
        let mut streams = [
            OutboundStream::new(template, 90_000),
            OutboundStream::new(RtpHeaderTemplate::new(0x5678, 111), 48_000),
        ];
        let start = Instant::now();
        // Warm up once (nothing is lazily allocated, but be fair to the provider).
        for stream in &mut streams {
            let fields = PacketFields {
                sequence_number: 65_000,
                timestamp: 0,
                marker: false,
                video_orientation: None,
            };
            sender
                .protect_rtp(stream, &fields, &payload, start, &mut out)
                .expect("protect");
        }

        let before = allocations();
        let mut bytes = 0usize;
        for i in 1..=1_000u32 {
            let now = start + Duration::from_micros(u64::from(i) * 100);
            for stream in &mut streams {
                let fields = PacketFields {
                    sequence_number: 65_000u16.wrapping_add(i as u16),
                    timestamp: i / 8 * 3000,
                    marker: i % 8 == 7,
                    video_orientation: (i % 2 == 0).then_some(1),
                };
                let protected = sender
                    .protect_rtp(stream, &fields, &payload, now, &mut out)
                    .expect("protect");
                bytes += protected.len;
            }
            // A NACK answer from before the wrap, now and then.
            if i % 100 == 0 {
                let fields = PacketFields {
                    sequence_number: 65_000u16.wrapping_add(i as u16 - 50),
                    timestamp: 0,
                    marker: false,
                    video_orientation: None,
                };
                sender
                    .protect_rtp(&mut streams[0], &fields, &payload, now, &mut out)
                    .expect("retransmission");
            }
        }
        let report = streams[0].build_sender_report(start + Duration::from_secs(2), 1);
        let allocated = allocations() - before;
        assert!(report.is_some());
        assert!(bytes > 2_000 * 1100);
        assert_eq!(
            streams[0].rollover_counter(),
            1,
            "{profile:?}: the run wraps"
        );
        assert_eq!(
            allocated, 0,
            "{profile:?}: {allocated} heap allocations in 2,010 protected packets"
        );
    }
    // The counter does count (so the zero above means something).
    let before = allocations();
    let boxed = std::hint::black_box(Box::new(1u8));
    drop(boxed);
    assert_eq!(allocations() - before, 1);
}
