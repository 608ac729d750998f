//! Newtype identifiers.

use std::fmt;
use std::sync::Arc;

/// A room's id: 1–64 characters of `[A-Za-z0-9_-]`, so it is safe in URLs, paths and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// Longest accepted room id.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a room id.
    pub fn parse(raw: &str) -> Option<RoomId> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| RoomId(Arc::from(raw)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A peer (one WHIP or WHEP session). Unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl PeerId {
    /// Parses the hex form produced by `Display` (used in session URLs).
    pub fn parse(raw: &str) -> Option<PeerId> {
        if raw.is_empty() || raw.len() > 16 {
            return None;
        }
        u64::from_str_radix(raw, 16).ok().map(PeerId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_validated() {
        assert!(RoomId::parse("room-1_A").is_some());
        assert!(RoomId::parse("").is_none());
        assert!(RoomId::parse("a/b").is_none());
        assert!(RoomId::parse("../etc").is_none());
        assert!(RoomId::parse(&"x".repeat(65)).is_none());
        assert!(RoomId::parse("房间").is_none());
    }

    #[test]
    fn peer_ids_round_trip() {
        let id = PeerId(0xdead_beef);
        assert_eq!(PeerId::parse(&id.to_string()), Some(id));
        assert_eq!(PeerId::parse("zz"), None);
        assert_eq!(PeerId::parse("11112222333344445"), None);
    }
}
