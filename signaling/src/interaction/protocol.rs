//! The room event protocol: one JSON object per message with a `"type"`, identical on the
//! WebRTC `room` data channel and on `GET /ws/rooms/{room}`. Version 1.
//!
//! Client → server: `chat`, `like`, `gift`, `auth`, `ping`.
//! Server → client: `welcome`, `chat`, `likes`, `gift`, `presence`, `system` (broadcast,
//! each with the room's next `seq`), and `gift_ack`, `error`, `pong` (to one client, no
//! `seq`). An `error` never closes the connection.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version spoken.
pub const VERSION: u32 = 1;
/// Largest client message accepted (bytes); larger ones get a `too_large` error.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest chat message (characters).
pub const MAX_CHAT_CHARS: usize = 300;

/// A parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Say something.
    Chat {
        /// The text.
        text: String,
        /// Echoed back in errors about this message.
        client_id: Option<String>,
    },
    /// Tap the heart `count` times (1–10 per message).
    Like {
        /// Taps.
        count: i64,
    },
    /// Send a gift.
    Gift {
        /// Catalogue id.
        gift: String,
        /// How many (1–99).
        count: i64,
        /// Charged at most once per key (1–64 characters).
        idempotency_key: String,
    },
    /// Log in on an open connection.
    Auth {
        /// An access token.
        token: String,
    },
    /// Keep-alive.
    Ping,
}

/// Error codes sent in `error` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON, or not an object with a `type`.
    Malformed,
    /// A `type` this server does not know.
    UnknownType,
    /// A `v` this server does not speak.
    UnsupportedVersion,
    /// A known type with missing or wrong fields.
    Invalid,
    /// The message exceeds [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Binary frames are not part of the protocol.
    Binary,
    /// This needs a logged-in user.
    Unauthorized,
    /// Not allowed (banned, not the host, …).
    Forbidden,
    /// Too many messages; slow down.
    RateLimited,
    /// The message contains a blocked word.
    BlockedWord,
    /// The user is muted in this room.
    Muted,
    /// The sender's coins do not cover the gift.
    InsufficientCoins,
    /// No such gift.
    UnknownGift,
    /// The idempotency key was used for a different gift.
    KeyReused,
    /// The room cannot receive gifts (no host account).
    NoRecipient,
    /// The server failed; try again.
    Internal,
}

/// A client message that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl ProtocolError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The `error` event, referring to the client's message id when it gave one.
    pub fn to_frame(&self, reference: Option<&str>) -> String {
        let mut event = serde_json::json!({ "v": VERSION, "type": "error", "code": self.code, "message": self.message });
        if let Some(reference) = reference {
            event["ref"] = Value::String(reference.to_owned());
        }
        event.to_string()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatFields {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default)]
    v: Option<u32>,
    text: String,
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LikeFields {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default)]
    v: Option<u32>,
    #[serde(default = "one")]
    count: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GiftFields {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default)]
    v: Option<u32>,
    gift: String,
    #[serde(default = "one")]
    count: i64,
    idempotency_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFields {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default)]
    v: Option<u32>,
    token: String,
}

fn one() -> i64 {
    1
}

/// Parses one client message, checking size, shape and field ranges. Never panics.
pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(ErrorCode::Malformed, format!("not JSON: {e}")))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::Malformed,
                "expected an object with a string \"type\"",
            )
        })?
        .to_owned();
    let version = match value.get("v") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ProtocolError::new(ErrorCode::Invalid, "\"v\" must be a number"))?,
        ),
    };
    if version.is_some_and(|v| v != u64::from(VERSION)) {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedVersion,
            format!("this server speaks version {VERSION}"),
        ));
    }
    let invalid =
        |e: serde_json::Error| ProtocolError::new(ErrorCode::Invalid, format!("{kind}: {e}"));
    match kind.as_str() {
        "chat" => {
            let f: ChatFields = serde_json::from_value(value).map_err(invalid)?;
            let _ = f.v;
            let text = f.text.trim().to_owned();
            let chars = text.chars().count();
            if chars == 0 || chars > MAX_CHAT_CHARS {
                return Err(ProtocolError::new(
                    ErrorCode::Invalid,
                    format!("chat text must be 1–{MAX_CHAT_CHARS} characters"),
                ));
            }
            if text.chars().any(|c| c.is_control() && c != '\n') {
                return Err(ProtocolError::new(
                    ErrorCode::Invalid,
                    "chat text must not contain control characters",
                ));
            }
            if text.chars().any(crate::validate::is_bidi_or_invisible) {
                return Err(ProtocolError::new(
                    ErrorCode::Invalid,
                    format!("chat text {}", crate::validate::INVISIBLE_REFUSED),
                ));
            }
            let client_id = f.client_id.filter(|id| !id.is_empty() && id.len() <= 64);
            Ok(ClientMessage::Chat { text, client_id })
        }
        "like" => {
            let f: LikeFields = serde_json::from_value(value).map_err(invalid)?;
            let _ = f.v;
            if !(1..=10).contains(&f.count) {
                return Err(ProtocolError::new(
                    ErrorCode::Invalid,
                    "like count must be 1–10",
                ));
            }
            Ok(ClientMessage::Like { count: f.count })
        }
        "gift" => {
            let f: GiftFields = serde_json::from_value(value).map_err(invalid)?;
            let _ = f.v;
            if !(1..=99).contains(&f.count) {
                return Err(ProtocolError::new(
                    ErrorCode::Invalid,
                    "gift count must be 1–99",
                ));
            }
            if f.idempotency_key.is_empty() || f.idempotency_key.len() > 64 {
                return Err(ProtocolError::new(
                    ErrorCode::Invalid,
                    "idempotency_key must be 1–64 characters",
                ));
            }
            if f.gift.is_empty() || f.gift.len() > 32 {
                return Err(ProtocolError::new(ErrorCode::UnknownGift, "unknown gift"));
            }
            Ok(ClientMessage::Gift {
                gift: f.gift,
                count: f.count,
                idempotency_key: f.idempotency_key,
            })
        }
        "auth" => {
            let f: AuthFields = serde_json::from_value(value).map_err(invalid)?;
            let _ = f.v;
            Ok(ClientMessage::Auth { token: f.token })
        }
        "ping" => Ok(ClientMessage::Ping),
        other => Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {:?}", truncate(other, 32)),
        )),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// The client-side id of a message, if the raw text carries one (for `ref` in errors even
