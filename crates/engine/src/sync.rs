//! Atomics that the loom model checker can substitute (see the ring's loom models).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, Ordering};
