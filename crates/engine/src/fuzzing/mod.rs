//! Property checks shared by the fuzz targets in `fuzz/` and by `tests/fuzz_regressions.rs`,
//! which replays every saved fuzz finding under a plain `cargo test`.
//!
//! Each check takes the raw bytes libFuzzer hands a target and panics when a property fails:
//! a panic is how libFuzzer records a crash and how `cargo test` reports a failure, so the same
//! function serves both without a second copy of the properties drifting from the first.
//!
//! Compiled only with the `fuzzing` feature; not part of the engine's API.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // property checks fail loudly by design

mod alloc;
mod decode;
mod recover;
mod roundtrip;
mod simulate;
mod storage;

pub use alloc::{TrackingAlloc, largest_allocation_during, tracking_installed};
pub use decode::{DECODE_LIMITS, batch_decode};
pub use recover::segment_recover;
pub use roundtrip::{RoundtripInput, record_roundtrip};
pub use simulate::{
    SimBackend, SimOutcome, rates_for, replay_command, run_seed, run_steps, storage_faults,
};
pub use storage::{FaultCounts, FaultRates, SECTOR, SimRng, SimStorage};

/// The fuzz targets, by the name of their directory under `fuzz/fuzz_targets`,
/// `fuzz/corpus`, `fuzz/artifacts` and `fuzz/regressions`.
pub const TARGETS: [&str; 4] = [
    "batch_decode",
    "segment_recover",
    "record_roundtrip",
    "storage_faults",
];

/// Runs the property check of `target` on `data`; `false` if there is no such target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "batch_decode" => batch_decode(data),
        "segment_recover" => segment_recover(data),
        "record_roundtrip" => record_roundtrip(data),
        "storage_faults" => storage_faults(data),
        _ => return false,
    }
    true
}
