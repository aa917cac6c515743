//! `airlock doctor`

use crate::cli::DoctorArgs;

pub(crate) fn doctor(_args: DoctorArgs) -> anyhow::Result<i32> {
    anyhow::bail!("doctor is not built yet")
}
