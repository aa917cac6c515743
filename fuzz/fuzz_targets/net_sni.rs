//! The TLS ClientHello reader that finds the SNI of a CONNECT tunnel.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_net::fuzzing::client_hello(data));
