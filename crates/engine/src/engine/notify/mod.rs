//! Waiting without spinning: a shard that sleeps when idle (parked, or in the kernel until its
//! writes complete), and waiters (acks, consumers) that sleep until a watermark moves.
//!
//! Both follow one rule so that no wakeup is lost: the sleeper announces itself, then checks
//! for work once more, then sleeps; the waker makes its change visible, then looks for an
//! announced sleeper. A sequentially consistent fence on each side orders "announce / check"
//! against "publish / look", so at least one of them sees the other. The sleep itself is on a
//! primitive that remembers a wakeup given before the sleep starts (a thread's park token, an
//! eventfd's counter, a futex word's value), so a wakeup between the check and the sleep ends
//! the sleep at once.
//!
//! Nothing here takes a lock on the waker's side: a shard that finds nobody asleep pays one
//! fence and one load, and one system call when somebody is.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[cfg(loom)]
use loom::thread::{Thread, current as current_thread};
#[cfg(not(loom))]
use std::thread::{Thread, current as current_thread};

// The model checker's fence under loom: a std fence would be invisible to it, and the
// announce / check protocols below hold only through these fences.
use crate::sync::{AtomicUsize, Ordering, fence};

#[cfg(target_os = "linux")]
pub(crate) mod doorbell;
mod futex;

/// Longest single sleep of a waiter: a bound on every wait loop, so even a missed wakeup
/// (a bug) costs at most this much latency, never a hang.
pub(crate) const MAX_NAP: Duration = Duration::from_millis(100);

/// The next spin window of a thread that spins up to `configured` before it sleeps, from how
/// long its last sleep lasted: woken within the configured window, a longer spin would have
/// caught the work without the two system calls of a sleep and a wake, so the window doubles
/// (up to the configured one); woken later, the spin was wasted, so it halves (down to none).
/// A trickle thus sleeps at once and costs no CPU between items, while a steady stream of
/// close items is caught spinning.
pub(crate) fn next_spin(spin: Duration, configured: Duration, slept: Duration) -> Duration {
    if slept < configured {
        (spin * 2).max(configured / 16).min(configured)
    } else {
        spin / 2
    }
}

/// The shard runs (or spins): wakers have nothing to do.
const RUNNING: usize = 0;
/// The shard is parked (or about to): a waker unparks its thread.
const PARKED: usize = 1;
/// The shard sleeps in the kernel until a write completes (or is about to): a waker rings the
/// eventfd registered with its io_uring, which ends that sleep as a completion would.
const IN_KERNEL: usize = 2;

/// Wakes a sleeping shard thread when producers hand it work, wherever it sleeps.
#[derive(Debug, Default)]
pub(crate) struct ShardWaker {
    state: AtomicUsize,
    thread: OnceLock<Thread>,
    #[cfg(target_os = "linux")]
    doorbell: OnceLock<std::sync::Arc<doorbell::Doorbell>>,
}

impl ShardWaker {
    /// Registers the shard's thread; called once from the shard itself.
    pub fn bind_current_thread(&self) {
        let _ = self.thread.set(current_thread());
    }

    /// Registers the eventfd the shard's io_uring signals on completions; called once.
    #[cfg(target_os = "linux")]
    pub fn bind_doorbell(&self, doorbell: std::sync::Arc<doorbell::Doorbell>) {
        let _ = self.doorbell.set(doorbell);
    }

    /// After handing the shard work: wakes it if it sleeps or is about to. Of several
    /// producers waking one sleep, only the first makes a system call.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.state.load(Ordering::Relaxed) == RUNNING {
            return;
        }
        match self.state.swap(RUNNING, Ordering::AcqRel) {
            PARKED => {
                if let Some(thread) = self.thread.get() {
                    thread.unpark();
                }
            }
            #[cfg(target_os = "linux")]
            IN_KERNEL => {
                if let Some(doorbell) = self.doorbell.get() {
                    doorbell.ring();
                }
            }
            _ => {}
        }
    }

    /// Parks the shard unless `has_work` finds something once it has announced itself.
    pub fn park_unless(&self, has_work: impl FnOnce() -> bool, timeout: Option<Duration>) {
        self.state.store(PARKED, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            park(timeout);
        }
        self.state.store(RUNNING, Ordering::Relaxed);
    }

    /// Sleeps in the kernel on the doorbell (which the ring also rings on each completion)
    /// unless `has_work` finds work or a completion once the shard has announced itself.
    /// Returns false when no doorbell is bound (the caller waits on the ring instead).
    #[cfg(target_os = "linux")]
    pub fn sleep_in_kernel_unless(
        &self,
        has_work: impl FnOnce() -> bool,
        timeout: Duration,
    ) -> bool {
        let Some(doorbell) = self.doorbell.get() else {
            return false;
        };
        self.state.store(IN_KERNEL, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Rings from before the announcement are answered by the check below; clearing them
        // keeps the sleep from ending at once for nothing.
        doorbell.clear();
        if !has_work() {
            doorbell.wait(timeout);
        }
        self.state.store(RUNNING, Ordering::Relaxed);
        true
    }
}

