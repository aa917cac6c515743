//! airlock test fixtures shared by integration tests
#![forbid(unsafe_code)]

pub mod otlp;
