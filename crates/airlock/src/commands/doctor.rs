//! `airlock doctor`: what this host supports for the native backend, the container backends
//! and the remote ones (`k8s`, `fly`, `podman-box`), and what each missing piece costs.

use crate::cli::DoctorArgs;
use airlock_sandbox::host::Check;
use std::io::Write as _;

pub(crate) fn doctor(args: DoctorArgs) -> anyhow::Result<i32> {
    let checks = airlock_sandbox::host::checks();
    let container = airlock_container::doctor::checks(&airlock_container::Discovery::from_env());
    let config = config_check();
    let remote = remote_checks();
    let essential_missing = checks.iter().any(|c| c.essential && !c.ok) || config.is_err();
    if args.json {
        let out = serde_json::json!({
            "ready": !essential_missing,
            "root": nix::unistd::geteuid().is_root(),
            "checks": checks,
            "container": container,
            "remote": remote,
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
        writeln!(
            std::io::stdout(),
            "\nremote backends (--backend k8s|fly|podman-box; no network request is made):\n"
        )?;
        let width = remote.iter().map(|c| c.name.len()).max().unwrap_or(10);
        for c in &remote {
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

/// How long the podman-box check waits for `podman image exists`.
const PODMAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn remote_check(name: &str, found: Result<String, String>, cost: &str) -> Check {
    let ok = found.is_ok();
    Check {
        name: name.into(),
        ok,
        essential: false,
        detail: found.unwrap_or_else(|e| e),
        cost: if ok { String::new() } else { cost.into() },
    }
}

/// The remote backends' section: for k8s whether a kubeconfig context (or the in-cluster
/// service account) is found, for fly whether a token is found (never shown) and an app is
/// set, for podman-box whether the box image exists. Files, the environment and one local
/// `podman image exists` bounded by [`PODMAN_TIMEOUT`]: no request to a cluster or to Fly.
fn remote_checks() -> Vec<Check> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    // A configuration that does not load is reported above; the defaults are checked then.
    let (k8s_config, fly_app, image) = match crate::policy_load::load(Some(&cwd), &[], &[], None) {
        Ok(p) => (p.k8s, p.fly.app, p.container.image),
        Err(_) => Default::default(),
    };
    let k8s = airlock_k8s::K8sOptions::from_config(&k8s_config, None, None)
        .map_err(|e| e.to_string())
        .and_then(|o| {
            airlock_k8s::find_context(o.kubeconfig.as_ref(), o.context.as_deref())
                .map_err(|e| e.to_string())
        });
    let fly = airlock_remote::fly::token::discover(&|n| std::env::var(n).ok(), None)
        .map_err(|e| e.to_string())
        .map(|t| match &fly_app {
            Some(app) => format!("token from {}; app {app} ([fly] app)", t.source()),
            None => format!(
                "token from {}; no app set: pass --fly-app APP or set [fly] app",
                t.source()
            ),
        });
    let image =
        image.unwrap_or_else(|| airlock_container::boxengine::DEFAULT_BOX_IMAGE.to_string());
    vec![
        remote_check(
            "k8s cluster",
            k8s,
            "--backend k8s cannot start a pod until a context is found (dry runs still work)",
        ),
        remote_check(
            "fly token",
            fly,
            "--backend fly cannot create machines (dry runs still work)",
        ),
        remote_check(
            "podman-box image",
            podman_image(&image),
            "--backend podman-box cannot create its box",
        ),
    ]
}

/// Whether this user's Podman has `image`, asking `podman image exists` (killed after
/// [`PODMAN_TIMEOUT`]).
fn podman_image(image: &str) -> Result<String, String> {
    let Some(podman) = airlock_sandbox::host::which("podman") else {
        return Err("podman is not installed".into());
    };
    let mut child = std::process::Command::new(podman)
        .args(["image", "exists", image])
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run podman: {e}"))?;
    let deadline = std::time::Instant::now() + PODMAN_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(format!("{image} is in this user's Podman")),
            Ok(Some(_)) => {
                return Err(format!(
                    "{image} is not in this user's Podman (`podman images` lists what it has); \
                     pass --image or import the box image (docs/remote.md)"
                ))
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "podman did not answer within {}s (`podman info` shows why)",
                    PODMAN_TIMEOUT.as_secs()
                ));
            }
        }
    }
}
