//! Arbitrary bytes as a client connection's stream into the Kafka front end: frame, header,
//! body, dispatch and response against an engine in a temporary directory. No input may panic;
//! memory stays bounded by the frame limit (the allocator below turns a forged array count's
//! up-front reservation into address space, as in `rill serve`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: rill_server::ReserveLazily = rill_server::ReserveLazily;

fuzz_target!(|data: &[u8]| rill_server::fuzzing::wire_request(data));
