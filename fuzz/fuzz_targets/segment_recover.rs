//! Arbitrary bytes as the torn tail of a segment: see `rill_engine::fuzzing::segment_recover`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_engine::fuzzing;

fuzz_target!(|data: &[u8]| fuzzing::segment_recover(data));
