//! airlock command gate: bash parsing, command rules, Claude Code hook decisions.
//!
//! The path of one decision: [`hook::parse_input`] checks the hook JSON →
//! [`Engine::classify_tool`] → [`parse`] turns bash into simple commands → [`normalize`] turns
//! them into invocations (unwrapping `sudo`, `sh -c`, `find -exec`, …) → [`rules`] match each →
//! the most severe tier wins → [`review`] for the `review` tier → [`hook::output`] prints it.
#![forbid(unsafe_code)]

pub mod checks;
pub mod classify;
pub mod git;
pub mod glob;
pub mod hook;
pub mod inline;
pub mod loopback;
pub mod normalize;
pub mod parse;
pub mod paths;
pub mod review;
pub mod rules;
pub mod sealed;

use std::path::PathBuf;

pub use classify::{CommandLayer, CommandsConfig, Context, Engine, Settings, Step, Verdict};
pub use rules::{RuleError, RuleSpec, Tier};

/// Errors of the command gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("built-in command rules are invalid: {0}")]
    Builtin(String),
    #[error("invalid [commands] table in {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(
        "policy file {path} is inside the workspace and widens the command policy ({key}); \
         a file the agent can write may only add deny and ask rules: move it out of the workspace"
    )]
    Widening { path: PathBuf, key: String },
    #[error(transparent)]
    Hook(#[from] hook::HookError),
}
