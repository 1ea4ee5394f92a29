//! Concurrency primitives that the model checker can substitute.
//!
//! Code that wants to be checked by [loom](https://docs.rs/loom) imports its atomics, `Arc`
//! and `UnsafeCell` from here instead of `std`. A normal build gets the `std` types at zero
//! cost; a build with `RUSTFLAGS="--cfg loom"` gets loom's instrumented ones, which explore
//! every interleaving and memory-ordering outcome the C++11 model allows.
//!
//! loom's `UnsafeCell` cannot hand out a raw pointer that outlives a borrow check, so it is
//! accessed through closures (`with` / `with_mut`). The `std` variant below mirrors exactly that
//! closure API, so one body of code compiles both ways and every access to shared memory is a
//! point loom can see.

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence,
};

// crossbeam-epoch (the in-memory tail's deferred drops) must run on loom's atomics and
// thread-locals too, or its collector would outlive each model run and drop loom objects
// outside it: a loom build needs both cfgs (crossbeam-epoch's `loom` feature is turned on
// for `cfg(loom)` builds in Cargo.toml).
#[cfg(all(loom, not(crossbeam_loom)))]
compile_error!("build the loom models with RUSTFLAGS=\"--cfg loom --cfg crossbeam_loom\"");

/// `std::cell::UnsafeCell` behind loom's closure-based access API.
///
/// `repr(transparent)` matters: a slice of these has the same layout as a slice of `T`, which
/// lets bulk copies treat a run of cells as one contiguous array (see [`cells_as_mut_ptr`]).
#[cfg(not(loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Gives `f` a pointer for reading. The caller's own protocol must exclude concurrent writers.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Gives `f` a pointer for writing. The caller's own protocol must exclude any concurrent
    /// access.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A pointer to the contents of the first cell whose provenance covers the whole slice.
///
/// Deriving it from the slice (rather than from `cells[0]`) is what makes it valid to step
/// past the first element; the `repr(transparent)` chain `UnsafeCell<T>` →
/// `std::cell::UnsafeCell<T>` → `T` makes the elements contiguous `T`s. Only available without
/// loom, whose cells are not layout-compatible and must be visited one by one.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn cells_as_mut_ptr<T>(cells: &[UnsafeCell<T>]) -> *mut T {
    // Casting a shared pointer to `*mut` is sound here because every byte of the slice lies
    // inside an `UnsafeCell`, where mutation through a shared borrow is permitted.
    cells.as_ptr().cast::<T>().cast_mut()
}
