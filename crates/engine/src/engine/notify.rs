//! Waiting without spinning: a shard that parks when idle, and waiters (acks, consumers) that
//! sleep until a watermark moves.
//!
//! Both follow one rule so that no wakeup is lost: the sleeper announces itself, then checks
//! for work once more, then sleeps; the waker makes its change visible, then looks for an
//! announced sleeper. A sequentially consistent fence on each side orders "announce / check"
//! against "publish / look", so at least one of them sees the other.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Longest single sleep of a waiter: a bound on every wait loop, so even a missed wakeup
/// (a bug) costs at most this much latency, never a hang.
const MAX_NAP: Duration = Duration::from_millis(100);

/// Wakes a parked shard thread when producers hand it work.
#[derive(Debug, Default)]
pub(crate) struct ShardWaker {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl ShardWaker {
    /// Registers the shard's thread; called once from the shard itself.
    pub fn bind_current_thread(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// After handing the shard work: wakes it if it is parked or about to park.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    /// Parks the shard unless `has_work` finds something once it has announced itself.
    pub fn park_unless(&self, has_work: impl FnOnce() -> bool, timeout: Option<Duration>) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            match timeout {
                Some(timeout) => std::thread::park_timeout(timeout),
                None => std::thread::park(),
            }
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

/// Lets threads wait for a condition that the shard makes true (a watermark moving, a batch
/// acknowledged). The shard pays one atomic load per notification while nobody waits.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    condvar: Condvar,
}

impl Notifier {
    /// Called after the change is published.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.condvar.notify_all();
        }
    }

    /// Waits until `ready` returns `Some`, or `deadline` passes (then `None`).
    pub fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if let Some(value) = ready() {
            return Some(value);
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let result = loop {
            if let Some(value) = ready() {
                break Some(value);
            }
            let nap = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(MAX_NAP),
                    _ => break None,
                },
                None => MAX_NAP,
            };
            guard = self
                .condvar
                .wait_timeout(guard, nap)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;

    #[test]
    fn waiters_wake_on_notify_not_on_timeout() {
        let notifier = Arc::new(Notifier::default());
        let value = Arc::new(AtomicI64::new(0));
        let waiter = {
            let (notifier, value) = (notifier.clone(), value.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let deadline = Some(started + Duration::from_secs(10));
                let seen = notifier.wait_until(deadline, || {
                    (value.load(Ordering::Acquire) >= 5).then_some(())
                });
                (seen, started.elapsed())
            })
        };
        for i in 1..=5 {
            std::thread::sleep(Duration::from_millis(5));
            value.store(i, Ordering::Release);
            notifier.notify();
        }
        let (seen, elapsed) = waiter.join().unwrap();
        assert!(seen.is_some());
        assert!(elapsed < Duration::from_secs(5));
    }

    #[test]
    fn deadline_ends_the_wait() {
        let notifier = Notifier::default();
        let deadline = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(notifier.wait_until(deadline, || None::<()>), None);
    }
}
