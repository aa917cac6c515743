//! `airlock run`

use crate::cli::RunArgs;

pub(crate) fn run(_args: RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("run is not built yet")
}

pub(crate) fn sandbox_init() -> i32 {
    125
}
