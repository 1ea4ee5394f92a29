//! A global allocator wrapper that records the largest single allocation made by a thread, so
//! a check can prove that decoding hostile bytes never asks for more than its limits allow.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor, so reading it from inside the allocator
    // neither allocates nor registers anything.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with` instead of `with`: allocations during thread teardown must not panic.
    let _ = LARGEST.try_with(|largest| {
        if size > largest.get() {
            largest.set(size);
        }
    });
}

/// Forwards to the system allocator, noting each request's size for the calling thread.
///
/// Install it in a binary with `#[global_allocator]` (the fuzz targets and the regression test
/// do), then wrap the code under test in [`largest_allocation_during`].
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackingAlloc;

// SAFETY: every method forwards to `System` with the caller's own arguments, so the
// `GlobalAlloc` contract is `System`'s; the only addition is `note`, which neither allocates
// nor unwinds.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract for `layout`; passed through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
/// Allocations inside C libraries that call `malloc` directly (libzstd) are not seen.
pub fn largest_allocation_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LARGEST.with(|largest| largest.replace(0));
    let result = f();
    let during = LARGEST.with(|largest| largest.replace(before.max(largest.get())));
    (result, during)
}

/// Whether [`TrackingAlloc`] is this binary's global allocator (otherwise every measurement
/// reads 0 and an allocation bound would pass without checking anything).
pub fn tracking_installed() -> bool {
    let (probe, seen) = largest_allocation_during(|| std::hint::black_box(vec![0u8; 4096]));
    drop(probe);
    seen >= 4096
}
