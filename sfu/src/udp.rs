//! Batched UDP I/O on the shared socket: `recvmmsg` in, `sendmmsg` out.
//!
//! A forwarded packet costs one syscall per viewer without batching; with `sendmmsg` one
//! syscall carries up to [`BATCH`] datagrams. Buffers are allocated once per shard. The
//! functions are non-blocking; the shard awaits readiness through tokio.

use bytes::BytesMut;
use socket2::SockAddr;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;
/// Largest datagram we read (larger ones are truncated and then rejected by the engine).
pub const MAX_DATAGRAM: usize = 2048;

/// Reusable receive buffers.
pub struct RecvBatch {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    addresses: Vec<libc::sockaddr_storage>,
    lengths: Vec<usize>,
    address_lengths: Vec<libc::socklen_t>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addresses: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            lengths: vec![0; BATCH],
            address_lengths: vec![0; BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// The datagrams of the last successful [`RecvBatch::recv`].
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> + '_ {
        (0..self.count).map(move |i| {
            (
                &self.buffers[i][..self.lengths[i]],
                to_socket_addr(&self.addresses[i], self.address_lengths[i]),
            )
        })
    }

    /// Reads up to [`BATCH`] datagrams without blocking. `WouldBlock` when none is queued.
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
            header.msg_name = (&mut self.addresses[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = iovecs[i].as_mut_ptr();
            header.msg_iovlen = 1;
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
            self.address_lengths[i] = header.msg_hdr.msg_namelen;
        }
        self.count = received;
        Ok(received)
    }
}

/// Decodes an IPv4/IPv6 `sockaddr_storage` filled by the kernel.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in, and it is large enough.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says this storage holds a sockaddr_in6, and it is large enough.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Most datagrams coalesced into one UDP GSO send (older kernels allow 64).
const GSO_MAX_SEGMENTS: usize = 32;
/// Most bytes in one GSO send (the super-packet must stay under 64 KiB).
const GSO_MAX_BYTES: usize = 60_000;
/// `UDP_SEGMENT` (linux/udp.h): the segment size of a GSO send, as a `u16` control message.
const UDP_SEGMENT: libc::c_int = 103;
/// iovecs per `sendmmsg` call (several per message with GSO).
const IOV_CAP: usize = BATCH * 4;

/// Outgoing datagrams queued during one wake-up of the shard.
///
/// With UDP GSO on, a run of equal-size datagrams to the same address (a viewer's share
/// of a burst: a replayed GOP, a keyframe from an unpaced publisher) leaves in one message
/// that the kernel cuts into datagrams, so it crosses the network stack once. If the kernel
/// or the device refuses GSO, it is switched off for the life of the queue.
pub struct SendQueue {
    items: Vec<(SocketAddr, BytesMut)>,
    /// Buffers sent, for the owner to reuse ([`SendQueue::take_sent`]).
    sent_buffers: Vec<BytesMut>,
    /// How many of `items` were already sent (after a partial `sendmmsg`).
    sent: usize,
    gso: bool,
}

impl Default for SendQueue {
    fn default() -> Self {
        Self::new(true)
    }
}

impl SendQueue {
    /// An empty queue; `gso` allows coalescing runs to one destination (UDP GSO).
    pub fn new(gso: bool) -> Self {
        Self {
            items: Vec::new(),
            sent_buffers: Vec::new(),
            sent: 0,
            gso,
        }
    }

    /// Whether GSO is (still) in use.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Queues one datagram.
    pub fn push(&mut self, to: SocketAddr, datagram: BytesMut) {
        self.items.push((to, datagram));
    }

