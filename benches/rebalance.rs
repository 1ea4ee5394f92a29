//! Rebalance latency of a consumer group: 1000 partitions, 10 members, and the time from an
//! 11th member joining (or leaving again) until every partition is owned by its owner under
//! the new target.
//!
//! All members are driven from the benchmark thread by `heartbeat`, which is exactly what a
//! member's own `poll` runs before reading, so the figure is the protocol's cost (assignor run,
//! target publication, every member's release/confirm/take and consumer re-assignment) without
//! thread wake-up noise. Auto-commit is off: with it on, each revocation adds one synchronous
//! commit, i.e. an fdatasync of the offsets log, which measures the disk instead.
//!
//! Besides criterion's report, a fixed number of samples of each operation is printed with
//! its median and p99. Run with `cargo bench --bench rebalance`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rill::engine::log::LogConfig;
use rill::group::{Group, GroupConfig, Member, MemberConfig};
use rill::{Engine, EngineConfig};

const PARTITIONS: u32 = 1000;
const MEMBERS: usize = 10;
const SAMPLES: usize = 500;

fn settle(members: &mut [Member]) {
    loop {
        let mut done = true;
        for member in members.iter_mut() {
            if member.heartbeat().is_err() {
                return;
            }
            done &= member.is_reconciled();
        }
        if done {
            return;
        }
    }
}

/// Times a join followed by settling, then (untimed or timed) the leave and its settling.
fn join_then_leave(group: &Group, members: &mut Vec<Member>) -> (Duration, Duration) {
    let started = Instant::now();
    let Ok(joined) = group.join(MemberConfig::new(["b"])) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    members.push(joined);
    settle(members);
    let join = started.elapsed();
    let started = Instant::now();
    if let Some(member) = members.pop() {
        let _ = black_box(member.leave());
    }
    settle(members);
    (join, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn rebalance(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(engine) = Engine::open(EngineConfig {
        shards: 1,
        pin_shards: false,
        log: LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        },
        ..EngineConfig::new(dir.path())
    }) else {
        return;
    };
    if engine.create_topic("b", PARTITIONS).is_err() {
        return;
    }
    let config = GroupConfig {
        auto_commit: false,
        offsets_topic_partitions: 1,
        ..GroupConfig::default()
    };
    let Ok(group) = Group::new(&engine, "bench", config) else {
        return;
    };
    let mut members: Vec<Member> = (0..MEMBERS)
        .filter_map(|_| group.join(MemberConfig::new(["b"])).ok())
        .collect();
    settle(&mut members);
    assert!(group.is_settled(), "initial group must settle");

    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let (join, leave) = join_then_leave(&group, &mut members);
        joins.push(join);
        leaves.push(leave);
    }
    assert!(
        group.is_settled(),
        "every partition owned under the final target"
    );
    joins.sort();
    leaves.sort();
    eprintln!(
        "rebalance ({PARTITIONS} partitions, {MEMBERS}+1 members, {SAMPLES} samples): \
         join median {:?} p99 {:?}; leave median {:?} p99 {:?}",
        percentile(&joins, 0.5),
        percentile(&joins, 0.99),
        percentile(&leaves, 0.5),
        percentile(&leaves, 0.99),
    );

    let mut bench = c.benchmark_group("rebalance_1000p_10m");
    bench.measurement_time(Duration::from_secs(5));
    bench.bench_function("join_until_owned", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| join_then_leave(&group, &mut members).0)
                .sum()
        })
    });
    bench.bench_function("leave_until_owned", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| join_then_leave(&group, &mut members).1)
                .sum()
        })
    });
    bench.finish();
    drop(members);
    drop(group);
    let _ = engine.shutdown();
}

criterion_group!(benches, rebalance);
criterion_main!(benches);
