//! An idle engine uses no CPU: after work stops, shards spin for a short window and then park.
//!
//! This file is its own test binary (its own process), so the shard threads measured here are
//! the only ones. CPU time comes from the kernel's per-thread accounting in /proc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::fs;
use std::time::Duration;

use rill_engine::{ConsumerConfig, ProducerRecord};
use rill_engine::{Engine, EngineConfig};

/// CPU ticks (user + system) of every thread of this process whose name starts with `prefix`.
fn cpu_ticks_of_threads(prefix: &str) -> Option<u64> {
    let mut total = 0;
    let mut found = false;
    for task in fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        total += fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        found = true;
    }
    found.then_some(total)
}

mod support;

#[test]
fn an_idle_engine_uses_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        io: support::io_from_env(),
        shards: 2,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::open(config).unwrap();
    engine.create_topic("idle", 4).unwrap();
    let mut producer = engine.producer("idle").unwrap();
    for i in 0..10_000u32 {
        producer
            .send(ProducerRecord::new(None, &i.to_be_bytes()))
            .unwrap();
    }
    producer.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let Some(before) = cpu_ticks_of_threads("rill-shard") else {
        eprintln!("skipped: per-thread CPU accounting (/proc/self/task) is not available here");
        return;
    };
    let window = Duration::from_secs(5);
    std::thread::sleep(window);
    let after = cpu_ticks_of_threads("rill-shard").unwrap();
    let tick_ms = 1000 / clock_ticks_per_second();
    let used_ms = (after - before) * tick_ms;
    println!(
        "idle engine: 2 shard threads used {used_ms} ms of CPU in {} s",
        window.as_secs()
    );
    assert!(
        used_ms <= 20,
        "shards used {used_ms} ms of CPU while idle for {window:?}"
    );
    engine.shutdown().unwrap();
}

fn clock_ticks_per_second() -> u64 {
    // /proc reports times in USER_HZ, which Linux fixes at 100 for user space.
    100
}

/// A consumer polling an idle topic spins only briefly before it parks, and its spin window
/// shrinks to nothing as its sleeps keep lasting: a loop of short polls costs no CPU.
#[test]
fn an_idle_consumer_uses_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        io: support::io_from_env(),
        shards: 1,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::open(config).unwrap();
    engine.create_topic("quiet", 1).unwrap();
    // A window half as long as a poll: a consumer that kept spinning through it would use
    // half of the time measured.
    let spin = Duration::from_millis(1);
    let config = ConsumerConfig {
        spin,
        ..ConsumerConfig::default()
    };
    let mut consumer = engine.consumer_with("quiet", config).unwrap();
    consumer.assign_all().unwrap();
    let poller = std::thread::Builder::new()
        .name("idle-consumer".into())
        .spawn(move || {
            let window = Duration::from_secs(3);
            let started = std::time::Instant::now();
            while started.elapsed() < window {
                assert!(consumer.poll(Duration::from_millis(2)).unwrap().is_empty());
            }
        })
        .unwrap();
    // Let the window settle, then measure the rest of the loop.
    std::thread::sleep(Duration::from_millis(500));
    let Some(before) = cpu_ticks_of_threads("idle-consumer") else {
        eprintln!("skipped: per-thread CPU accounting (/proc/self/task) is not available here");
        return;
    };
    let window = Duration::from_secs(2);
    std::thread::sleep(window);
    let after = cpu_ticks_of_threads("idle-consumer").unwrap();
    poller.join().unwrap();
    let used_ms = (after - before) * (1000 / clock_ticks_per_second());
    println!("idle consumer: used {used_ms} ms of CPU in {window:?} of 2 ms polls");
    // Spinning through each poll's window would use half the time; parking, a wakeup per poll.
    assert!(
        used_ms <= 200,
        "an idle consumer used {used_ms} ms of CPU in {window:?}"
    );
}
