//! Routing datagrams on the one shared UDP port to the peer they belong to.
//!
//! A STUN binding request names its target in `USERNAME = <our ufrag>:<their ufrag>`; we
//! give every peer a unique ufrag, so the request finds its peer. It teaches the table the
//! sender's address only if its MESSAGE-INTEGRITY verifies against that peer's ICE password
//! (RFC 8445 §7.2.2): a forged request naming a known ufrag can neither steer a peer's
//! media to another address nor reach its engine. Everything else (DTLS, SRTP, SRTCP) is
//! routed by source address. Unknown traffic is reported as such for the caller to count
//! and drop.

use crate::ids::PeerId;
use rtc::crypto::RTCCryptoProvider;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::Message;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this peer.
    Peer(PeerId),
    /// A STUN message whose USERNAME names no peer of ours.
    UnknownUfrag,
    /// A STUN request naming a peer of ours whose MESSAGE-INTEGRITY is missing or wrong.
    BadIntegrity,
    /// A STUN message without a usable USERNAME from an unknown address.
    MalformedStun,
    /// Not STUN, from an address no peer uses.
    UnknownAddress,
}

/// See the module docs.
pub struct DemuxTable {
    /// Per local ufrag: the peer and its ICE password (the integrity key).
    by_ufrag: HashMap<String, (PeerId, String)>,
    by_address: HashMap<SocketAddr, PeerId>,
    addresses_of: HashMap<PeerId, Vec<SocketAddr>>,
    ufrag_of: HashMap<PeerId, String>,
    crypto: Arc<dyn RTCCryptoProvider>,
}

impl std::fmt::Debug for DemuxTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemuxTable")
            .field("ufrags", &self.by_ufrag.len())
            .field("addresses", &self.by_address.len())
            .finish()
    }
}

impl DemuxTable {
    /// An empty table; `crypto` computes the STUN integrity HMACs.
    pub fn new(crypto: Arc<dyn RTCCryptoProvider>) -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_address: HashMap::new(),
            addresses_of: HashMap::new(),
            ufrag_of: HashMap::new(),
            crypto,
        }
    }

    /// Registers a peer under its local ICE ufrag and password.
    pub fn register(&mut self, peer: PeerId, local_ufrag: &str, local_pwd: &str) {
        self.by_ufrag
            .insert(local_ufrag.to_owned(), (peer, local_pwd.to_owned()));
        self.ufrag_of.insert(peer, local_ufrag.to_owned());
    }

    /// The local ufrag a peer is registered under.
    pub fn ufrag_of(&self, peer: PeerId) -> Option<&str> {
        self.ufrag_of.get(&peer).map(String::as_str)
    }

    /// Forgets a peer, its ufrag and every address it used.
    pub fn remove(&mut self, peer: PeerId) {
        if let Some(ufrag) = self.ufrag_of.remove(&peer) {
            self.by_ufrag.remove(&ufrag);
        }
        for address in self.addresses_of.remove(&peer).unwrap_or_default() {
            if self.by_address.get(&address) == Some(&peer) {
                self.by_address.remove(&address);
            }
        }
    }

    /// Routes one datagram, learning the source address from STUN requests.
    pub fn route(&mut self, datagram: &[u8], from: SocketAddr) -> Route {
        if is_stun(datagram) {
            match stun_local_ufrag(datagram) {
                Some(ufrag) => match self.by_ufrag.get(ufrag) {
                    Some((peer, pwd)) if integrity_verifies(datagram, pwd, &*self.crypto) => {
                        let peer = *peer;
                        self.learn(peer, from);
                        Route::Peer(peer)
                    }
                    Some(_) => Route::BadIntegrity,
                    None => Route::UnknownUfrag,
                },
                // Responses and indications carry no USERNAME: route them by address.
                None => self
                    .by_address
                    .get(&from)
                    .map_or(Route::MalformedStun, |&peer| Route::Peer(peer)),
            }
        } else {
            self.by_address
                .get(&from)
                .map_or(Route::UnknownAddress, |&peer| Route::Peer(peer))
        }
    }

    /// Number of registered peers.
    pub fn len(&self) -> usize {
        self.by_ufrag.len()
    }

    /// Whether no peer is registered.
    pub fn is_empty(&self) -> bool {
        self.by_ufrag.is_empty()
    }

    /// Number of learned addresses (for leak checks).
    pub fn address_count(&self) -> usize {
        self.by_address.len()
    }

    fn learn(&mut self, peer: PeerId, from: SocketAddr) {
        match self.by_address.insert(from, peer) {
            Some(previous) if previous == peer => return,
            Some(previous) => {
                // The address moved to another peer (port reuse): unlink it from the old one.
                if let Some(list) = self.addresses_of.get_mut(&previous) {
                    list.retain(|address| *address != from);
                }
            }
            None => {}
        }
        let list = self.addresses_of.entry(peer).or_default();
        // Bound the addresses one peer can claim (candidate pairs, NAT rebinding).
        if list.len() >= 16 {
            let oldest = list.remove(0);
            if self.by_address.get(&oldest) == Some(&peer) {
                self.by_address.remove(&oldest);
            }
        }
        list.push(from);
    }
}

