//! A word that threads sleep on until its value changes: Linux's futex, or a mutex and a
//! condition variable elsewhere and under the model checker (which then sees every wait).

use std::time::Duration;

use crate::sync::Ordering;

#[cfg(all(target_os = "linux", not(loom)))]
#[derive(Debug, Default)]
pub(crate) struct Word(std::sync::atomic::AtomicU32);

#[cfg(all(target_os = "linux", not(loom)))]
impl Word {
    pub fn load(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// Changes the value (so sleepers that saw the old one do not sleep) and wakes all.
    pub fn bump_and_wake_all(&self) {
        self.0.fetch_add(1, Ordering::Release);
        // SAFETY: FUTEX_WAKE reads nothing through the pointer; it names a live word this
        // struct owns, private to the process.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }

    /// Sleeps while the value is `seen`, at most `timeout` (spurious returns are fine).
    pub fn wait(&self, seen: u32, timeout: Duration) {
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10^9, so it fits a c_long of any width.
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the word is live for the call (borrowed from `self`); the kernel compares
        // it with `seen` atomically and sleeps only if they are equal, reading the timeout
        // from a live local. Errors (EAGAIN: the value changed, EINTR, ETIMEDOUT) all mean
        // "look again", which the caller's loop does.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &timeout as *const libc::timespec,
            );
        }
    }
}

#[cfg(any(not(target_os = "linux"), loom))]
#[derive(Debug)]
pub(crate) struct Word {
    value: crate::sync::AtomicUsize,
    lock: Lock<()>,
    changed: Condvar,
}

#[cfg(any(not(target_os = "linux"), loom))]
impl Default for Word {
    fn default() -> Self {
        Self {
            value: crate::sync::AtomicUsize::new(0),
            lock: Lock::new(()),
            changed: Condvar::new(),
        }
    }
}

#[cfg(loom)]
use loom::sync::{Condvar, Mutex as Lock};
#[cfg(all(not(target_os = "linux"), not(loom)))]
use std::sync::{Condvar, Mutex as Lock};

#[cfg(any(not(target_os = "linux"), loom))]
impl Word {
    pub fn load(&self) -> u32 {
        self.value.load(Ordering::Acquire) as u32
    }

    pub fn bump_and_wake_all(&self) {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.value.fetch_add(1, Ordering::Release);
        self.changed.notify_all();
    }

    pub fn wait(&self, seen: u32, timeout: Duration) {
        let guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.load() == seen {
            #[cfg(loom)]
            {
                // The model has no clock: an unbounded wait, so that a lost wakeup shows
                // as a deadlock of the model.
                let _ = timeout;
                drop(self.changed.wait(guard));
            }
            #[cfg(not(loom))]
            drop(self.changed.wait_timeout(guard, timeout));
        }
    }
}
