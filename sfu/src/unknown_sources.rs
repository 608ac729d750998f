//! Unknown traffic on the media port, counted per source address in a table of fixed
//! size: a flood from one address is counted (and shows in `/metrics`), and a spray from
//! many addresses cannot grow memory.
//!
//! The table keeps the heaviest sources with the *space-saving* algorithm (Metwally,
//! Agrawal, El Abbadi 2005): a source already in the table gains its count; a new one
//! takes a free slot, or else replaces the lightest entry and inherits its count (so a
//! count may overestimate by at most the count it replaced, and any source that sent
//! more than `total / SOURCES_TRACKED` datagrams is always in the table). Sources are
//! keyed by IP address, not port: a flooder cannot spread itself over ports. Pure and
//! clock-free; the core records, the metrics read a published copy.

use std::net::IpAddr;

/// Most sources a table tracks.
pub const SOURCES_TRACKED: usize = 64;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSources {
    /// `(source, datagrams)`, never longer than [`SOURCES_TRACKED`] (allocated once).
    slots: Vec<(IpAddr, u64)>,
    /// New sources that replaced a lighter one (the table was full).
    evictions: u64,
}

impl Default for UnknownSources {
    fn default() -> Self {
        Self {
            slots: Vec::with_capacity(SOURCES_TRACKED),
            evictions: 0,
        }
    }
}

impl UnknownSources {
    /// Counts `datagrams` unknown datagrams from `source`.
    pub fn record(&mut self, source: IpAddr, datagrams: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|(ip, _)| *ip == source) {
            slot.1 = slot.1.saturating_add(datagrams);
            return;
        }
        if self.slots.len() < SOURCES_TRACKED {
            self.slots.push((source, datagrams));
            return;
        }
        let lightest = self
            .slots
            .iter_mut()
            .min_by_key(|(_, count)| *count)
            .expect("a full table has entries");
        *lightest = (source, lightest.1.saturating_add(datagrams));
        self.evictions += 1;
    }

    /// Adds everything `other` counted to this table and empties `other` (a core
    /// publishing its counts into the shared table).
    pub fn drain_into(&mut self, other: &mut UnknownSources) {
        for (source, datagrams) in other.slots.drain(..) {
            self.record(source, datagrams);
        }
        self.evictions += std::mem::take(&mut other.evictions);
    }

    /// The tracked sources, heaviest first.
    pub fn heaviest(&self) -> Vec<(IpAddr, u64)> {
        let mut sources = self.slots.clone();
        sources.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        sources
    }

    /// How many sources are tracked (at most [`SOURCES_TRACKED`]).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// New sources that replaced a lighter one.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The table's allocated slots (it never reallocates: at most [`SOURCES_TRACKED`]).
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_flood_among_a_spray_is_counted_and_memory_stays_fixed() {
        let mut table = UnknownSources::default();
        let flooder = ip(0);
        // 10 000 one-off sources interleaved with 5 000 datagrams of one flooder.
        for n in 1..=10_000 {
            table.record(ip(n), 1);
            if n % 2 == 0 {
                table.record(flooder, 1);
            }
            assert!(table.len() <= SOURCES_TRACKED);
        }
        assert_eq!(table.capacity(), SOURCES_TRACKED, "the table never grew");
        let heaviest = table.heaviest();
        assert_eq!(heaviest[0].0, flooder);
        // Space-saving never underestimates, and overestimates by at most total/slots.
        assert!(heaviest[0].1 >= 5_000);
        assert!(heaviest[0].1 <= 5_000 + 15_000 / SOURCES_TRACKED as u64 + 1);
        assert!(table.evictions() > 9_000);
    }

    #[test]
    fn sources_are_counted_exactly_while_the_table_has_room() {
        let mut table = UnknownSources::default();
        table.record(ip(1), 3);
        table.record(ip(2), 1);
        table.record(ip(1), 2);
        assert_eq!(table.heaviest(), vec![(ip(1), 5), (ip(2), 1)]);
        let mut shared = UnknownSources::default();
        shared.record(ip(2), 10);
        shared.drain_into(&mut table);
        assert!(table.is_empty());
        assert_eq!(shared.heaviest(), vec![(ip(2), 11), (ip(1), 5)]);
        assert_eq!(shared.evictions(), 0);
    }
}
