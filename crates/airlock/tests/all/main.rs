//! The integration tests of the `airlock` binary, one test binary with a module per subject (one
//! link instead of nine). Select a subject with a filter on its module path, e.g.
//! `cargo test -p airlock --test all -- sandbox::`; scripts/test.sh re-runs `sandbox::`,
//! `creds::`, `telemetry::`, `caches::`, `agents::`, `container::` and `remote::` as an
//! unprivileged user that way.

mod agents;
mod caches;
mod container;
mod creds;
mod everyday;
mod hook;
mod remote;
mod sandbox;
mod telemetry;

/// Held by every test that uses Podman (`container::`, `remote::`): their "nothing left behind"
/// checks look at every container and Podman service of this user, so no two may overlap.
static PODMAN_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
