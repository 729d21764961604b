//! What a completion-based (io_uring) model needs beyond the `io-uring` crate: a ring of
//! provided buffers, shared by every connection of one ring.
//!
//! With readiness (epoll) the program picks the buffer when it calls `read`. With completions it
//! must name the buffer when it *submits* the receive, long before any byte arrives — one buffer
//! per waiting connection, 10 000 idle connections, 10 000 idle buffers. Provided buffers turn
//! that around: the program hands the kernel a pool (a "buffer ring", Linux 5.19), every receive
//! says "take one from group G", and the completion says which buffer (its id) holds the bytes.
//! The program reads them and gives the buffer back by writing its entry at the ring's tail.
//! Memory is then one pool per ring, whatever the number of connections.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// A ring of `count` provided buffers of `size` bytes each, registered as one buffer group.
///
/// One anonymous mapping holds both: the ring of entries the kernel reads buffer addresses from
/// (page-aligned, as the kernel requires), then the buffers. The program touches a buffer only
/// through a raw pointer, and only while the kernel does not own it.
#[derive(Debug)]
pub struct BufRing {
    /// The start of the mapping: `count` ring entries.
    entries: NonNull<BufRingEntry>,
    /// The first buffer, page-aligned, after the entries.
    buffers: NonNull<u8>,
    mapped: usize,
    count: u16,
    size: usize,
    /// Our copy of the ring's tail: how many buffers were ever given to the kernel.
    tail: u16,
    group: u16,
}

impl BufRing {
    /// Maps a ring of `count` buffers (a power of two, at most 32 768) of `size` bytes each, every
    /// buffer already in the ring. Pages cost memory only once the kernel first writes them.
    pub fn new(count: u16, size: usize, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: bad count or size",
            ));
        }
        let page = 4096;
        let ring_bytes = (usize::from(count) * size_of::<BufRingEntry>()).next_multiple_of(page);
        let mapped = ring_bytes + usize::from(count) * size;
        let len = NonZeroUsize::new(mapped).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh, zero-filled anonymous mapping aliases nothing and is page-aligned.
        let base = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }?;
        // SAFETY: `ring_bytes` < `mapped`, so the buffers start inside the mapping.
        let buffers = unsafe { base.cast::<u8>().add(ring_bytes) };
        let mut ring = BufRing {
            entries: base.cast(),
            buffers,
            mapped,
            count,
            size,
            tail: 0,
            group,
        };
        for bid in 0..count {
            ring.recycle(bid);
        }
        Ok(ring)
    }

    /// Registers the ring with an io_uring instance (Linux 5.19 or later).
    pub fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the entries stay mapped until `self` is dropped, and the owner drops the
        // io_uring instance before this buffer ring (see the field order of the model that uses
        // it), so the kernel never reads an unmapped entry.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count,
                self.group,
                0,
            )
        }
    }

    /// The buffer group id to put in receive operations.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.size
    }

    fn buffer(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid % count < count, so the offset stays inside the mapping.
        unsafe {
            self.buffers
                .as_ptr()
                .add(usize::from(bid % self.count) * self.size)
        }
    }

    /// The first `len` bytes of buffer `bid`, which a completion has just handed back to us.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        // SAFETY: the buffer is inside the mapping, and the kernel, having completed into it,
        // does not write it again until it is recycled (which needs `&mut self`).
        unsafe { std::slice::from_raw_parts(self.buffer(bid), len.min(self.size)) }
    }

    /// Gives buffer `bid` back to the kernel: its entry is written at the tail, then the tail is
    /// published with release ordering, so the kernel never sees the tail before the entry.
    pub fn recycle(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < count, inside the mapping; the kernel reads only entries below the
        // tail, and this one is at the tail, not yet published.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(self.buffer(bid) as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid % self.count);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is a u16 inside the first entry, aligned, and shared with the kernel
        // only through atomic accesses.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length, and nothing uses it any more.
        unsafe {
            let _ = munmap(self.entries.cast(), self.mapped);
        }
    }
}
