//! Read buffers kept for the next request on the same worker thread: a fresh 16 KiB buffer for
//! every request and every response showed up in profiles as allocator time (the allocator
//! consolidates its free lists on each allocation of that size).

use std::cell::RefCell;

use bytes::BytesMut;

pub const SIZE: usize = 16 * 1024;
/// Reads from either side start with this much room.
pub const READ_CHUNK: usize = SIZE;
/// Spare buffers per thread: enough for the requests one thread has in flight at once.
const KEEP: usize = 32;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for `SIZE` bytes.
pub fn take() -> BytesMut {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| BytesMut::with_capacity(SIZE))
}

/// Hands a buffer back. One that grew large is let go, so a burst of big heads does not keep
/// its memory.
pub fn give(mut buf: BytesMut) {
    buf.clear();
    buf.reserve(SIZE);
    if buf.capacity() > 2 * SIZE {
        return;
    }
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < KEEP {
            spare.push(buf);
        }
    });
}
