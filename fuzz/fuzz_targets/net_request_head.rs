//! The proxy's request handling (hyper's head parser, our target parsing, policy) on one
//! in-memory client connection of arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_net::fuzzing::request_head(data));
