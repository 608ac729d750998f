//! Arbitrary bytes from an RTMP publisher into the ingest session: it must never panic
//! (and nothing runs under `catch_unwind`: the default libFuzzer hook aborts on any
//! panic, ours or `rml_rtmp`'s), only fail with an error, and never hold more than its
//! limits allow.
//!
//! Input: `[mode: u8][piece: u8]` then the client's bytes. Mode bit 0: prepend a
//! well-formed plain handshake (C0 + C1 + C2) so the chunk parser, the AMF0 checks and the
//! command flow see the rest; bit 1: accept publish requests; bit 2: reject them instead;
//! bit 3: small limits (chunk size, buffered bytes, chunk streams). `piece` = 0 feeds the
//! bytes at once, otherwise in reads of 1..=`piece` bytes (sizes from a generator seeded
//! by the input). Seeds: `seeds/rtmp_ingest_session` (a real `rml_rtmp` client session,
//! written by the `write_fuzz_seed` test). Run:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run rtmp_ingest_session -O` in `bridge/fuzz`.
#![no_main]

use bridge::ingest::rtmp_session::{IngestEvent, IngestLimits, IngestSession};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fn drain(session: &mut IngestSession, mode: u8) {
    while session.poll_output().is_some() {}
    while let Some(event) = session.poll_event() {
        if let IngestEvent::PublishRequested { request, .. } = event {
            if mode & 0b100 != 0 {
                session.reject_publish(request, "rejected by the fuzzer");
            } else if mode & 0b010 != 0 {
                session.accept_publish(request);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, piece, rest @ ..] = data else {
        return;
    };
    let limits = if mode & 0b1000 != 0 {
        IngestLimits {
            max_message_size: 64 * 1024,
            max_control_message_size: 4096,
            max_chunk_size: 1024,
            max_buffered_bytes: 16 * 1024,
            max_chunk_streams: 4,
            max_message_streams: 2,
        }
    } else {
        IngestLimits::default()
    };
    let (mut session, initial) = IngestSession::new(limits);
    assert!(initial.is_empty());
    let now = Instant::now();
    if mode & 1 != 0 {
        let mut handshake = vec![3u8];
        handshake.resize(1 + 1536 * 2, 0);
        session
            .handle_input(&handshake, now)
            .expect("a plain handshake is accepted");
        assert!(session.handshake_done());
        drain(&mut session, *mode);
    }
    let mut state = u64::from(*piece) << 32 | rest.len() as u64 | 1;
    let mut input = rest;
    while !input.is_empty() {
        let n = if *piece == 0 {
            input.len()
        } else {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1 + (state % u64::from(*piece)) as usize
        }
        .min(input.len());
        let (now_part, later) = input.split_at(n);
        input = later;
        let result = session.handle_input(now_part, now);
        drain(&mut session, *mode);
        if result.is_err() {
            assert!(session.should_close());
            assert!(session.handle_input(b"x", now).is_err());
            return;
        }
    }
    session.handle_eof();
    drain(&mut session, *mode);
    assert!(session.should_close());
});
