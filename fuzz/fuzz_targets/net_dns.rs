//! The DNS filter's query handling and answer building.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_net::fuzzing::dns_packet(data));
