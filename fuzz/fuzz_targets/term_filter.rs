//! The terminal output filter between the sandbox and the user's terminal: no panic, bounded
//! memory, and its output passes a second filter unchanged.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_sandbox::termfilter::check_invariants(data));
