//! Batched UDP for the load generator: `recvmmsg` with kernel receive timestamps and the
//! destination address of each datagram, `sendmmsg` with an optional source address per
//! datagram.
//!
//! Two things make one socket serve many viewers on loopback: every viewer gets its own
//! address in `127.0.0.0/8` (the server tells peers apart by 5-tuple), the socket is bound
//! to the wildcard address, outgoing datagrams pick their source with `IP_PKTINFO`, and
//! incoming ones say which viewer they are for in the `IP_PKTINFO` control message.
//!
//! Receive instants come from `SO_TIMESTAMPNS` (`CLOCK_REALTIME`, stamped when the kernel
//! queued the datagram on the socket), so the load generator's own scheduling delay does
//! not count as forwarding delay.

use bytes::BytesMut;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: usize = 64;
/// Largest datagram read.
pub const MAX_DATAGRAM: usize = 2048;
/// Control-message space per datagram (pktinfo + timestamp, either family).
const CONTROL_LEN: usize = 128;

/// The current `CLOCK_REALTIME` in nanoseconds since the Unix epoch: the clock of kernel
/// receive timestamps, so send and receive instants compare directly.
pub fn wall_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Opens a non-blocking UDP socket for the load generator.
///
/// `pktinfo`: report each datagram's destination address (and allow choosing the source
/// per datagram). Receive timestamps are always on. Buffers are raised to `buffer_bytes`
/// (with `SO_RCVBUFFORCE` when permitted, so `rmem_max` does not cap it).
pub fn open_socket(bind: SocketAddr, pktinfo: bool, buffer_bytes: usize) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    if !force_buffer(fd, libc::SO_RCVBUFFORCE, buffer_bytes) {
        let _ = socket.set_recv_buffer_size(buffer_bytes);
    }
    if !force_buffer(fd, libc::SO_SNDBUFFORCE, buffer_bytes / 4) {
        let _ = socket.set_send_buffer_size(buffer_bytes / 4);
    }
    set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    if pktinfo {
        match bind {
            SocketAddr::V4(_) => set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?,
            SocketAddr::V6(_) => set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?,
        }
    }
    socket.bind(&SockAddr::from(bind))?;
    Ok(socket)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn force_buffer(fd: RawFd, name: libc::c_int, bytes: usize) -> bool {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SOL_SOCKET, name, bytes).is_ok()
}

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// The sender.
    pub from: Option<SocketAddr>,
    /// The address it was sent to (with `pktinfo` on).
    pub to_ip: Option<IpAddr>,
    /// Kernel receive instant, `CLOCK_REALTIME` nanoseconds.
    pub rx_ns: Option<u64>,
}

/// Receive buffers reused across calls.
pub struct RecvBatch {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    names: Vec<libc::sockaddr_storage>,
    /// Control buffers, `u64`-aligned as `cmsghdr` requires.
    controls: Vec<[u64; CONTROL_LEN / 8]>,
    lengths: Vec<usize>,
    name_lengths: Vec<libc::socklen_t>,
    to_ips: Vec<Option<IpAddr>>,
    rx_ns: Vec<Option<u64>>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            names: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            controls: vec![[0; CONTROL_LEN / 8]; BATCH],
            lengths: vec![0; BATCH],
            name_lengths: vec![0; BATCH],
            to_ips: vec![None; BATCH],
            rx_ns: vec![None; BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Reads up to [`BATCH`] datagrams without blocking; `WouldBlock` when none is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        for i in 0..BATCH {
            iovecs[i].write(libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            });
            // SAFETY: msghdr is plain old data; zeroed then filled field by field.
            let mut header: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            header.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = iovecs[i].as_mut_ptr();
            header.msg_iovlen = 1;
            header.msg_control = self.controls[i].as_mut_ptr().cast();
            header.msg_controllen = CONTROL_LEN as _;
            headers[i].write(libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            });
        }
        // SAFETY: every header points at buffers owned by `self` that outlive the call.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr().cast(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        let received = received as usize;
        for (i, header) in headers.iter().take(received).enumerate() {
            // SAFETY: the first `received` headers were initialised above and filled by the kernel.
            let header = unsafe { header.assume_init_ref() };
            self.lengths[i] = (header.msg_len as usize).min(MAX_DATAGRAM);
            self.name_lengths[i] = header.msg_hdr.msg_namelen;
            let (to_ip, rx_ns) = parse_control(&header.msg_hdr);
            self.to_ips[i] = to_ip;
            self.rx_ns[i] = rx_ns;
        }
        self.count = received;
        Ok(received)
    }

    /// Datagrams of the last successful [`RecvBatch::recv`].
    pub fn iter(&self) -> impl Iterator<Item = Received<'_>> + '_ {
        (0..self.count).map(move |i| Received {
            data: &self.buffers[i][..self.lengths[i]],
            from: to_socket_addr(&self.names[i], self.name_lengths[i]),
            to_ip: self.to_ips[i],
            rx_ns: self.rx_ns[i],
        })
    }
}

