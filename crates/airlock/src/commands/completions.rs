//! `airlock completions SHELL`: shell completions (clap_complete) generated from the clap
//! definitions in `cli.rs`, so they follow every change to the arguments (the man pages, from
//! the same definitions, are man.rs).

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

/// The command tree without the internal (hidden) subcommands, which completions must not offer.
fn public_command() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new("airlock")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(visible)
}

pub(crate) fn completions(args: CompletionsArgs) -> Result<i32> {
    let mut cmd = public_command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "airlock", &mut buf);
    std::io::stdout()
        .lock()
        .write_all(&buf)
        .context("cannot write the completions to stdout")?;
    Ok(0)
}
