//! A global allocator for processes that decode Kafka requests from untrusted peers.
//!
//! `kafka-protocol` 0.18 sizes each array from the element count in the request before it
//! decodes a single element (`Vec::with_capacity(count)`), so a 12-byte request claiming
//! 2^31 topics asks for ~150 GB. The system allocator refuses that, and a refused allocation
//! aborts the process: one peer would stop the broker. (Upstream fixes that bound the count by
//! the bytes left are proposed but not released.)
//!
//! [`ReserveLazily`] serves allocations of 1 GiB and more with an anonymous private mapping
//! made with `MAP_NORESERVE`: address space is reserved, memory is committed only for the pages
//! actually written. A bogus count then costs address space for the instant it takes the
//! decoder to reach the end of the frame and fail, and the memory used stays bounded by the
//! elements the frame really holds (so by the frame size limit). Everything smaller goes to
//! the system allocator unchanged. Under strict overcommit accounting
//! (`vm.overcommit_memory=2`) the kernel still refuses such mappings: set the frame limit
//! with that in mind there.
//!
//! `rill serve` installs it; an application embedding the server should too:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: rill_server::ReserveLazily = rill_server::ReserveLazily;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations from this size on are lazily committed mappings.
pub const LARGE_ALLOCATION: usize = 1 << 30;

/// Mappings are page-aligned; larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// The system allocator, with lazily committed mappings for huge allocations (see the module
/// documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReserveLazily;

fn is_mapped(size: usize, align: usize) -> bool {
    cfg!(target_os = "linux") && size >= LARGE_ALLOCATION && align <= PAGE
}

#[cfg(target_os = "linux")]
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory; the result is checked for MAP_FAILED below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

#[cfg(target_os = "linux")]
fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: `ptr` and `size` describe exactly one mapping made by `map` (the allocator's
    // callers pass back the layout they allocated with), which nothing uses any more.
    unsafe { libc::munmap(ptr.cast(), size) };
}

#[cfg(not(target_os = "linux"))]
fn map(_: usize) -> *mut u8 {
    std::ptr::null_mut()
}

#[cfg(not(target_os = "linux"))]
fn unmap(_: *mut u8, _: usize) {}

// SAFETY: every block comes either from `System` (small, or over-aligned) or from a fresh
// page-aligned mapping of at least its size (large); which one is decided by the layout alone,
// so `dealloc` and `realloc` always return a block to the allocator that made it.
unsafe impl GlobalAlloc for ReserveLazily {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            // SAFETY: the caller's layout contract is passed on unchanged.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout.size(), layout.align()) {
            // Anonymous mappings are zero-filled.
            map(layout.size())
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_mapped(layout.size(), layout.align()) {
            unmap(ptr, layout.size());
        } else {
            // SAFETY: `ptr` came from `System` with this layout (same decision as in `alloc`).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (old_mapped, new_mapped) = (
            is_mapped(layout.size(), layout.align()),
            is_mapped(new_size, layout.align()),
        );
        if !old_mapped && !new_mapped {
            // SAFETY: both sizes belong to `System`; the caller's contract is passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size`, with the old alignment, is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (the caller's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated by this allocator with `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_allocation_reserves_without_committing() {
        // 256 GiB: more than this machine's memory, which the system allocator refuses.
        let layout = Layout::from_size_align(256 << 30, 8).unwrap_or(Layout::new::<u8>());
        // SAFETY: the layout has a non-zero size; the block is written within bounds and freed
        // with the same layout.
        unsafe {
            let ptr = ReserveLazily.alloc(layout);
            assert!(!ptr.is_null());
            ptr.write(1);
            ptr.add(layout.size() - 1).write(2);
            ReserveLazily.dealloc(ptr, layout);
        }
    }

    #[test]
    fn reallocation_across_the_threshold_keeps_the_bytes() {
        let small = Layout::from_size_align(64, 8).unwrap_or(Layout::new::<u8>());
        // SAFETY: sizes are non-zero, writes and reads stay within the blocks, and each block
        // is freed once with the layout it has.
        unsafe {
            let ptr = ReserveLazily.alloc(small);
            assert!(!ptr.is_null());
            ptr.write_bytes(7, 64);
            let big = ReserveLazily.realloc(ptr, small, LARGE_ALLOCATION);
            assert!(!big.is_null());
            assert_eq!(*big.add(63), 7);
            let large = Layout::from_size_align(LARGE_ALLOCATION, 8).unwrap_or(small);
            let back = ReserveLazily.realloc(big, large, 64);
            assert!(!back.is_null());
            assert_eq!(*back, 7);
            ReserveLazily.dealloc(back, small);
        }
    }
}