/// Destination address and receive timestamp from a received message's control data.
fn parse_control(header: &libc::msghdr) -> (Option<IpAddr>, Option<u64>) {
    let mut to_ip = None;
    let mut rx_ns = None;
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen`; the CMSG macros walk
    // it within those bounds, and each payload is read unaligned at its declared type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            let data = libc::CMSG_DATA(cmsg);
            if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                rx_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            } else if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                to_ip = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                to_ip = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    (to_ip, rx_ns)
}

/// Decodes an IPv4/IPv6 `sockaddr_storage` filled by the kernel.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this is a sockaddr_in, and it is large enough.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says this is a sockaddr_in6, and it is large enough.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// One datagram waiting to be sent.
#[derive(Debug)]
pub struct Outgoing {
    /// Destination.
    pub to: SocketAddr,
    /// Source address to use (`IP_PKTINFO`), or `None` for the socket's own.
    pub from_ip: Option<IpAddr>,
    /// The bytes.
    pub data: BytesMut,
}

/// Datagrams queued for one socket, sent with `sendmmsg`.
#[derive(Debug, Default)]
pub struct SendQueue {
    items: Vec<Outgoing>,
    sent: usize,
}

/// Outcome of [`SendQueue::flush`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub datagrams: usize,
    /// Datagrams the kernel refused outright (skipped).
    pub failed: usize,
    /// The socket buffer is full: the rest stays queued.
    pub would_block: bool,
}

impl SendQueue {
    /// Queues one datagram.
    pub fn push(&mut self, item: Outgoing) {
        self.items.push(item);
    }

    /// Datagrams still queued.
    pub fn len(&self) -> usize {
        self.items.len() - self.sent
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends as much as the socket takes without blocking.
    pub fn flush(&mut self, fd: RawFd) -> Flushed {
        let mut outcome = Flushed::default();
        while self.sent < self.items.len() {
            let end = (self.sent + BATCH).min(self.items.len());
            let chunk = &self.items[self.sent..end];
            let mut names: [MaybeUninit<SockAddr>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            let mut controls = [[0u64; CONTROL_LEN / 8]; BATCH];
            let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            for (i, item) in chunk.iter().enumerate() {
                let name = names[i].write(SockAddr::from(item.to));
                iovecs[i].write(libc::iovec {
                    iov_base: item.data.as_ptr() as *mut libc::c_void,
                    iov_len: item.data.len(),
                });
                // SAFETY: msghdr is plain old data; zeroed then filled field by field.
                let mut header: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
                header.msg_name = name.as_ptr() as *mut libc::c_void;
                header.msg_namelen = name.len();
                header.msg_iov = iovecs[i].as_mut_ptr();
                header.msg_iovlen = 1;
                if let Some(ip) = item.from_ip {
                    header.msg_control = controls[i].as_mut_ptr().cast();
                    header.msg_controllen = CONTROL_LEN as _;
                    // SAFETY: the control buffer is CONTROL_LEN bytes, enough for one pktinfo.
                    header.msg_controllen = unsafe { write_pktinfo(&mut header, ip) } as _;
                }
                headers[i].write(libc::mmsghdr {
                    msg_hdr: header,
                    msg_len: 0,
                });
            }
            // SAFETY: the headers point at names, payloads and controls alive for the call.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    headers.as_mut_ptr().cast(),
                    chunk.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => {
                        outcome.would_block = true;
                        return outcome;
                    }
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        outcome.failed += 1;
                        self.sent += 1;
                        continue;
                    }
                }
            }
            outcome.datagrams += sent as usize;
            self.sent += sent as usize;
        }
        self.items.clear();
        self.sent = 0;
        outcome
    }
}

/// Writes one `IP_PKTINFO`/`IPV6_PKTINFO` control message choosing the source address;
/// returns the control length used.
///
/// # Safety
/// `header.msg_control` must point at `header.msg_controllen` writable, `u64`-aligned bytes,
/// at least `CMSG_SPACE(sizeof(in6_pktinfo))`.
unsafe fn write_pktinfo(header: &mut libc::msghdr, ip: IpAddr) -> usize {
    // SAFETY: guaranteed by the caller; CMSG_FIRSTHDR is non-null for a large enough buffer.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(header);
        match ip {
            IpAddr::V4(v4) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(v4).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize
            }
            IpAddr::V6(v6) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize
            }
        }
    }
}

/// The loopback address of viewer `index` when viewers share one socket: each gets its
/// own address in `127.0.0.0/8` (last octet 1–250, so never a network or broadcast-looking
/// address), from `127.1.1.1` upwards.
pub fn loopback_address(index: usize) -> Option<Ipv4Addr> {
    const PER_OCTET: usize = 250;
    let c = index % PER_OCTET;
    let b = (index / PER_OCTET) % PER_OCTET;
    let a = index / (PER_OCTET * PER_OCTET);
    if a >= PER_OCTET {
        return None;
    }
    Some(Ipv4Addr::new(127, a as u8 + 1, b as u8 + 1, c as u8 + 1))
}

/// Inverse of [`loopback_address`].
pub fn loopback_index(ip: Ipv4Addr) -> Option<usize> {
    let [first, a, b, c] = ip.octets();
    if first != 127 || !(1..=250).contains(&a) || !(1..=250).contains(&b) || !(1..=250).contains(&c)
    {
        return None;
    }
    Some((a as usize - 1) * 62_500 + (b as usize - 1) * 250 + (c as usize - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_round_trip() {
        for index in [0usize, 1, 249, 250, 62_499, 62_500, 1_000_000] {
            let ip = loopback_address(index).unwrap();
            assert_eq!(loopback_index(ip), Some(index), "{ip}");
        }
        assert_eq!(loopback_address(0), Some(Ipv4Addr::new(127, 1, 1, 1)));
        assert_eq!(loopback_index(Ipv4Addr::new(127, 0, 0, 1)), None);
        assert_eq!(loopback_index(Ipv4Addr::new(10, 1, 1, 1)), None);
    }

    #[test]
    fn one_socket_speaks_for_many_loopback_addresses() {
        let shared = open_socket("0.0.0.0:0".parse().unwrap(), true, 1 << 20).unwrap();
        let port = shared.local_addr().unwrap().as_socket().unwrap().port();
        let peer = open_socket("127.0.0.1:0".parse().unwrap(), false, 1 << 20).unwrap();
        let peer_addr = peer.local_addr().unwrap().as_socket().unwrap();
        let mut queue = SendQueue::default();
        for index in 0..3 {
            queue.push(Outgoing {
                to: peer_addr,
                from_ip: loopback_address(index).map(IpAddr::V4),
                data: BytesMut::from(&[index as u8; 4][..]),
            });
        }
        let flushed = queue.flush(shared.as_raw_fd());
        assert_eq!(flushed.datagrams, 3);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut batch = RecvBatch::default();
        assert_eq!(batch.recv(peer.as_raw_fd()).unwrap(), 3);
        let mut reply = SendQueue::default();
        for (i, datagram) in batch.iter().enumerate() {
            let from = datagram.from.unwrap();
            assert_eq!(from.ip(), IpAddr::V4(loopback_address(i).unwrap()));
            assert_eq!(from.port(), port);
            assert!(datagram.rx_ns.is_some_and(|ns| ns > 0));
            reply.push(Outgoing {
                to: from,
                from_ip: None,
                data: BytesMut::from(datagram.data),
            });
        }
        assert_eq!(reply.flush(peer.as_raw_fd()).datagrams, 3);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(shared.as_raw_fd()).unwrap(), 3);
        for datagram in batch.iter() {
            let index = datagram.data[0] as usize;
            assert_eq!(datagram.to_ip, loopback_address(index).map(IpAddr::V4));
            let now = wall_ns();
            let rx = datagram.rx_ns.unwrap();
            assert!(rx <= now && now - rx < 5_000_000_000);
        }
    }
}
