//! `airlock doctor`: what this host supports for the native backend and the container backends,
//! and what each missing piece costs.

use crate::cli::DoctorArgs;
use std::io::Write as _;

pub(crate) fn doctor(args: DoctorArgs) -> anyhow::Result<i32> {
    let checks = airlock_sandbox::host::checks();
    let container = airlock_container::doctor::checks(&airlock_container::Discovery::from_env());
    let essential_missing = checks.iter().any(|c| c.essential && !c.ok);
    if args.json {
        let out = serde_json::json!({
            "ready": !essential_missing,
            "root": nix::unistd::geteuid().is_root(),
            "checks": checks,
            "container": container,
        });
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        let who = if nix::unistd::geteuid().is_root() {
            "root"
        } else {
            "an unprivileged user"
        };
        writeln!(
            std::io::stdout(),
            "airlock doctor: native backend, running as {who}\n"
        )?;
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(10);
        for c in &checks {
            let mark = match (c.ok, c.essential) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "warn",
            };
            writeln!(std::io::stdout(), "{mark}  {:width$}  {}", c.name, c.detail)?;
            if !c.cost.is_empty() {
                writeln!(std::io::stdout(), "      {:width$}  -> {}", "", c.cost)?;
            }
        }
        writeln!(
            std::io::stdout(),
            "\ncontainer backends (--backend podman|docker, --runtime):\n"
        )?;
        let width = container.iter().map(|c| c.name.len()).max().unwrap_or(10);
        for c in &container {
            let mark = if c.ok { "ok  " } else { "warn" };
            writeln!(std::io::stdout(), "{mark}  {:width$}  {}", c.name, c.detail)?;
            if !c.cost.is_empty() {
                writeln!(std::io::stdout(), "      {:width$}  -> {}", "", c.cost)?;
            }
        }
        writeln!(std::io::stdout())?;
        if essential_missing {
            writeln!(
                std::io::stdout(),
                "not ready: the native backend cannot run on this host (see FAIL above)"
            )?;
        } else {
            writeln!(
                std::io::stdout(),
                "ready: `airlock run` works here; `airlock selftest` tries to break out"
            )?;
        }
    }
    Ok(if essential_missing { 1 } else { 0 })
}
