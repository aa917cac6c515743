//! The push guard's parsers: pkt-line update commands and the packfile after them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_net::fuzzing::git_push(data));
