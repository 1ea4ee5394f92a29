//! Producer-thread → consumer-thread throughput of rill's SPSC ring, side by side with `rtrb`
//! (another SPSC ring) and crossbeam's `ArrayQueue` (a bounded MPMC queue), in one run.
//!
//! Two shapes of traffic:
//!
//! * `single`: one item per push and per pop, the worst case for a ring because every item
//!   pays for its own publication;
//! * `chunk64`: the producer offers slices of up to 64 items and the consumer takes up to 64 at
//!   a time, which is how the shard thread drains its inbox. rill and rtrb both copy into a
//!   reused 64-item buffer (`push_slice`/`pop_slice` vs `push_partial_slice`/`pop_partial_slice`);
//!   `rill-pop_iter` consumes in place through `pop_iter` instead. `ArrayQueue` has no batch API,
//!   so its "chunk" is a loop of single operations, shown for scale.
//!
//! Each sample spawns the consumer thread, pins producer and consumer to two different cores,
//! releases both through a barrier and times until the consumer has taken every item. The
//! consumer sums what it receives and the sum is checked afterwards, so a queue that lost or
//! duplicated items would fail the bench instead of winning it.
//!
//! Run with `cargo bench --bench ring`. Measurement time is kept short because the reference
//! machine has two cores shared with other work. On that machine (a 2-vCPU VM) single-item
//! figures are bimodal from one process run to the next, for every SPSC queue alike: a run
//! settles either into a streaming state with a backlog in the ring or into one where the
//! consumer polls an almost empty ring and slows the producer, and the two differ by up to 2x.
//! Compare implementations over several runs, or interleaved, rather than from one run.

use std::hint::{black_box, spin_loop};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use rill::engine::ring;

const CAPACITY: usize = 1024;
const CHUNK: usize = 64;

/// Core ids, read once before any thread is pinned: `get_core_ids` reports the calling
/// thread's affinity mask, so asking after pinning would return a single core.
fn cores() -> &'static [core_affinity::CoreId] {
    static CORES: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

fn pin(index: usize) {
    let cores = cores();
    if cores.len() >= 2 {
        core_affinity::set_for_current(cores[index]);
    }
}

