//! airlock command gate: bash parsing, command rules, Claude Code hook decisions
#![forbid(unsafe_code)]
