//! Arbitrary bytes as batches laid end to end: see `rill_engine::fuzzing::batch_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_engine::fuzzing::{self, TrackingAlloc};

// The check bounds the largest single allocation decoding makes; this allocator measures it.
#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

fuzz_target!(|data: &[u8]| fuzzing::batch_decode(data));