    /// The buffers of the datagrams sent so far, to be reused.
    pub fn take_sent(&mut self) -> std::vec::Drain<'_, BytesMut> {
        self.sent_buffers.drain(..)
    }

    /// Nothing left to send.
    pub fn is_empty(&self) -> bool {
        self.sent >= self.items.len()
    }

    /// Datagrams still queued.
    pub fn len(&self) -> usize {
        self.items.len() - self.sent
    }

    /// How many queued datagrams from `start` go out in one message: a run to the same
    /// address, all of the first one's size except possibly a shorter last one.
    fn run_length(&self, start: usize, iovecs_left: usize) -> usize {
        let (to, first) = &self.items[start];
        let size = first.len();
        let mut n = 1;
        if !self.gso || size == 0 {
            return n;
        }
        while start + n < self.items.len()
            && n < GSO_MAX_SEGMENTS
            && n < iovecs_left
            && (n + 1) * size <= GSO_MAX_BYTES
        {
            let (next_to, next) = &self.items[start + n];
            if next_to != to || next.len() > size || next.is_empty() {
                break;
            }
            n += 1;
            if next.len() < size {
                break;
            }
        }
        n
    }

    /// Sends as much as the socket takes without blocking. Returns `(datagrams, bytes)`
    /// sent; datagrams the kernel refused outright are counted in `failed` and skipped.
    /// `WouldBlock` leaves the rest queued for when the socket is writable.
    pub fn flush(&mut self, fd: RawFd, failed: &mut u64) -> io::Result<(usize, usize)> {
        let mut total = (0, 0);
        while self.sent < self.items.len() {
            let mut addresses: [MaybeUninit<SockAddr>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            let mut iovecs: [MaybeUninit<libc::iovec>; IOV_CAP] =
                [const { MaybeUninit::uninit() }; IOV_CAP];
            let mut controls = [[0u64; 4]; BATCH];
            let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            // Datagrams in each message.
            let mut runs = [0usize; BATCH];
            let mut messages = 0;
            let mut next = self.sent;
            let mut used = 0;
            while messages < BATCH && next < self.items.len() && used < IOV_CAP {
                let n = self.run_length(next, IOV_CAP - used);
                let (to, first) = &self.items[next];
                for (k, (_, datagram)) in self.items[next..next + n].iter().enumerate() {
                    iovecs[used + k].write(libc::iovec {
                        iov_base: datagram.as_ptr() as *mut libc::c_void,
                        iov_len: datagram.len(),
                    });
                }
                let address = addresses[messages].write(SockAddr::from(*to));
                // SAFETY: msghdr is plain old data; zeroed then filled field by field.
                let mut header: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
                header.msg_name = address.as_ptr() as *mut libc::c_void;
                header.msg_namelen = address.len();
                header.msg_iov = iovecs[used].as_mut_ptr();
                header.msg_iovlen = n as _;
                if n > 1 {
                    header.msg_control = controls[messages].as_mut_ptr().cast();
                    header.msg_controllen = std::mem::size_of_val(&controls[messages]) as _;
                    // SAFETY: the control buffer is 32 aligned bytes, room for one cmsghdr
                    // and a u16; CMSG_FIRSTHDR is non-null for it.
                    unsafe {
                        let cmsg = libc::CMSG_FIRSTHDR(&header);
                        (*cmsg).cmsg_level = libc::SOL_UDP;
                        (*cmsg).cmsg_type = UDP_SEGMENT;
                        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                        std::ptr::write_unaligned(
                            libc::CMSG_DATA(cmsg).cast::<u16>(),
                            first.len() as u16,
                        );
                        header.msg_controllen =
                            libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as _;
                    }
                }
                headers[messages].write(libc::mmsghdr {
                    msg_hdr: header,
                    msg_len: 0,
                });
                runs[messages] = n;
                messages += 1;
                used += n;
                next += n;
            }
            // SAFETY: the headers point at addresses, iovecs, controls and payloads that
            // outlive the call.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    headers.as_mut_ptr().cast(),
                    messages as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => return Err(err),
                    io::ErrorKind::Interrupted => continue,
                    _ if runs[0] > 1 => {
                        // The kernel or the device does not do GSO (EIO, EINVAL…): send
                        // datagram by datagram from now on.
                        tracing::warn!(%err, "UDP GSO refused; sending without it");
                        self.gso = false;
                        continue;
                    }
                    _ => {
                        // The first datagram was refused (e.g. EPERM, ENETUNREACH): drop it
                        // and carry on with the rest.
                        *failed += 1;
                        self.sent += 1;
                        continue;
                    }
                }
            }
            for &n in &runs[..sent as usize] {
                total.0 += n;
                total.1 += self.items[self.sent..self.sent + n]
                    .iter()
                    .map(|(_, d)| d.len())
                    .sum::<usize>();
                self.sent += n;
            }
        }
        self.sent_buffers
            .extend(self.items.drain(..).map(|(_, buffer)| buffer));
        self.sent = 0;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn sends_and_receives_batches_on_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let mut queue = SendQueue::default();
        for i in 0..100u8 {
            queue.push(b.local_addr().unwrap(), BytesMut::from(&[i; 10][..]));
        }
        let mut failed = 0;
        let (count, bytes) = queue.flush(a.as_raw_fd(), &mut failed).unwrap();
        assert_eq!((count, bytes, failed), (100, 1000, 0));
        assert!(queue.is_empty());

        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        std::thread::sleep(std::time::Duration::from_millis(20));
        while let Ok(n) = batch.recv(b.as_raw_fd()) {
            assert!(n > 0);
            for (datagram, from) in batch.iter() {
                assert_eq!(from, Some(a.local_addr().unwrap()));
                assert_eq!(datagram.len(), 10);
                seen.push(datagram[0]);
            }
        }
        assert_eq!(seen, (0..100).collect::<Vec<u8>>());
    }

    #[test]
    fn runs_to_one_address_coalesce_and_arrive_as_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        c.set_nonblocking(true).unwrap();
        let (to_b, to_c) = (b.local_addr().unwrap(), c.local_addr().unwrap());
        let mut queue = SendQueue::default();
        // 40 equal datagrams and a short tail to b, then 3 to c, then 1 to b.
        for i in 0..40u8 {
            queue.push(to_b, BytesMut::from(&[i; 1200][..]));
        }
        queue.push(to_b, BytesMut::from(&[40u8; 100][..]));
        for i in 0..3u8 {
            queue.push(to_c, BytesMut::from(&[i; 500][..]));
        }
        queue.push(to_b, BytesMut::from(&[41u8; 1200][..]));
        assert_eq!(queue.run_length(0, IOV_CAP), GSO_MAX_SEGMENTS);
        assert_eq!(
            queue.run_length(32, IOV_CAP),
            9,
            "8 full ones and the short tail"
        );
        let mut failed = 0;
        let (count, bytes) = queue.flush(a.as_raw_fd(), &mut failed).unwrap();
        assert_eq!((count, failed), (45, 0));
        assert_eq!(bytes, 41 * 1200 + 100 + 1500);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut batch = RecvBatch::default();
        let mut at_b = Vec::new();
        while let Ok(n) = batch.recv(b.as_raw_fd()) {
            assert!(n > 0);
            at_b.extend(batch.iter().map(|(d, _)| (d[0], d.len())));
        }
        let mut expected: Vec<(u8, usize)> = (0..40).map(|i| (i, 1200)).collect();
        expected.push((40, 100));
        expected.push((41, 1200));
        assert_eq!(at_b, expected);
        let mut at_c = Vec::new();
        while let Ok(n) = batch.recv(c.as_raw_fd()) {
            assert!(n > 0);
            at_c.extend(batch.iter().map(|(d, _)| d.len()));
        }
        assert_eq!(at_c, vec![500; 3]);
    }
}
