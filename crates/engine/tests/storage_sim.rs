//! The storage simulator: thousands of seeded schedules of produce, consume, roll, retention,
//! reopen and crash against an engine whose storage injects `EIO` and `ENOSPC` on writes and
//! syncs, torn and short writes, slow completions, and crashes that tear unsynced sectors;
//! after each step, every acknowledged record is checked (see `rill_engine::fuzzing`).
//!
//! By default 1,500 schedules on the portable path and 800 on io_uring, the two tests in
//! parallel, about a minute and a half of CI in a debug build. `RILL_SIM_SCHEDULES` (per path)
//! and `RILL_SIM_FIRST_SEED` change the run.
//!
//! Portable schedules replay exactly. io_uring schedules replay the same steps and the same
//! per-partition fault streams, but the kernel's completion timing can still group writes
//! differently, so a replay may take a neighbouring path.
//! A failing schedule prints the one command that replays it:
//! `RILL_SIM_SEED=<seed> RILL_SIM_BACKEND=<portable|uring> cargo test -p rill-engine --test storage_sim -- replay --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::time::Instant;

use rill_engine::fuzzing::{FaultCounts, SimBackend, replay_command, run_seed};

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn backend_from_env() -> SimBackend {
    match std::env::var("RILL_SIM_BACKEND").as_deref() {
        Ok("uring") => SimBackend::Uring,
        _ => SimBackend::Portable,
    }
}

fn run_many(backend: SimBackend, default_schedules: u64) {
    let schedules = env_u64("RILL_SIM_SCHEDULES").unwrap_or(default_schedules);
    let first = env_u64("RILL_SIM_FIRST_SEED").unwrap_or(1);
    let started = Instant::now();
    let mut faults = FaultCounts::default();
    let (mut steps, mut durable, mut written, mut failed, mut fell_back) = (0, 0, 0, 0, 0);
    for seed in first..first + schedules {
        let outcome = match run_seed(seed, backend) {
            Ok(outcome) => outcome,
            Err(violation) => panic!(
                "schedule {seed:#x} on the {} path broke a property: {violation}\nreplay: {}",
                backend.name(),
                replay_command(seed, backend)
            ),
        };
        faults.add(&outcome.faults);
        steps += outcome.steps;
        durable += outcome.acked_durable;
        written += outcome.acked_written;
        failed += outcome.failed_tickets;
        fell_back += u64::from(outcome.fell_back);
    }
    println!(
        "storage_sim {}: {schedules} schedules, {steps} steps in {:.1}s; acked durable {durable}, written {written}, failed tickets {failed}; faults: {faults:?}",
        backend.name(),
        started.elapsed().as_secs_f64()
    );
    if backend == SimBackend::Uring && fell_back > 0 {
        println!(
            "note: io_uring unavailable in {fell_back} schedules; they ran on the portable path"
        );
    }
    assert!(
        faults.crashes >= schedules,
        "every schedule ends with a crash"
    );
    if schedules >= 100 {
        assert!(
            faults.sync_eio > 0 && faults.write_eio > 0 && faults.write_enospc > 0,
            "the schedules injected no faults of some kind: {faults:?}"
        );
    }
}

#[test]
fn seeded_schedules_on_the_portable_path() {
    run_many(SimBackend::Portable, 1_500);
}

#[test]
fn seeded_schedules_on_the_io_uring_path() {
    run_many(SimBackend::Uring, 800);
}

/// Replays one schedule: `RILL_SIM_SEED` (and `RILL_SIM_BACKEND`), or seed 1 on both paths.
#[test]
fn replay() {
    let runs = match env_u64("RILL_SIM_SEED") {
        Some(seed) => vec![(seed, backend_from_env())],
        None => vec![(1, SimBackend::Portable), (1, SimBackend::Uring)],
    };
    for (seed, backend) in runs {
        match run_seed(seed, backend) {
            Ok(outcome) => println!("seed {seed:#x} ({}): {outcome:?}", backend.name()),
            Err(violation) => panic!("seed {seed:#x} ({}): {violation}", backend.name()),
        }
    }
}
