//! The integration tests of `airlock-net`, one test binary with a module per subject, against
//! real servers on loopback (`common`). Select a subject with a filter on its module path, e.g.
//! `cargo test -p airlock-net --test all -- proxy::`.

mod approval;
mod common;
mod dns;
mod hostile;
mod proxy;
mod relay;
mod wildcard;
