//! Escape probes for `airlock selftest`.
