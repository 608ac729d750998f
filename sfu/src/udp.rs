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

/// Outgoing datagrams queued during one wake-up of the shard.
#[derive(Default)]
pub struct SendQueue {
    items: Vec<(SocketAddr, BytesMut)>,
    /// How many of `items` were already sent (after a partial `sendmmsg`).
    sent: usize,
}

impl SendQueue {
    /// Queues one datagram.
    pub fn push(&mut self, to: SocketAddr, datagram: BytesMut) {
        self.items.push((to, datagram));
    }

    /// Nothing left to send.
    pub fn is_empty(&self) -> bool {
        self.sent >= self.items.len()
    }

    /// Datagrams still queued.
    pub fn len(&self) -> usize {
        self.items.len() - self.sent
    }

    /// Sends as much as the socket takes without blocking. Returns `(datagrams, bytes)`
    /// sent; datagrams the kernel refused outright are counted in `failed` and skipped.
    /// `WouldBlock` leaves the rest queued for when the socket is writable.
    pub fn flush(&mut self, fd: RawFd, failed: &mut u64) -> io::Result<(usize, usize)> {
        let mut total = (0, 0);
        while self.sent < self.items.len() {
            let chunk = &self.items[self.sent..(self.sent + BATCH).min(self.items.len())];
            let mut addresses: [MaybeUninit<SockAddr>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] =
                [const { MaybeUninit::uninit() }; BATCH];
            for (i, (to, datagram)) in chunk.iter().enumerate() {
                let address = addresses[i].write(SockAddr::from(*to));
                iovecs[i].write(libc::iovec {
                    iov_base: datagram.as_ptr() as *mut libc::c_void,
                    iov_len: datagram.len(),
                });
                // SAFETY: msghdr is plain old data; zeroed then filled field by field.
                let mut header: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
                header.msg_name = address.as_ptr() as *mut libc::c_void;
                header.msg_namelen = address.len();
                header.msg_iov = iovecs[i].as_mut_ptr();
                header.msg_iovlen = 1;
                headers[i].write(libc::mmsghdr {
                    msg_hdr: header,
                    msg_len: 0,
                });
            }
            // SAFETY: the headers point at addresses and payloads alive for the call.
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
                    io::ErrorKind::WouldBlock => return Err(err),
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        // The first datagram of the chunk was refused (e.g. EPERM, ENETUNREACH):
                        // drop it and carry on with the rest.
                        *failed += 1;
                        self.sent += 1;
                        continue;
                    }
                }
            }
            let sent = sent as usize;
            total.0 += sent;
            total.1 += chunk[..sent].iter().map(|(_, d)| d.len()).sum::<usize>();
            self.sent += sent;
        }
        self.items.clear();
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
}
