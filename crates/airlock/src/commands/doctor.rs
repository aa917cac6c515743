//! `airlock doctor`: what this host supports for the native backend and the container backends,
//! and what each missing piece costs.

use crate::cli::DoctorArgs;
use std::io::Write as _;

pub(crate) fn doctor(args: DoctorArgs) -> anyhow::Result<i32> {
    let checks = airlock_sandbox::host::checks();
    let container = airlock_container::doctor::checks(&airlock_container::Discovery::from_env());
    let config = config_check();
    let essential_missing = checks.iter().any(|c| c.essential && !c.ok) || config.is_err();
    if args.json {
        let out = serde_json::json!({
            "ready": !essential_missing,
            "root": nix::unistd::geteuid().is_root(),
            "checks": checks,
            "container": container,
            "config": match &config {
                Ok(m) => serde_json::json!({ "ok": true, "detail": m }),
                Err(e) => serde_json::json!({ "ok": false, "detail": e }),
            },
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
        let mut out = std::io::stdout();
        writeln!(out)?;
        match &config {
            Ok(m) => writeln!(out, "ok    configuration  {m}\n")?,
            Err(e) => writeln!(out, "FAIL  configuration  {e}\n")?,
        }
        if essential_missing {
            writeln!(
                out,
                "not ready: `airlock run` cannot start here (see FAIL above)"
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

/// The policy `airlock run` would load in the current directory (the user's config, the
/// per-project file), compiled as `run` compiles it: a broken file stops every run, so it is
/// a failure here too.
fn config_check() -> Result<String, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    let policy =
        crate::policy_load::load(Some(&cwd), &[], &[], None).map_err(|e| format!("{e:#}"))?;
    airlock_policy::network::NetworkPolicy::compile(&policy.network)
        .map_err(|e| format!("invalid network policy: {e}"))?;
    Ok("the user's configuration loads (`airlock policy show` prints it)".into())
}
