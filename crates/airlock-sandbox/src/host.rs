//! What this host supports, for `airlock doctor` and for choosing fallbacks.
