//! `airlock doctor`: what this host supports for the native backend and the container backends,
//! and what each missing piece costs.

use crate::cli::DoctorArgs;

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
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let who = if nix::unistd::geteuid().is_root() {
            "root"
        } else {
            "an unprivileged user"
        };
        println!("airlock doctor: native backend, running as {who}\n");
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(10);
        for c in &checks {
            let mark = match (c.ok, c.essential) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "warn",
            };
            println!("{mark}  {:width$}  {}", c.name, c.detail);
            if !c.cost.is_empty() {
                println!("      {:width$}  -> {}", "", c.cost);
            }
        }
        println!("\ncontainer backends (--backend podman|docker, --runtime):\n");
        let width = container.iter().map(|c| c.name.len()).max().unwrap_or(10);
        for c in &container {
            let mark = if c.ok { "ok  " } else { "warn" };
            println!("{mark}  {:width$}  {}", c.name, c.detail);
            if !c.cost.is_empty() {
                println!("      {:width$}  -> {}", "", c.cost);
            }
        }
        println!();
        if essential_missing {
            println!("not ready: the native backend cannot run on this host (see FAIL above)");
        } else {
            println!("ready: `airlock run` works here; `airlock selftest` tries to break out");
        }
    }
    Ok(if essential_missing { 1 } else { 0 })
}