/// when the message is otherwise invalid).
pub fn client_reference(text: &str) -> Option<String> {
    if text.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    value
        .get("client_id")
        .or_else(|| value.get("idempotency_key"))
        .and_then(Value::as_str)
        .filter(|s| s.len() <= 64)
        .map(str::to_owned)
}

/// Whether `text` contains any blocked word, both compared after Unicode NFKC
/// normalisation and case folding ([`crate::validate::matching_form`]).
pub fn contains_blocked_word(text: &str, blocked: &[String]) -> bool {
    if blocked.is_empty() {
        return false;
    }
    let text = crate::validate::matching_form(text);
    blocked.iter().any(|word| {
        let word = crate::validate::matching_form(word);
        !word.is_empty() && text.contains(&word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_messages() {
        assert_eq!(
            parse(r#"{"type":"chat","text":" 你好 ","client_id":"c1","v":1}"#).unwrap(),
            ClientMessage::Chat {
                text: "你好".into(),
                client_id: Some("c1".into())
            }
        );
        assert_eq!(
            parse(r#"{"type":"like"}"#).unwrap(),
            ClientMessage::Like { count: 1 }
        );
        assert_eq!(
            parse(r#"{"type":"gift","gift":"rose","count":3,"idempotency_key":"k"}"#).unwrap(),
            ClientMessage::Gift {
                gift: "rose".into(),
                count: 3,
                idempotency_key: "k".into()
            }
        );
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), ClientMessage::Ping);
    }

    #[test]
    fn classifies_bad_messages() {
        let code = |text: &str| parse(text).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::Malformed);
        assert_eq!(code("[1,2]"), ErrorCode::Malformed);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"chat","text":"x","v":2}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(code(r#"{"type":"chat"}"#), ErrorCode::Invalid);
        assert_eq!(code(r#"{"type":"chat","text":"   "}"#), ErrorCode::Invalid);
        assert_eq!(
            code(r#"{"type":"chat","text":"x","extra":1}"#),
            ErrorCode::Invalid
        );
        assert_eq!(code(r#"{"type":"like","count":100}"#), ErrorCode::Invalid);
        assert_eq!(
            code(r#"{"type":"gift","gift":"rose","idempotency_key":""}"#),
            ErrorCode::Invalid
        );
        let long = format!(r#"{{"type":"chat","text":"{}"}}"#, "字".repeat(301));
        assert_eq!(code(&long), ErrorCode::Invalid);
        let huge = format!(r#"{{"type":"chat","text":"{}"}}"#, "a".repeat(5000));
        assert_eq!(code(&huge), ErrorCode::TooLarge);
    }

    #[test]
    fn error_frames_keep_the_reference() {
        let frame = ProtocolError::new(ErrorCode::Muted, "muted").to_frame(Some("c9"));
        let value: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["type"], "error");
        assert_eq!(value["code"], "muted");
        assert_eq!(value["ref"], "c9");
        assert_eq!(
            client_reference(r#"{"type":"chat","text":"x","client_id":"abc"}"#).as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn blocked_words_match_case_insensitively() {
        let blocked = vec!["Spam".to_owned(), "加微信".to_owned()];
        assert!(contains_blocked_word("buy SPAM now", &blocked));
        assert!(contains_blocked_word("快来加微信吧", &blocked));
        assert!(!contains_blocked_word("hello", &blocked));
    }

    #[test]
    fn blocked_words_match_after_normalisation() {
        let blocked = vec!["spam".to_owned(), "ＶＸ".to_owned()];
        assert!(
            contains_blocked_word("buy ＳＰＡＭ now", &blocked),
            "full-width"
        );
        assert!(contains_blocked_word("SpAm", &blocked), "mixed case");
        assert!(
            contains_blocked_word("add vx 123", &blocked),
            "the list itself is normalised"
        );
        assert!(contains_blocked_word("ｓｐａｍ", &blocked));
        assert!(!contains_blocked_word("spa m", &blocked));
    }

    #[test]
    fn chat_refuses_direction_overrides_and_invisible_characters() {
        for bad in [
            '\u{202E}', '\u{2066}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{2060}',
        ] {
            let text = format!(r#"{{"type":"chat","text":"hi{bad}there"}}"#);
            assert_eq!(
                parse(&text).unwrap_err().code,
                ErrorCode::Invalid,
                "{bad:?}"
            );
        }
        assert!(parse(r#"{"type":"chat","text":"你好 👋"}"#).is_ok());
    }
}
