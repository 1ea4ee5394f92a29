//! A response a group request waits for: filled by whichever request or timer completes the
//! rebalance step, read by the connection's writing thread.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

/// One answer, set once; later fills are ignored.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    value: Mutex<Option<T>>,
    filled: Condvar,
}

impl<T> Reply<T> {
    /// An empty slot, to be filled when the rebalance step completes.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            value: Mutex::new(None),
            filled: Condvar::new(),
        })
    }

    /// A slot that already holds its answer.
    pub fn ready(value: T) -> Arc<Self> {
        let reply = Self::new();
        reply.fill(value);
        reply
    }

    /// Sets the answer unless one is set, and wakes the waiter.
    pub fn fill(&self, value: T) {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(value);
            self.filled.notify_all();
        }
    }

    /// Waits for the answer until `deadline`; `None` when it passed first.
    pub fn wait(&self, deadline: Instant) -> Option<T> {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(value) = slot.take() {
                return Some(value);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            slot = self
                .filled
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
