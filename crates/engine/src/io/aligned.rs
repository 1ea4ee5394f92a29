//! Block-aligned staging buffers for writes that may bypass the page cache.
//!
//! `O_DIRECT` requires the memory address, the file position and the length of every write to
//! be multiples of the device's logical block size. 4096 covers every block size in use (512
//! and 4096 byte sectors), so buffers start on a 4096-byte boundary and have a capacity that is
//! a multiple of it; [`AlignedBuf::pad_to_block`] rounds the length up with zeros before a
//! direct write. Buffered writes are happy with the same buffers, so one type serves both modes.
//!
//! The memory comes zeroed from the allocator and stays initialised for the buffer's whole
//! life, which is why the spare capacity can be handed out as plain `&mut [u8]` rather than
//! `MaybeUninit`: bytes past `len` are always some earlier contents or zeros, never undefined.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

/// The alignment and granularity of direct I/O that this module guarantees.
pub const BLOCK: usize = 4096;

/// Rounds `n` up to the next multiple of [`BLOCK`].
#[must_use]
pub const fn align_up(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// Rounds `n` down to a multiple of [`BLOCK`].
#[must_use]
pub const fn align_down(n: u64) -> u64 {
    n - n % BLOCK as u64
}

/// Why a buffer could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlignedBufError {
    /// The capacity was zero or not a multiple of [`BLOCK`].
    #[error("aligned buffer capacity {0} is not a non-zero multiple of {BLOCK}")]
    Capacity(usize),
    /// The allocator had no memory for it.
    #[error("could not allocate an aligned buffer of {0} bytes")]
    OutOfMemory(usize),
}

/// Bytes did not fit in the buffer's remaining capacity; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer full: {needed} bytes needed, {available} available")]
pub struct BufferFull {
    /// Bytes the caller tried to add.
    pub needed: usize,
    /// Bytes that were free.
    pub available: usize,
}

/// A fixed-capacity heap buffer whose first byte is aligned to [`BLOCK`].
///
/// It never reallocates: its address is what an io_uring registers, so moving the `AlignedBuf`
/// value around is fine but its memory must stay put.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
}

