//! The integration tests of `airlock-k8s`, one test binary with a module per subject, against a
//! fake Kubernetes API on loopback (`fake`). Select a subject with a filter on its module path,
//! e.g. `cargo test -p airlock-k8s --test all -- engine::`.

mod common;
mod engine;
mod fake;
mod manifests;
