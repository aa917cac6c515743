//! `airlock policy explain`: how the command gate decides a command.

use crate::cli::ExplainArgs;

pub(crate) fn explain(_args: ExplainArgs) -> anyhow::Result<i32> {
    anyhow::bail!("policy explain is not built yet")
}