// SAFETY: the buffer exclusively owns its allocation (no shared aliasing pointer is kept
// anywhere else) and has no thread-affine state, so moving it to another thread is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: `&AlignedBuf` only allows reads of initialised bytes; all mutation needs `&mut`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates a zeroed buffer of `capacity` bytes, which must be a non-zero multiple of
    /// [`BLOCK`].
    pub fn new(capacity: usize) -> Result<Self, AlignedBufError> {
        if capacity == 0 || !capacity.is_multiple_of(BLOCK) {
            return Err(AlignedBufError::Capacity(capacity));
        }
        let layout = Layout::from_size_align(capacity, BLOCK)
            .map_err(|_| AlignedBufError::Capacity(capacity))?;
        // SAFETY: `layout` has a non-zero size (checked above) and a valid power-of-two
        // alignment (`from_size_align` succeeded), which is all `alloc_zeroed` requires.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(AlignedBufError::OutOfMemory(capacity))?;
        Ok(Self {
            ptr,
            capacity,
            len: 0,
        })
    }

    /// Bytes the buffer can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes still free.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Start of the allocation, for handing to the kernel.
    #[must_use]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The written bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `capacity` initialised bytes owned by `self` (zeroed at
        // allocation, only ever overwritten since), `len <= capacity`, and the shared borrow
        // of `self` rules out a concurrent `&mut`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The written bytes, mutably (for stamping offsets into batches already staged).
    #[must_use]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the exclusive borrow of `self` makes this the only
        // reference to those bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The free bytes after `len`, to encode into directly; follow with [`Self::commit`].
    ///
    /// The bytes are initialised (zeros or stale contents), not necessarily zero.
    #[must_use]
    pub fn spare_capacity_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len <= capacity`, so the range `len..capacity` lies inside the allocation,
        // every byte of which is initialised; the exclusive borrow makes it unaliased.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.as_ptr().add(self.len),
                self.capacity - self.len,
            )
        }
    }

    /// Marks `n` bytes of the spare capacity as written.
    pub fn commit(&mut self, n: usize) -> Result<(), BufferFull> {
        if n > self.remaining() {
            return Err(BufferFull {
                needed: n,
                available: self.remaining(),
            });
        }
        self.len += n;
        Ok(())
    }

    /// Appends `bytes`, or writes nothing if they do not all fit.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), BufferFull> {
        let available = self.remaining();
        let spare = self.spare_capacity_mut();
        let Some(dst) = spare.get_mut(..bytes.len()) else {
            return Err(BufferFull {
                needed: bytes.len(),
                available,
            });
        };
        dst.copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    /// Shortens the buffer to `len` bytes; does nothing if it is already shorter.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Zero-fills from `len` up to the next multiple of [`BLOCK`] and returns the new length.
    ///
    /// Never fails: the capacity is itself a multiple of [`BLOCK`], so the padded length fits.
    /// The padding is written explicitly because bytes past `len` may be stale.
    pub fn pad_to_block(&mut self) -> usize {
        let padded = self.len.next_multiple_of(BLOCK).min(self.capacity);
        let pad = padded - self.len;
        self.spare_capacity_mut()[..pad].fill(0);
        self.len = padded;
        padded
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // The layout was valid when allocating; rebuilding it cannot fail, but stay panic-free.
        if let Ok(layout) = Layout::from_size_align(self.capacity, BLOCK) {
            // SAFETY: `ptr` was returned by `alloc_zeroed` with exactly this layout and has
            // not been freed: only `drop` frees it, and it runs once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unaligned_capacity() {
        assert_eq!(AlignedBuf::new(0).err(), Some(AlignedBufError::Capacity(0)));
        assert_eq!(
            AlignedBuf::new(5000).err(),
            Some(AlignedBufError::Capacity(5000))
        );
    }

    #[test]
    fn aligned_zeroed_and_bounded() {
        let mut buf = AlignedBuf::new(2 * BLOCK).unwrap();
        assert_eq!(buf.as_ptr() as usize % BLOCK, 0);
        assert!(buf.spare_capacity_mut().iter().all(|&b| b == 0));
        buf.extend_from_slice(&[7; 5000]).unwrap();
        assert_eq!(buf.len(), 5000);
        let err = buf.extend_from_slice(&[1; 4000]).unwrap_err();
        assert_eq!(
            err,
            BufferFull {
                needed: 4000,
                available: 2 * BLOCK - 5000
            }
        );
        assert_eq!(buf.len(), 5000, "a failed extend writes nothing");
        assert_eq!(buf.capacity(), 2 * BLOCK);
    }

    #[test]
    fn spare_capacity_then_commit() {
        let mut buf = AlignedBuf::new(BLOCK).unwrap();
        buf.spare_capacity_mut()[..3].copy_from_slice(b"abc");
        buf.commit(3).unwrap();
        assert_eq!(buf.as_slice(), b"abc");
        assert!(buf.commit(BLOCK).is_err());
        buf.as_mut_slice()[0] = b'x';
        assert_eq!(buf.as_slice(), b"xbc");
    }

    #[test]
    fn padding_overwrites_stale_bytes() {
        let mut buf = AlignedBuf::new(2 * BLOCK).unwrap();
        buf.extend_from_slice(&[0xff; 2 * BLOCK]).unwrap();
        buf.clear();
        buf.extend_from_slice(&[1; 10]).unwrap();
        assert_eq!(buf.pad_to_block(), BLOCK);
        assert_eq!(&buf.as_slice()[..10], &[1; 10]);
        assert!(buf.as_slice()[10..].iter().all(|&b| b == 0));
        assert_eq!(buf.pad_to_block(), BLOCK, "already aligned: unchanged");
        buf.clear();
        assert_eq!(buf.pad_to_block(), 0);
        buf.truncate(5);
        assert!(buf.is_empty());
    }

    #[test]
    fn rounding() {
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_down(8191), 4096);
        assert_eq!(align_down(4096), 4096);
    }
}
