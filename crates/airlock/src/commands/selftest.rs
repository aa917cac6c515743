//! `airlock selftest`

use crate::cli::SelftestArgs;

pub(crate) fn selftest(_args: SelftestArgs) -> anyhow::Result<i32> {
    anyhow::bail!("selftest is not built yet")
}

pub(crate) fn probe(_name: &str, _args: &[String]) -> anyhow::Result<i32> {
    anyhow::bail!("probe is not built yet")
}
