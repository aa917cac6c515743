//! The integration tests of `airlock-gate`, one test binary with a module per subject (one link
//! instead of six). Select a subject with a filter on its module path, e.g.
//! `cargo test -p airlock-gate --test all -- corpus::`. `owners_env.rs` stays a binary of its
//! own: it sets the process environment, which the other tests' git readers would see.

mod blind;
mod builtin;
mod corpus;
mod owners;
mod paths;
mod runfiles;