/// Whether a STUN message carries a MESSAGE-INTEGRITY that verifies with the short-term
/// credential `pwd` (RFC 5389 §15.4: HMAC-SHA1 keyed with the password).
pub fn integrity_verifies(datagram: &[u8], pwd: &str, crypto: &dyn RTCCryptoProvider) -> bool {
    let mut message = Message::new();
    if message.unmarshal_binary(datagram).is_err() {
        return false;
    }
    MessageIntegrity::check(&mut message, pwd.as_bytes(), crypto.crypto()).is_ok()
}

/// RFC 5389 §6: first two bits zero, the magic cookie at bytes 4..8, length a multiple of 4.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20
        && datagram[0] & 0xc0 == 0
        && datagram[4..8] == [0x21, 0x12, 0xa4, 0x42]
        && (u16::from_be_bytes([datagram[2], datagram[3]]) as usize).is_multiple_of(4)
}

/// The local part of a STUN message's USERNAME attribute (`<ours>:<theirs>`), if present
/// and well formed. Never allocates.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    const USERNAME: u16 = 0x0006;
    let declared = u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]) as usize;
    let body = datagram.get(20..20 + declared)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (local, _remote) = username.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        let padded = (len + 3) & !3;
        rest = rest.get(4 + padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::{BINDING_REQUEST, Setter};
    use rtc::stun::textattrs::TextAttribute;

    const PWD: &str = "the-peers-ice-password";

    fn crypto() -> Arc<dyn RTCCryptoProvider> {
        rtc::crypto::default_provider().expect("the crate is built with a crypto provider")
    }

    /// A binding request as an ICE agent sends it: USERNAME, then MESSAGE-INTEGRITY keyed
    /// with `pwd`.
    fn signed_request(username: &str, pwd: &str) -> Vec<u8> {
        let crypto = crypto();
        let mut message = Message::new();
        message.set_type(BINDING_REQUEST);
        message.new_transaction_id().expect("random transaction id");
        message.write_header();
        TextAttribute::new(rtc::stun::attributes::ATTR_USERNAME, username.to_owned())
            .add_to(&mut message)
            .expect("USERNAME fits");
        MessageIntegrity::new_short_term_integrity_with_provider(pwd.to_owned(), crypto.crypto())
            .add_to(&mut message)
            .expect("MESSAGE-INTEGRITY fits");
        message.raw.clone()
    }

    fn binding_request(username: &str) -> Vec<u8> {
        signed_request(username, PWD)
    }

    /// A request with USERNAME and no integrity at all, built by hand.
    fn unsigned_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        // PRIORITY, to check attributes are skipped correctly when first.
        let mut body = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
        body.extend_from_slice(&attrs);
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn parses_the_local_ufrag() {
        let msg = unsigned_request("abcd:wxyz");
        assert!(is_stun(&msg));
        assert_eq!(stun_local_ufrag(&msg), Some("abcd"));
        assert_eq!(
            stun_local_ufrag(&binding_request("abcd:wxyz")),
            Some("abcd")
        );
        assert_eq!(stun_local_ufrag(&unsigned_request("nocolon")), None);
        assert_eq!(stun_local_ufrag(&msg[..30]), None, "truncated");
        assert!(!is_stun(&[0x80, 0, 0, 0]), "RTP is not STUN");
    }

    #[test]
    fn routes_by_ufrag_then_address() {
        let mut table = DemuxTable::new(crypto());
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6000".parse().unwrap();
        table.register(PeerId(1), "ufrag1", PWD);
        table.register(PeerId(2), "ufrag2", PWD);
        assert_eq!(table.route(&[0x80; 40], a), Route::UnknownAddress);
        assert_eq!(
            table.route(&binding_request("ufrag1:x"), a),
            Route::Peer(PeerId(1))
        );
        assert_eq!(
            table.route(&binding_request("ufrag2:y"), b),
            Route::Peer(PeerId(2))
        );
        assert_eq!(table.route(&[0x80; 40], a), Route::Peer(PeerId(1)));
        assert_eq!(table.route(&[0x16; 40], b), Route::Peer(PeerId(2)));
        assert_eq!(
            table.route(&binding_request("nobody:z"), a),
            Route::UnknownUfrag
        );
        table.remove(PeerId(1));
        assert_eq!(table.route(&[0x80; 40], a), Route::UnknownAddress);
        assert_eq!(
            table.route(&binding_request("ufrag1:x"), a),
            Route::UnknownUfrag
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.address_count(), 1);
    }

    #[test]
    fn a_request_with_a_bad_integrity_learns_no_address() {
        let mut table = DemuxTable::new(crypto());
        let attacker: SocketAddr = "203.0.113.9:4444".parse().unwrap();
        let viewer: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        table.register(PeerId(1), "ufrag1", PWD);
        assert_eq!(
            table.route(&signed_request("ufrag1:x", "a-guessed-password"), attacker),
            Route::BadIntegrity
        );
        assert_eq!(
            table.route(&unsigned_request("ufrag1:x"), attacker),
            Route::BadIntegrity,
            "no MESSAGE-INTEGRITY at all"
        );
        let mut tampered = binding_request("ufrag1:x");
        let last = tampered.len() - 1;
        tampered[last] ^= 0x55;
        assert_eq!(table.route(&tampered, attacker), Route::BadIntegrity);
        assert_eq!(table.address_count(), 0, "nothing learned");
        assert_eq!(table.route(&[0x80; 40], attacker), Route::UnknownAddress);
        // The real peer still gets through.
        assert_eq!(
            table.route(&binding_request("ufrag1:x"), viewer),
            Route::Peer(PeerId(1))
        );
        assert_eq!(table.route(&[0x80; 40], viewer), Route::Peer(PeerId(1)));
        assert_eq!(table.route(&[0x80; 40], attacker), Route::UnknownAddress);
    }

    #[test]
    fn a_reused_address_moves_to_the_new_peer() {
        let mut table = DemuxTable::new(crypto());
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        table.register(PeerId(1), "old", PWD);
        table.register(PeerId(2), "new", PWD);
        table.route(&binding_request("old:x"), a);
        table.route(&binding_request("new:x"), a);
        assert_eq!(table.route(&[0x80; 40], a), Route::Peer(PeerId(2)));
        table.remove(PeerId(1));
        assert_eq!(
            table.route(&[0x80; 40], a),
            Route::Peer(PeerId(2)),
            "not unlinked by the old peer"
        );
    }
}
