//! Seeded storage faults under a schedule taken from the input: see
//! `rill_engine::fuzzing::storage_faults` (the same simulator `tests/storage_sim.rs` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_engine::fuzzing;

fuzz_target!(|data: &[u8]| fuzzing::storage_faults(data));
