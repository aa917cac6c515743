//! The integration tests of the `airlock` binary, one test binary with a module per subject (one
//! link instead of ten). Select a subject with a filter on its module path, e.g.
//! `cargo test -p airlock --test all -- sandbox::`; scripts/test.sh re-runs `sandbox::`,
//! `errchain::`, `creds::`, `telemetry::`, `caches::`, `promote_ecosystems::`, `agents::`, `container::` and
//! `remote::` as an unprivileged user that way.

mod agents;
mod caches;
mod container;
mod creds;
mod errchain;
mod everyday;
mod hook;
mod promote_ecosystems;
mod remote;
mod sandbox;
mod telemetry;

/// The airlock binary under test: `AIRLOCK_BIN` when set (the unprivileged re-run uses a copy),
/// else the one cargo built.
fn bin() -> std::path::PathBuf {
    airlock_test_support::airlock_bin(env!("CARGO_BIN_EXE_airlock"))
}
