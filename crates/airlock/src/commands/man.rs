//! `airlock man`: the man pages (clap_mangen) generated from the clap definitions in `cli.rs`,
//! so they follow every change to the arguments. `scripts/test.sh` builds them on every run.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};

pub(crate) fn man(args: ManArgs) -> Result<i32> {
    let cmd = Cli::command();
    match &args.out {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            std::io::stdout()
                .lock()
                .write_all(&buf)
                .context("cannot write the man page to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let n = write_pages(&cmd, "airlock", dir)?;
            writeln!(
                std::io::stdout(),
                "wrote {n} man page(s) to {}",
                dir.display()
            )?;
        }
    }
    Ok(0)
}

/// Writes `NAME.1` for `cmd` and, recursively, `NAME-SUB.1` for each visible subcommand.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> Result<usize> {
    let cmd = cmd
        .clone()
        .display_name(name.to_string())
        .bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        n += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(n)
}
