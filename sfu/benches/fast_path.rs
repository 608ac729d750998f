//! One forwarded 1,100-byte packet to one viewer: the SRTP fast path (`protect_rtp`: header
//! template + payload + in-place AES-GCM or AES-CM/HMAC-SHA1 into a send buffer) against the
//! rtc engine's path as the shard uses it today (`handle_write` of an `RtpPacket`, then
//! `poll_write`: interceptors incl. the sender-report one, marshal, SRTP into a new buffer).
//!
//! Timing: `cargo bench -p queqiao-sfu --bench fast_path`.
//! Instructions (deterministic, what BENCHMARKS.md quotes):
//!
//! ```text
//! FAST_PATH_COUNT=engine|fast-gcm|fast-cm80 FAST_PATH_PACKETS=20000 \
//!   valgrind --tool=callgrind --toggle-collect='*measured_loop*' target/release/deps/fast_path-…
//! ```
//! Ir/packet = the run's `summary` ÷ FAST_PATH_PACKETS (only the loop is collected).

#[path = "../tests/support/engine_pair.rs"]
mod engine_pair;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use engine_pair::{MEDIA_SSRC, PAYLOAD_TYPE, Pair};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{Registry, SenderReportBuilder, Slot};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::sansio::Protocol;
use sfu::fast_path::{
    FastPathSender, MasterKeys, OutboundStream, PacketFields, ProtectionProfile, RtpHeaderTemplate,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const PAYLOAD_LEN: usize = 1100;

fn fields(i: u32) -> PacketFields {
    PacketFields {
        sequence_number: i as u16,
        timestamp: i / 8 * 3000,
        marker: i % 8 == 7,
        video_orientation: None,
    }
}

struct FastPathCase {
    sender: FastPathSender,
    stream: OutboundStream,
    out: Vec<u8>,
    payload: Bytes,
    now: Instant,
    i: u32,
}

impl FastPathCase {
    fn new(profile: ProtectionProfile) -> Self {
        let provider = rtc::crypto::default_provider().expect("ring is enabled");
        let keys = MasterKeys {
            key: vec![0x42; profile.key_len()],
            salt: vec![0x17; profile.salt_len()],
        };
        Self {
            sender: FastPathSender::with_master_keys(profile, &keys, provider.crypto())
                .expect("sender"),
            stream: OutboundStream::new(RtpHeaderTemplate::new(MEDIA_SSRC, PAYLOAD_TYPE), 90_000),
            out: vec![0u8; 1500],
            payload: Bytes::from(vec![0x7c; PAYLOAD_LEN]),
            now: Instant::now(),
            i: 0,
        }
    }

    fn forward_one(&mut self) -> usize {
        self.i = self.i.wrapping_add(1);
        self.now += Duration::from_micros(50);
        self.sender
            .protect_rtp(
                &mut self.stream,
                &fields(self.i),
                &self.payload,
                self.now,
                &mut self.out,
            )
            .expect("protect")
            .len
    }
}

/// A connected pair whose sender is set up like a production viewer (sender-report
/// interceptor); packets go through the engine's write path.
struct EnginePathCase {
    pair: Pair,
    payload: Bytes,
    i: u32,
}

impl EnginePathCase {
    fn new() -> Self {
        let registry = Registry::new().with(Slot::SenderReport, SenderReportBuilder::new().build());
        let pair = Pair::connect_with(
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            RTCDtlsRole::Client,
            registry,
        );
        Self {
            pair,
            payload: Bytes::from(vec![0x7c; PAYLOAD_LEN]),
            i: 0,
        }
    }

    /// What `shard.rs`'s `write_rtp` + flush do for one viewer.
    fn forward_one(&mut self) -> usize {
        self.i = self.i.wrapping_add(1);
        self.pair.now += Duration::from_micros(50);
        let f = fields(self.i);
        let packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: f.marker,
                payload_type: PAYLOAD_TYPE,
                sequence_number: f.sequence_number,
                timestamp: f.timestamp,
                ssrc: MEDIA_SSRC,
                extension_profile: 0xBEDE,
                ..Default::default()
            },
            payload: self.payload.clone(),
        };
        self.pair
            .sender
            .pc
            .handle_write(TaggedRTCMessage {
                now: self.pair.now,
                message: RTCMessage::RtpPacket(String::new(), packet),
            })
            .expect("write");
        let mut sent = 0;
        while let Some(datagram) = self.pair.sender.pc.poll_write() {
            sent += datagram.message.len();
        }
        sent
    }
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_one_packet_1100B");
    group.throughput(Throughput::Elements(1));
    let mut gcm = FastPathCase::new(ProtectionProfile::AeadAes128Gcm);
    group.bench_function("fast_path_aes128gcm", |b| {
        b.iter(|| black_box(gcm.forward_one()))
    });
    let mut cm = FastPathCase::new(ProtectionProfile::Aes128CmHmacSha1_80);
    group.bench_function("fast_path_aes_cm_hmac_sha1_80", |b| {
        b.iter(|| black_box(cm.forward_one()))
    });
    let mut engine = EnginePathCase::new();
    assert!(engine.forward_one() > PAYLOAD_LEN, "the engine sends SRTP");
    group.bench_function("engine_write_rtp_aes128gcm", |b| {
        b.iter(|| black_box(engine.forward_one()))
    });
    group.finish();
}

criterion_group!(benches, forward);

#[inline(never)]
fn measured_loop_engine(case: &mut EnginePathCase, packets: u32) -> usize {
    (0..packets).map(|_| case.forward_one()).sum()
}

#[inline(never)]
fn measured_loop_fast_path(case: &mut FastPathCase, packets: u32) -> usize {
    (0..packets).map(|_| case.forward_one()).sum()
}

/// Fixed-count mode for callgrind (see the module docs).
fn count(mode: &str, packets: u32) {
    let bytes = match mode {
        "engine" => {
            let mut case = EnginePathCase::new();
            measured_loop_engine(&mut case, packets)
        }
        "fast-gcm" => {
            let mut case = FastPathCase::new(ProtectionProfile::AeadAes128Gcm);
            measured_loop_fast_path(&mut case, packets)
        }
        "fast-cm80" => {
            let mut case = FastPathCase::new(ProtectionProfile::Aes128CmHmacSha1_80);
            measured_loop_fast_path(&mut case, packets)
        }
        other => panic!("FAST_PATH_COUNT={other}: expected engine, fast-gcm or fast-cm80"),
    };
    println!("{mode}: {packets} packets, {bytes} bytes protected");
}

fn main() {
    if let Ok(mode) = std::env::var("FAST_PATH_COUNT") {
        let packets = std::env::var("FAST_PATH_PACKETS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        count(&mode, packets);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
