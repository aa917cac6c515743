//! The integration tests of `airlock-remote`, one test binary with a module per subject (the Fly
//! engine against a fake Machines API on loopback, `fake_fly`). Select a subject with a filter
//! on its module path, e.g. `cargo test -p airlock-remote --test all -- fly::`.

mod fake_fly;
mod fly;
