//! Exhaustive interleaving checks of the SPSC ring under loom.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release -p rill-engine --test loom_ring
//! ```
//!
//! loom's `UnsafeCell` flags any slot access that is not ordered by a happens-before edge with
//! the previous conflicting access, so a wrong memory ordering in the ring shows up as a failed
//! model even when the values happen to come out right. On top of that each model checks what
//! the caller can observe: nothing lost, duplicated or torn, FIFO order, and exact drop counts.
//!
//! The rings are tiny (capacity 1 or 2) and carry more items than they hold, so every model
//! crosses the end of the slot array and hits both "full" and "empty". Retry loops yield to
//! loom, which is how a spin-wait is expressed to the model checker; the ring itself never waits.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use rill_engine::ring::{self, Consumer, PopError, Producer, PushError};

/// A value with redundancy, so a read of a half-written slot would be caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    seq: u64,
    check: u64,
}

impl Item {
    fn new(seq: u64) -> Self {
        Self { seq, check: !seq }
    }

    fn seq(self) -> u64 {
        assert_eq!(self.check, !self.seq, "torn item");
        self.seq
    }
}

fn push_blocking<T>(producer: &mut Producer<T>, mut value: T) {
    loop {
        match producer.push(value) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                value = back;
                thread::yield_now();
            }
        }
    }
}

fn pop_blocking<T>(consumer: &mut Consumer<T>) -> T {
    loop {
        match consumer.pop() {
            Ok(value) => return value,
            Err(PopError::Empty) => thread::yield_now(),
        }
    }
}

/// Single pushes and pops, five items through two slots (two and a half laps).
#[test]
fn single_items_fifo_with_wraparound() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::channel::<Item>(2);
        let handle = thread::spawn(move || {
            for seq in 0..5 {
                push_blocking(&mut producer, Item::new(seq));
            }
        });
        for expected in 0..5 {
            assert_eq!(pop_blocking(&mut consumer).seq(), expected);
        }
        handle.join().unwrap();
        assert_eq!(consumer.pop(), Err(PopError::Empty));
    });
}

/// Capacity 1: every item reuses the same slot, the tightest reuse race there is.
#[test]
fn single_slot_reuse() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::channel::<Item>(1);
        let handle = thread::spawn(move || {
            for seq in 0..3 {
                push_blocking(&mut producer, Item::new(seq));
            }
        });
        for expected in 0..3 {
            assert_eq!(pop_blocking(&mut consumer).seq(), expected);
        }
        handle.join().unwrap();
    });
}

/// `push_slice` against `pop_into` and `pop_slice`: chunks that are partially accepted and
/// that wrap.
#[test]
fn chunk_push_slice_pop_into() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::channel::<Item>(2);
        let items: Vec<Item> = (0..5).map(Item::new).collect();
        let handle = thread::spawn(move || {
            let mut sent = 0;
            while sent < items.len() {
                let pushed = producer.push_slice(&items[sent..]);
                if pushed == 0 {
                    thread::yield_now();
                }
                sent += pushed;
            }
        });
        let mut got = Vec::new();
        let mut buf = [Item::new(u64::MAX); 2];
        let mut use_slice = false;
        while got.len() < 5 {
            // Alternate the two bulk reads so both copy paths meet the producer.
            let taken = if use_slice {
                let n = consumer.pop_slice(&mut buf);
                got.extend_from_slice(&buf[..n]);
                n
            } else {
                consumer.pop_into(&mut got, 2)
            };
            use_slice = !use_slice;
            if taken == 0 {
                thread::yield_now();
            }
        }
        handle.join().unwrap();
        let seqs: Vec<u64> = got.into_iter().map(Item::seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
    });
}

/// `push_iter` with a borrowed iterator against `pop_iter`. The items are loom `Arc`s, so a
/// duplicated item would be released twice and a lost one would be reported as a leak.
#[test]
fn chunk_push_iter_pop_iter() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::channel::<Arc<u64>>(2);
        let handle = thread::spawn(move || {
            let mut source = (0..4u64).map(Arc::new);
            let mut sent = 0;
            while sent < 4 {
                let pushed = producer.push_iter(source.by_ref());
                if pushed == 0 {
                    thread::yield_now();
                }
                sent += pushed;
            }
            assert!(source.next().is_none());
        });
        let mut next = 0u64;
        while next < 4 {
            let mut took = false;
            for value in consumer.pop_iter(2) {
                assert_eq!(*value, next);
                next += 1;
                took = true;
            }
            if !took {
                thread::yield_now();
            }
        }
        handle.join().unwrap();
    });
}