/// Moves the items `0..total` from a producer thread to a consumer thread and returns the time
/// from the common start until the consumer holds the last one.
///
/// `send(producer, next, end)` tries to push a prefix of `next..end` and returns how many it
/// pushed; `recv(consumer, &mut sum)` takes what it can, adds it to `sum` and returns how many
/// it took.
fn transfer<P: Send, C: Send>(
    total: u64,
    (mut producer, mut consumer): (P, C),
    mut send: impl FnMut(&mut P, u64, u64) -> u64,
    mut recv: impl FnMut(&mut C, &mut u64) -> u64 + Send,
) -> Duration {
    pin(0);
    let barrier = &Barrier::new(2);
    let (start, end, sum) = std::thread::scope(|s| {
        // `move`: the consumer handle must live on the consumer thread's stack. Borrowing it
        // from this frame would put both handles' hot fields side by side in one cache line
        // and benchmark false sharing in the harness rather than the queues.
        let consumer_thread = s.spawn(move || {
            pin(1);
            barrier.wait();
            let mut received = 0;
            let mut sum = 0u64;
            while received < total {
                let n = recv(&mut consumer, &mut sum);
                if n == 0 {
                    spin_loop();
                }
                received += n;
            }
            (Instant::now(), sum)
        });
        barrier.wait();
        let start = Instant::now();
        let mut next = 0;
        while next < total {
            let n = send(&mut producer, next, total);
            if n == 0 {
                spin_loop();
            }
            next += n;
        }
        match consumer_thread.join() {
            Ok((end, sum)) => (start, end, sum),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    assert_eq!(
        sum,
        total.wrapping_mul(total.wrapping_sub(1)) / 2,
        "items lost"
    );
    end.saturating_duration_since(start)
}

/// Fills `buf` with the next at most `CHUNK` values of `next..end`.
fn next_chunk(buf: &mut [u64; CHUNK], next: u64, end: u64) -> &[u64] {
    let len = (end - next).min(CHUNK as u64) as usize;
    for (offset, slot) in (0u64..).zip(&mut buf[..len]) {
        *slot = next + offset;
    }
    &buf[..len]
}

fn single(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/single");
    group.throughput(Throughput::Elements(1));

    group.bench_function(BenchmarkId::from_parameter("rill"), |b| {
        b.iter_custom(|iters| {
            transfer(
                iters,
                ring::channel::<u64>(CAPACITY),
                |p, next, _| u64::from(p.push(next).is_ok()),
                |c, sum| match c.pop() {
                    Ok(v) => {
                        *sum = sum.wrapping_add(v);
                        1
                    }
                    Err(_) => 0,
                },
            )
        });
    });

    group.bench_function(BenchmarkId::from_parameter("rtrb"), |b| {
        b.iter_custom(|iters| {
            transfer(
                iters,
                rtrb::RingBuffer::<u64>::new(CAPACITY),
                |p, next, _| u64::from(p.push(next).is_ok()),
                |c, sum| match c.pop() {
                    Ok(v) => {
                        *sum = sum.wrapping_add(v);
                        1
                    }
                    Err(_) => 0,
                },
            )
        });
    });

    group.bench_function(BenchmarkId::from_parameter("crossbeam-ArrayQueue"), |b| {
        b.iter_custom(|iters| {
            let queue = Arc::new(ArrayQueue::<u64>::new(CAPACITY));
            transfer(
                iters,
                (Arc::clone(&queue), queue),
                |q, next, _| u64::from(q.push(next).is_ok()),
                |q, sum| match q.pop() {
                    Some(v) => {
                        *sum = sum.wrapping_add(v);
                        1
                    }
                    None => 0,
                },
            )
        });
    });

    group.finish();
}

fn chunk64(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/chunk64");
    group.throughput(Throughput::Elements(1));

    group.bench_function(BenchmarkId::from_parameter("rill"), |b| {
        b.iter_custom(|iters| {
            let mut input = [0u64; CHUNK];
            let mut output = [0u64; CHUNK];
            transfer(
                iters,
                ring::channel::<u64>(CAPACITY),
                |p, next, end| p.push_slice(next_chunk(&mut input, next, end)) as u64,
                move |c, sum| {
                    let n = c.pop_slice(&mut output);
                    *sum = output[..n].iter().fold(*sum, |acc, &v| acc.wrapping_add(v));
                    n as u64
                },
            )
        });
    });

    group.bench_function(BenchmarkId::from_parameter("rill-pop_iter"), |b| {
        b.iter_custom(|iters| {
            let mut input = [0u64; CHUNK];
            transfer(
                iters,
                ring::channel::<u64>(CAPACITY),
                |p, next, end| p.push_slice(next_chunk(&mut input, next, end)) as u64,
                |c, sum| {
                    let mut n = 0;
                    for v in c.pop_iter(CHUNK) {
                        *sum = sum.wrapping_add(v);
                        n += 1;
                    }
                    n
                },
            )
        });
    });

    group.bench_function(BenchmarkId::from_parameter("rtrb"), |b| {
        b.iter_custom(|iters| {
            let mut input = [0u64; CHUNK];
            let mut output = [0u64; CHUNK];
            transfer(
                iters,
                rtrb::RingBuffer::<u64>::new(CAPACITY),
                |p, next, end| {
                    let (pushed, _) = p.push_partial_slice(next_chunk(&mut input, next, end));
                    pushed.len() as u64
                },
                move |c, sum| {
                    let (popped, _) = c.pop_partial_slice(&mut output);
                    *sum = popped.iter().fold(*sum, |acc, &v| acc.wrapping_add(v));
                    popped.len() as u64
                },
            )
        });
    });

    group.bench_function(BenchmarkId::from_parameter("crossbeam-ArrayQueue"), |b| {
        b.iter_custom(|iters| {
            let queue = Arc::new(ArrayQueue::<u64>::new(CAPACITY));
            let mut input = [0u64; CHUNK];
            transfer(
                iters,
                (Arc::clone(&queue), queue),
                |q, next, end| {
                    let mut pushed = 0;
                    for &v in next_chunk(&mut input, next, end) {
                        if q.push(v).is_err() {
                            break;
                        }
                        pushed += 1;
                    }
                    pushed
                },
                |q, sum| {
                    let mut n = 0;
                    while n < CHUNK as u64 {
                        match q.pop() {
                            Some(v) => {
                                *sum = sum.wrapping_add(v);
                                n += 1;
                            }
                            None => break,
                        }
                    }
                    n
                },
            )
        });
    });

    group.finish();
}

fn config() -> Criterion {
    // Resolve the core list on the main thread before the first `pin` narrows its mask.
    black_box(cores());
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = single, chunk64
}
criterion_main!(benches);
