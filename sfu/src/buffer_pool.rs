//! Send buffers reused across packets, so the forwarding path allocates nothing per
//! packet per viewer: the fast path takes a buffer, protects a packet into it, the driver
//! sends it and hands the buffer back.

use bytes::BytesMut;

/// Capacity of a new buffer: one Ethernet-MTU datagram.
pub const BUFFER_CAPACITY: usize = 1500;
/// Most idle buffers kept (≈ 6 MiB at [`BUFFER_CAPACITY`]).
pub const MAX_IDLE_BUFFERS: usize = 4096;

/// See the module docs.
#[derive(Debug, Default)]
pub struct BufferPool {
    idle: Vec<BytesMut>,
    /// Buffers allocated because none was idle.
    allocated: u64,
}

impl BufferPool {
    /// A zero-filled buffer of `len` bytes, reused if one is idle.
    pub fn take(&mut self, len: usize) -> BytesMut {
        let mut buffer = match self.idle.pop() {
            Some(buffer) => buffer,
            None => {
                self.allocated += 1;
                BytesMut::with_capacity(len.max(BUFFER_CAPACITY))
            }
        };
        buffer.clear();
        buffer.resize(len, 0);
        buffer
    }

    /// Keeps a buffer that was sent for the next [`BufferPool::take`] (if it is big enough
    /// and the pool is not full).
    pub fn give(&mut self, buffer: BytesMut) {
        if self.idle.len() < MAX_IDLE_BUFFERS && buffer.capacity() >= BUFFER_CAPACITY {
            self.idle.push(buffer);
        }
    }

    /// Buffers allocated because none was idle.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Idle buffers.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_zeroed_and_the_pool_is_bounded() {
        let mut pool = BufferPool::default();
        let mut first = pool.take(100);
        assert_eq!(first.len(), 100);
        first.copy_from_slice(&[7; 100]);
        pool.give(first);
        let again = pool.take(1200);
        assert_eq!(pool.allocated(), 1, "the returned buffer was reused");
        assert!(again.iter().all(|&b| b == 0), "reused buffers are zeroed");
        pool.give(BytesMut::with_capacity(10));
        assert_eq!(pool.idle(), 0, "too small to keep");
        for _ in 0..MAX_IDLE_BUFFERS + 5 {
            pool.give(BytesMut::with_capacity(BUFFER_CAPACITY));
        }
        assert_eq!(pool.idle(), MAX_IDLE_BUFFERS);
    }
}
