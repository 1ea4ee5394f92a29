//! Structured records through the builder and back: see
//! `rill_engine::fuzzing::record_roundtrip`.
//!
//! The target takes raw bytes and builds its `RoundtripInput` inside the shared check (with
//! `arbitrary_take_rest`, as `fuzz_target!(|input: T|)` would), so a saved crash file replays
//! byte for byte in `crates/engine/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_engine::fuzzing;

fuzz_target!(|data: &[u8]| fuzzing::record_roundtrip(data));
