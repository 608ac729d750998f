//! Which network addresses an outgoing push (RTMP restream) may connect to.
//!
//! A host sets a push URL; without a policy, `rtmp://127.0.0.1:5432/…` or
//! `rtmp://169.254.169.254/…` would turn the server into a port scanner of its own
//! network (server-side request forgery). Only public unicast addresses are allowed,
//! unless the operator's allow-list (CIDRs or host names) names the target. The check
//! runs twice: on the URL when a host adds it, and on every address the name resolves
//! to at connect time (the push then connects to the address it checked, so a DNS
//! answer that changes in between cannot slip through).
//!
//! Sans-IO: [`TargetPolicy::check_host`] and [`TargetPolicy::check_address`] decide on
//! values; resolving names is the caller's job ([`crate::rtmp_push::resolve_checked`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public unicast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A public unicast address: allowed.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16) and IPv6 ULA fc00::/7.
    Private,
    /// 169.254/16 (cloud metadata lives here), fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT, 100.64/10.
    SharedCgnat,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// Other special-purpose ranges (documentation, benchmarking, 240/4, 192.0.0/24).
    Reserved,
}

impl AddressClass {
    /// Short name for messages and logs.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::SharedCgnat => "carrier-grade NAT",
            AddressClass::Multicast => "multicast",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Classifies an address (IPv4-mapped and IPv4-compatible IPv6 addresses are
/// classified as the IPv4 address they carry).
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return classify_v4(v4);
            }
            classify_v6(v6)
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (deprecated compatible, but still routed as v4
    // by some stacks), 64:ff9b::a.b.c.d (NAT64 well-known prefix).
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let compatible = s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    (mapped || compatible || nat64).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() {
        AddressClass::Private
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if a == 100 && (64..128).contains(&b) {
        AddressClass::SharedCgnat
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if a >= 240
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        AddressClass::LinkLocal
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// An IP network `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Option<IpNetwork> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let address: IpAddr = address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNetwork { address, prefix })
    }

    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address matches the
    /// IPv4 network of the address it carries).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A push target the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefused {
    /// The address (given or resolved) is not a public unicast address.
    #[error("{host} is a {} address; only public addresses may be pushed to", class.describe())]
    NonPublic {
        /// The host as written in the URL.
        host: String,
        /// What kind of address it is (or resolves to).
        class: AddressClass,
    },
    /// The name is a `localhost` name.
    #[error("{0} names this machine; only public addresses may be pushed to")]
    LocalName(String),
    /// The name did not resolve to any address.
    #[error("{0} does not resolve")]
    Unresolvable(String),
}

/// An allow-list entry that is neither a CIDR nor a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid restream allow-list entry {0:?} (use a CIDR like 10.0.0.0/8 or a host name)")]
pub struct InvalidAllowEntry(pub String);

/// The operator's allow-list; everything public is allowed anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    networks: Vec<IpNetwork>,
    hosts: Vec<String>,
}

impl TargetPolicy {
    /// Builds the policy from allow-list entries: CIDRs (`10.0.0.0/8`, `127.0.0.1`) or
    /// host names (`ingest.internal`, matched case-insensitively, trailing dot ignored).
    pub fn new<S: AsRef<str>>(allow: &[S]) -> Result<TargetPolicy, InvalidAllowEntry> {
        let mut policy = TargetPolicy::default();
        for entry in allow
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
        {
            if let Some(network) = IpNetwork::parse(entry) {
                policy.networks.push(network);
            } else if entry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !entry.contains('/')
            {
                policy.hosts.push(normalise_name(entry));
            } else {
                return Err(InvalidAllowEntry(entry.to_owned()));
            }
        }
        Ok(policy)
    }

