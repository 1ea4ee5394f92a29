//! Atomics the model checker can substitute: loom's under `--cfg loom`, `std`'s otherwise.
//! Only the ownership protocol goes through here; the control path uses `std` locks.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
