//! Routing datagrams on the one shared UDP port to the peer they belong to.
//!
//! A STUN binding request names its target in `USERNAME = <our ufrag>:<their ufrag>`; we
//! give every peer a unique ufrag, so the request finds its peer and teaches the table the
//! sender's address. Everything else (DTLS, SRTP, SRTCP) is routed by source address.
//! Unknown traffic is reported as such for the caller to count and drop.

use crate::ids::PeerId;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this peer.
    Peer(PeerId),
    /// A STUN message whose USERNAME names no peer of ours.
    UnknownUfrag,
    /// A STUN message without a usable USERNAME from an unknown address.
    MalformedStun,
    /// Not STUN, from an address no peer uses.
    UnknownAddress,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct DemuxTable {
    by_ufrag: HashMap<String, PeerId>,
    by_address: HashMap<SocketAddr, PeerId>,
    addresses_of: HashMap<PeerId, Vec<SocketAddr>>,
    ufrag_of: HashMap<PeerId, String>,
}

impl DemuxTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a peer under its local ICE ufrag.
    pub fn register(&mut self, peer: PeerId, local_ufrag: &str) {
        self.by_ufrag.insert(local_ufrag.to_owned(), peer);
        self.ufrag_of.insert(peer, local_ufrag.to_owned());
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
                Some(ufrag) => match self.by_ufrag.get(ufrag).copied() {
                    Some(peer) => {
                        self.learn(peer, from);
                        Route::Peer(peer)
                    }
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

    fn binding_request(username: &str) -> Vec<u8> {
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
        let msg = binding_request("abcd:wxyz");
        assert!(is_stun(&msg));
        assert_eq!(stun_local_ufrag(&msg), Some("abcd"));
        assert_eq!(stun_local_ufrag(&binding_request("nocolon")), None);
        assert_eq!(stun_local_ufrag(&msg[..30]), None, "truncated");
        assert!(!is_stun(&[0x80, 0, 0, 0]), "RTP is not STUN");
    }

    #[test]
    fn routes_by_ufrag_then_address() {
        let mut table = DemuxTable::new();
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6000".parse().unwrap();
        table.register(PeerId(1), "ufrag1");
        table.register(PeerId(2), "ufrag2");
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
    fn a_reused_address_moves_to_the_new_peer() {
        let mut table = DemuxTable::new();
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        table.register(PeerId(1), "old");
        table.register(PeerId(2), "new");
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