/// A consumer that stops part-way through a `pop_iter` leaves the rest in the ring.
#[test]
fn partially_consumed_pop_iter() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::channel::<Item>(2);
        let handle = thread::spawn(move || {
            for seq in 0..3 {
                push_blocking(&mut producer, Item::new(seq));
            }
        });
        let mut next = 0;
        while next < 3 {
            // Take at most one item out of whatever chunk is visible.
            match consumer.pop_iter(2).next() {
                Some(item) => {
                    assert_eq!(item.seq(), next);
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        handle.join().unwrap();
    });
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Items left in the ring are dropped exactly once, whichever handle goes last, and the
/// consumer sees the producer's abandonment.
#[test]
fn remaining_items_dropped_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut producer, mut consumer) = ring::channel::<Counted>(2);
        let counter = Arc::clone(&drops);
        let handle = thread::spawn(move || {
            for _ in 0..2 {
                // Capacity 2 and only two pushes: never full.
                assert!(producer.push(Counted(Arc::clone(&counter))).is_ok());
            }
            // Dropped here, possibly while the consumer is popping.
        });
        // The consumer takes whatever it sees in one attempt and then leaves; the rest must be
        // dropped by whichever handle is released last.
        let taken = consumer.pop().ok();
        drop(taken);
        drop(consumer);
        handle.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    });
}

/// A `PopIter` leaked after yielding an item must not let any claimed item be read or dropped
/// again: the yielded one is dropped once by its taker, the claimed-but-unyielded ones leak, and
/// the ring drops only what was never claimed.
#[test]
fn leaked_pop_iter_does_not_double_drop() {
    loom::model(|| {
        // Deliberately leaked values: counted with std atomics, because loom would report a
        // leaked loom `Arc` as a failure.
        let drops = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (mut producer, mut consumer) = ring::channel::<StdCounted>(2);
        let counter = std::sync::Arc::clone(&drops);
        let handle = thread::spawn(move || {
            for _ in 0..2 {
                assert!(producer.push(StdCounted(counter.clone())).is_ok());
            }
        });
        let mut chunk = consumer.pop_iter(2);
        let claimed = chunk.len();
        let taken = chunk.next();
        std::mem::forget(chunk);
        let leaked = claimed - usize::from(taken.is_some());
        drop(taken);
        // The consumer carries on past the claimed chunk.
        drop(consumer.pop());
        drop(consumer);
        handle.join().unwrap();
        assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 2 - leaked);
    });
}

struct StdCounted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for StdCounted {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The producer pushes and leaves; a consumer that sees the abandonment flag before a pop must
/// then receive every item (the shard's shutdown rule).
#[test]
fn abandonment_implies_everything_visible() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::channel::<Item>(2);
        let handle = thread::spawn(move || {
            for seq in 0..2 {
                assert!(producer.push(Item::new(seq)).is_ok());
            }
        });
        let mut next = 0;
        loop {
            let abandoned = consumer.is_abandoned();
            match consumer.pop() {
                Ok(item) => {
                    assert_eq!(item.seq(), next);
                    next += 1;
                }
                Err(PopError::Empty) if abandoned => break,
                Err(PopError::Empty) => thread::yield_now(),
            }
        }
        assert_eq!(next, 2);
        handle.join().unwrap();
    });
}

/// The producer learns that the consumer is gone.
#[test]
fn producer_sees_consumer_abandon() {
    loom::model(|| {
        let (mut producer, consumer) = ring::channel::<Item>(1);
        let handle = thread::spawn(move || drop(consumer));
        while !producer.is_abandoned() {
            thread::yield_now();
        }
        // Pushing into an abandoned ring is allowed; the item is dropped with the ring.
        assert!(producer.push(Item::new(0)).is_ok());
        handle.join().unwrap();
    });
}