    /// A check on the URL's host before any resolution: an address literal must be
    /// public or allow-listed; a name must not be a `localhost` name unless
    /// allow-listed. `Ok(Some(ip))` for a literal (connect to it directly), `Ok(None)`
    /// for a name that must be resolved and each address passed to
    /// [`TargetPolicy::check_address`].
    pub fn check_host(&self, host: &str) -> Result<Option<IpAddr>, TargetRefused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_address(host, ip)?;
            return Ok(Some(ip));
        }
        let name = normalise_name(host);
        if self.hosts.contains(&name) {
            return Ok(None);
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return Err(TargetRefused::LocalName(host.to_owned()));
        }
        Ok(None)
    }

    /// Whether the push may connect to `ip`, which `host` (as written in the URL)
    /// resolved to.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), TargetRefused> {
        let class = classify(ip);
        if class == AddressClass::Public
            || self.networks.iter().any(|net| net.contains(ip))
            || self.hosts.contains(&normalise_name(host))
        {
            return Ok(());
        }
        Err(TargetRefused::NonPublic {
            host: host.to_owned(),
            class,
        })
    }
}

fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> AddressClass {
        classify(text.parse().expect("test addresses are valid"))
    }

    #[test]
    fn classifies_the_special_ranges() {
        for (ip, expected) in [
            ("8.8.8.8", AddressClass::Public),
            ("1.1.1.1", AddressClass::Public),
            ("2606:4700::1111", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.254", AddressClass::SharedCgnat),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("255.255.255.255", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
            ("192.0.2.10", AddressClass::Reserved),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("::ffff:8.8.8.8", AddressClass::Public),
            ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
            ("::127.0.0.1", AddressClass::Loopback),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
        // Neighbours of the ranges stay public.
        assert_eq!(class("172.32.0.1"), AddressClass::Public);
        assert_eq!(class("100.128.0.1"), AddressClass::Public);
        assert_eq!(class("11.0.0.1"), AddressClass::Public);
    }

    #[test]
    fn networks_parse_and_match() {
        let net = IpNetwork::parse("10.0.0.0/8").expect("valid CIDR");
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one = IpNetwork::parse("127.0.0.1").expect("a bare address is a /32");
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = IpNetwork::parse("0.0.0.0/0").expect("valid CIDR");
        assert!(all.contains("127.0.0.1".parse().unwrap()));
        let v6 = IpNetwork::parse("fd00::/8").expect("valid CIDR");
        assert!(v6.contains("fd00::5".parse().unwrap()));
        assert!(!v6.contains("fe80::5".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "ten/8", "", "1.2.3.4/x"] {
            assert_eq!(IpNetwork::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_policy_refuses_everything_but_public() {
        let policy = TargetPolicy::default();
        assert_eq!(
            policy.check_host("8.8.8.8"),
            Ok(Some("8.8.8.8".parse().unwrap()))
        );
        assert_eq!(policy.check_host("live.example.com"), Ok(None));
        for host in [
            "127.0.0.1",
            "169.254.169.254",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "10.0.0.1",
            "0.0.0.0",
            "localhost",
            "localhost.",
            "LocalHost",
            "db.localhost",
        ] {
            assert!(policy.check_host(host).is_err(), "{host} must be refused");
        }
        // A public name that resolves to a private address is refused at connect time.
        assert!(
            policy
                .check_address("cdn.example.com", "192.168.0.1".parse().unwrap())
                .is_err()
        );
        assert!(
            policy
                .check_address("cdn.example.com", "203.0.114.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn the_allow_list_opens_named_networks_and_hosts() {
        let policy = TargetPolicy::new(&["127.0.0.1", "10.0.0.0/8", "Ingest.Internal."])
            .expect("valid entries");
        assert!(policy.check_host("127.0.0.1").is_ok());
        assert!(policy.check_host("127.0.0.2").is_err());
        assert!(policy.check_host("10.9.9.9").is_ok());
        assert!(policy.check_host("192.168.0.1").is_err());
        assert!(policy.check_host("ingest.internal").is_ok());
        assert!(
            policy
                .check_address("ingest.internal", "192.168.0.1".parse().unwrap())
                .is_ok()
        );
        assert!(policy.check_host("localhost").is_err());
        assert_eq!(
            TargetPolicy::new(&["rtmp://x/y"]),
            Err(InvalidAllowEntry("rtmp://x/y".into()))
        );
    }
}