#[cfg(not(loom))]
fn park(timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => std::thread::park_timeout(timeout),
        None => std::thread::park(),
    }
}

/// The model has no clock: an unbounded park, so that a lost wakeup shows as a deadlock.
#[cfg(loom)]
fn park(_timeout: Option<Duration>) {
    loom::thread::park();
}

/// Lets threads wait for a condition that the shard makes true (a watermark moving, a batch
/// acknowledged): an event count. The shard pays one fence and one load per notification while
/// nobody waits, and never takes a lock; a waiter sleeps on the count's word (a futex on
/// Linux), so a notification that comes between its last check and its sleep ends the sleep.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    waiters: AtomicUsize,
    events: futex::Word,
}

impl Notifier {
    /// Called after the change is published.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.events.bump_and_wake_all();
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
        let result = loop {
            fence(Ordering::SeqCst);
            let seen = self.events.load();
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
            self.events.wait(seen, nap);
        };
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        result
    }
}

#[cfg(all(test, not(loom)))]
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

    /// A producer's ring ends a shard's sleep in the kernel long before its timeout: the sleep
    /// of a shard whose writes are in flight no longer delays another partition's batch.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_ring_ends_a_sleep_in_the_kernel() {
        let waker = Arc::new(ShardWaker::default());
        waker.bind_doorbell(Arc::new(doorbell::Doorbell::new().unwrap()));
        let work = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sleeper = {
            let (waker, work) = (waker.clone(), work.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !work.load(Ordering::Acquire) {
                    assert!(waker.sleep_in_kernel_unless(
                        || work.load(Ordering::Acquire),
                        Duration::from_secs(20)
                    ));
                }
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        work.store(true, Ordering::Release);
        waker.wake();
        let slept = sleeper.join().unwrap();
        assert!(slept < Duration::from_secs(10), "slept {slept:?}");
    }
}

/// Model checks of the two sleep protocols: loom explores every interleaving of a sleeper's
/// announce / check / sleep with a waker's publish / look / wake, and reports a lost wakeup as
/// a deadlock (its waits have no timeout).
///
/// `RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p rill-engine --lib loom_`
#[cfg(all(test, loom))]
mod loom_model {
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;

    use super::Notifier;
    use crate::sync::Ordering;

    #[test]
    fn loom_a_notification_is_never_lost() {
        loom::model(|| {
            let notifier = Arc::new(Notifier::default());
            let ready = Arc::new(AtomicBool::new(false));
            let waiter = {
                let (notifier, ready) = (notifier.clone(), ready.clone());
                thread::spawn(move || {
                    notifier.wait_until(None, || ready.load(Ordering::Acquire).then_some(()))
                })
            };
            ready.store(true, Ordering::Release);
            notifier.notify();
            let seen = waiter.join().unwrap_or_else(|_| panic!("waiter panicked"));
            assert_eq!(seen, Some(()));
        });
    }

    /// A producer's push and wake against a shard's announce, check and park: the shard
    /// always ends up seeing the work (a lost wakeup would park it for good: a deadlock).
    #[test]
    fn loom_a_parking_shard_sees_every_push() {
        use super::ShardWaker;
        loom::model(|| {
            let waker = Arc::new(ShardWaker::default());
            let work = Arc::new(AtomicBool::new(false));
            let shard = {
                let (waker, work) = (waker.clone(), work.clone());
                thread::spawn(move || {
                    waker.bind_current_thread();
                    while !work.load(Ordering::Acquire) {
                        waker.park_unless(|| work.load(Ordering::Acquire), None);
                    }
                })
            };
            // The shard may not have bound its thread yet: then it has not parked either,
            // and its own check sees the work.
            work.store(true, Ordering::Release);
            waker.wake();
            shard.join().unwrap_or_else(|_| panic!("shard panicked"));
        });
    }

    #[test]
    fn loom_two_waiters_both_wake() {
        loom::model(|| {
            let notifier = Arc::new(Notifier::default());
            let ready = Arc::new(AtomicBool::new(false));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let (notifier, ready) = (notifier.clone(), ready.clone());
                    thread::spawn(move || {
                        notifier.wait_until(None, || ready.load(Ordering::Acquire).then_some(()))
                    })
                })
                .collect();
            ready.store(true, Ordering::Release);
            notifier.notify();
            for waiter in waiters {
                let seen = waiter.join().unwrap_or_else(|_| panic!("waiter panicked"));
                assert_eq!(seen, Some(()));
            }
        });
    }
}
