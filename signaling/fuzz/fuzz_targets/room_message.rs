//! Room-event messages from WebSockets and data channels: parsing, the reference lookup
//! and the word filter must never panic, and accepted messages respect the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::interaction::protocol::{
    ClientMessage, MAX_CHAT_CHARS, MAX_MESSAGE_BYTES, client_reference, contains_blocked_word,
    parse,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = client_reference(text);
    let _ = contains_blocked_word(text, &["spam".to_owned(), "加微信".to_owned()]);
    if let Ok(message) = parse(text) {
        assert!(text.len() <= MAX_MESSAGE_BYTES);
        match message {
            ClientMessage::Chat { text, .. } => {
                assert!((1..=MAX_CHAT_CHARS).contains(&text.chars().count()))
            }
            ClientMessage::Like { count } => assert!((1..=10).contains(&count)),
            ClientMessage::Gift {
                count,
                idempotency_key,
                ..
            } => {
                assert!((1..=99).contains(&count));
                assert!(!idempotency_key.is_empty() && idempotency_key.len() <= 64);
            }
            ClientMessage::Auth { .. } | ClientMessage::Ping => {}
        }
    }
});
