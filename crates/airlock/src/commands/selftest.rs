//! `airlock selftest`: the escape battery. Every check plants something on the host, runs an
//! escape probe outside the sandbox as a control (it must get through there, or the check proves
//! nothing) and then inside `airlock run` (it must be stopped there). The checks themselves are
//! the table in `battery.rs`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use airlock_sandbox::guarantee::Guarantee;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::battery::{
    kill_marker, marker_alive, marker_alive_except, token, wait_for, Check, Fixtures, Verify,
};
use crate::cli::SelftestArgs;

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Fail,
    Skip,
    Error,
}

#[derive(Debug, Serialize)]
struct Report {
    name: String,
    guarantee: Guarantee,
    verdict: Verdict,
    control: String,
    inside: String,
}

#[derive(Debug)]
struct ProbeRun {
    got_through: bool,
    detail: String,
    error: bool,
}

fn probe_cmd(exe: &Path, probe: &str, args: &[String]) -> Command {
    let mut c = Command::new(exe);
    c.arg("__probe").arg(probe).args(args);
    c
}

fn interpret(out: std::process::Output) -> ProbeRun {
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    use std::os::unix::process::ExitStatusExt;
    match (out.status.code(), out.status.signal()) {
        (Some(0), _) => ProbeRun {
            got_through: true,
            detail: stdout,
            error: false,
        },
        (Some(1), _) => ProbeRun {
            got_through: false,
            detail: stdout,
            error: false,
        },
        // SIGKILL from the memory cgroup's OOM killer (directly, or reported as 128+9).
        (Some(137), _) | (None, Some(9)) => ProbeRun {
            got_through: false,
            detail: "killed (out of memory)".to_string(),
            error: false,
        },
        (code, sig) => ProbeRun {
            got_through: false,
            detail: format!(
                "probe failed (exit {code:?}, signal {sig:?}): {} {}",
                stdout, stderr
            ),
            error: true,
        },
    }
}

fn run_output(mut c: Command, env: &[(String, String)]) -> ProbeRun {
    c.stdin(Stdio::null()).envs(env.iter().cloned());
    match c.output() {
        Ok(out) => interpret(out),
        Err(e) => ProbeRun {
            got_through: false,
            detail: format!("cannot run probe: {e}"),
            error: true,
        },
    }
}

/// Which backend's sandbox the checks run in: the flags `airlock run` gets and the argv that
/// runs the probe (airlock itself) inside.
#[derive(Debug, Clone)]
struct Target {
    run_flags: Vec<String>,
    probe: Vec<String>,
    /// Why the sandbox's processes cannot be seen in this host's /proc, when they cannot
    /// (gVisor runs them as tasks of its own kernel): the checks that look for a process of the
    /// sandbox on the host would pass whatever happened, so they are skipped with this reason.
    hidden_processes: Option<&'static str>,
}

impl Target {
    fn of(args: &SelftestArgs) -> Result<Target> {
        let inside = std::path::Path::new(crate::view::SELF_DIR).join("airlock");
        if args.backend == crate::cli::Backend::Native {
            return Ok(Target {
                run_flags: Vec::new(),
                probe: vec![inside.display().to_string()],
                hidden_processes: None,
            });
        }
        let kind = airlock_session::BackendKind::from(args.backend);
        if kind.is_remote() {
            // The battery plants its targets on this host and checks them here; a box on
            // another machine (or its own container) can neither see nor reach them, so every
            // check would prove nothing.
            return Err(crate::exit::with_code(
                crate::exit::FAILURE,
                anyhow::anyhow!(
                    "selftest --backend {kind}: the escape battery attacks this host, which a \
                     remote box cannot reach; its sandbox is the native one, so run `airlock \
                     selftest` on the machine it runs on (docs/remote.md)"
                ),
            ));
        }
        let mut run_flags = vec!["--backend".to_string(), kind.as_str().to_string()];
        if let Some(r) = &args.runtime {
            run_flags.extend(["--runtime".to_string(), r.clone()]);
        }
        if let Some(i) = &args.image {
            run_flags.extend(["--image".to_string(), i.clone()]);
        }
        // The image's libc may differ or be absent: the probe runs with airlock's own loader.
        let probe = airlock_container::container::run_inside_prefix(&inside)?;
        let gvisor = args
            .runtime
            .as_deref()
            .and_then(airlock_container::Runtime::parse)
            == Some(airlock_container::Runtime::Runsc);
        Ok(Target {
            run_flags,
            probe,
            hidden_processes: gvisor.then_some(
                "gVisor runs the sandbox's processes in its own kernel, invisible in this \
                 host's /proc, so this check could not fail; the container backend's test \
                 container::killed_supervisor_leaves_nothing checks on runsc that the container \
                 and its engine service are gone",
            ),
        })
    }
}

/// The inner runs get their own `XDG_DATA_HOME` (a private session store); rootless Podman keeps
/// its images there too, so the private one points to the user's container store.
fn link_container_store(data: &Path) -> Result<()> {
    let real = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")));
    if let Some(real) = real {
        std::fs::create_dir_all(data)?;
        std::os::unix::fs::symlink(real.join("containers"), data.join("containers"))
            .with_context(|| format!("cannot link the container store into {}", data.display()))?;
    }
    Ok(())
}

pub(crate) fn selftest(args: SelftestArgs) -> Result<i32> {
    let exe = std::fs::canonicalize("/proc/self/exe").context("cannot find the airlock binary")?;
    let target = Target::of(&args)?;
    let base = tempfile::Builder::new()
        .prefix("airlock-selftest-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let ws = base.path().join("ws");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&ws)?;
    std::fs::create_dir_all(&outside)?;
    if !target.run_flags.is_empty() {
        link_container_store(&ws.with_file_name("data"))?;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let battery = crate::battery::table(base.path(), &ws, &outside, home.as_deref())?;
    let env_secret = &battery.env_secret;
    let mut fx = battery.fixtures;
    let mut checks = battery.checks;
    if let Some(only) = &args.only {
        checks.retain(|c| c.name.contains(only.as_str()) || c.probe.contains(only.as_str()));
        let kill = "airlock killed".contains(only.as_str()) || only == "kill";
        if checks.is_empty() && !kill {
            // Nothing run is not a pass.
            return Err(crate::exit::with_code(
                crate::exit::FAILURE,
                anyhow::anyhow!(
                    "selftest --only {only:?} matches no check; `airlock selftest` lists their names"
                ),
            ));
        }
    }

    let mut reports = Vec::new();
    for c in &checks {
        let r = run_check(&exe, &ws, c, env_secret, &target);
        if let Verify::NoProcess(m) = &c.verify {
            kill_marker(m);
        }
        if !args.json {
            print_report(&r)?;
        }
        reports.push(r);
    }
    // The supervisor dying must take the sandbox with it.
    if args
        .only
        .as_deref()
        .is_none_or(|o| "airlock killed".contains(o) || o == "kill")
    {
        let r = supervisor_kill_check(&exe, &ws, &mut fx, &target);
        if !args.json {
            print_report(&r)?;
        }
        reports.push(r);
    }
    let count = |v: fn(&Verdict) -> bool| reports.iter().filter(|r| v(&r.verdict)).count();
    let passed = count(|v| matches!(v, Verdict::Pass));
    let failed = count(|v| matches!(v, Verdict::Fail | Verdict::Error));
    let skipped = count(|v| matches!(v, Verdict::Skip));
    // With --only, the user asked for a subset: coverage is about the whole battery.
    let unproven = if args.only.is_none() {
        unproven(&reports)
    } else {
        Vec::new()
    };
    if args.json {
        let unproven: Vec<_> = unproven
            .iter()
            .map(|(g, why)| serde_json::json!({"guarantee": g, "reason": why}))
            .collect();
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "root": nix::unistd::geteuid().is_root(),
                "passed": passed, "failed": failed, "skipped": skipped,
                "not_covered": unproven,
                "checks": reports,
            }))?
        )?;
    } else {
        for (g, why) in &unproven {
            writeln!(std::io::stdout(), "not covered: {g}: {why}")?;
        }
        writeln!(
            std::io::stdout(),
            "\nselftest: {passed} passed, {failed} failed, {skipped} skipped"
        )?;
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// The guarantees this run did not prove, with why: no check attacked it, or every check that
/// did was a skip (its control could not get through here). Never counted as passed.
fn unproven(reports: &[Report]) -> Vec<(Guarantee, &'static str)> {
    Guarantee::ALL
        .into_iter()
        .filter_map(|g| {
            let mut of = reports.iter().filter(|r| r.guarantee == g).peekable();
            if of.peek().is_none() {
                Some((g, "no check on this backend"))
            } else if of.all(|r| matches!(r.verdict, Verdict::Skip)) {
                Some((
                    g,
                    "every check was skipped (this host blocks the control too)",
                ))
            } else {
                None
            }
        })
        .collect()
}

/// A check passes when the control got through and the inside attempt did not; a control that
/// did not get through proves nothing (skip).
fn verdict(inside: &ProbeRun, control: &ProbeRun) -> Verdict {
    if inside.error || control.error {
        Verdict::Error
    } else if inside.got_through {
        Verdict::Fail
    } else if !control.got_through {
        Verdict::Skip
    } else {
        Verdict::Pass
    }
}

/// One check's line (and, unless it passed, what was seen outside and inside).
fn print_report(r: &Report) -> std::io::Result<()> {
    let v = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Skip => "skip",
        Verdict::Error => "ERROR",
    };
    writeln!(std::io::stdout(), "{:60} {v}", r.name)?;
    if !matches!(r.verdict, Verdict::Pass) {
        writeln!(std::io::stdout(), "    control (outside): {}", r.control)?;
        writeln!(std::io::stdout(), "    inside:            {}", r.inside)?;
    }
    Ok(())
}

fn run_check(
    exe: &Path,
    ws: &Path,
    c: &Check,
    env: &[(String, String)],
    target: &Target,
) -> Report {
    let control = match c.control {
        Some(reason) => ProbeRun {
            got_through: true,
            detail: format!("not run: {reason}"),
            error: false,
        },
        None => {
            let mut cmd = probe_cmd(exe, c.probe, &c.args);
            if let Some(d) = &c.control_cwd {
                cmd.current_dir(d);
            }
            let r = run_output(cmd, env);
            // Undo what a successful control did on the host.
            if let Verify::HostFileAbsent(p) = &c.verify {
                let _ = std::fs::remove_file(p);
            }
            if let Verify::NoProcess(m) = &c.verify {
                kill_marker(m);
            }
            r
        }
    };
    let mut inner = Command::new(exe);
    let workspace = c.workspace.as_deref().unwrap_or(ws);
    inner
        .arg("run")
        .args(["--mode", c.mode])
        .env("XDG_DATA_HOME", ws.with_file_name("data"))
        .arg("--workspace")
        .arg(workspace)
        .current_dir(workspace)
        .args(&c.run_flags)
        .args(&target.run_flags)
        .arg("--")
        .args(&target.probe)
        .arg("__probe")
        .arg(c.probe)
        .args(&c.args)
        .envs(c.run_env.iter().cloned());
    let mut inside = run_output(inner, env);
    // A container backend refuses a limit its engine would ignore (rootless on cgroup v1): the
    // session never starts, so nothing can exceed the limit.
    if inside.error && inside.detail.contains("cannot be enforced by the") {
        inside.error = false;
        inside.got_through = false;
        inside.detail = "refused to start: the engine would not enforce the limit here".into();
    }
    // Likewise a runtime that cannot make an overlay view (gVisor and Podman's overlay mounts):
    // refused up front, the session never starts.
    if inside.error
        && inside
            .detail
            .contains(airlock_container::container::OVERLAY_REFUSED)
    {
        inside.error = false;
        inside.got_through = false;
        inside.detail = "refused to start: the runtime cannot make the overlay view".into();
    }
    match &c.verify {
        Verify::Probe => {}
        Verify::HostFileAbsent(p) => {
            if p.exists() {
                inside.got_through = true;
                inside.detail = format!("{} appeared on the host", p.display());
                let _ = std::fs::remove_file(p);
            } else {
                inside.got_through = false;
                inside.detail = format!("nothing reached the host ({})", inside.detail);
            }
        }
        Verify::NoProcess(_) if target.hidden_processes.is_some() => {
            return Report {
                verdict: Verdict::Skip,
                name: c.name.clone(),
                guarantee: c.guarantee,
                control: control.detail,
                inside: target.hidden_processes.unwrap_or_default().to_string(),
            };
        }
        Verify::NoProcess(m) => {
            // The namespace dies with its init; give the kernel a moment.
            let gone = wait_for(|| !marker_alive(m), Duration::from_secs(3));
            inside.got_through = !gone;
            inside.detail = if gone {
                format!("nothing survived the session ({})", inside.detail)
            } else {
                "a process of the sandbox outlived it".to_string()
            };
        }
        Verify::HostnameUnchanged(before) => {
            let now = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            inside.got_through = &now != before;
            inside.detail = format!("host hostname is {now} ({})", inside.detail);
        }
    }
    Report {
        verdict: verdict(&inside, &control),
        name: c.name.clone(),
        guarantee: c.guarantee,
        control: control.detail,
        inside: inside.detail,
    }
}

fn supervisor_kill_check(exe: &Path, ws: &Path, fx: &mut Fixtures, target: &Target) -> Report {
    let name = "outlive airlock killed with SIGKILL".to_string();
    if let Some(why) = target.hidden_processes {
        return Report {
            verdict: Verdict::Skip,
            name,
            guarantee: Guarantee::Lifetime,
            control: "not run".into(),
            inside: why.into(),
        };
    }
    let marker = format!("airlock-selftest-orphan-{}", token());
    fx.markers.push(marker.clone());
    // Control: a process started by a killed parent, with no sandbox, survives it.
    let control = {
        let r = run_output(probe_cmd(exe, "daemon", std::slice::from_ref(&marker)), &[]);
        let alive = wait_for(|| marker_alive(&marker), Duration::from_secs(2));
        kill_marker(&marker);
        ProbeRun {
            got_through: alive,
            detail: format!(
                "{} (survivor {})",
                r.detail,
                if alive { "found" } else { "not found" }
            ),
            error: r.error,
        }
    };
    let child = Command::new(exe)
        .arg("run")
        .args(["--mode", "bind"])
        .args(&target.run_flags)
        .env("XDG_DATA_HOME", ws.with_file_name("data"))
        .arg("--workspace")
        .arg(ws)
        .arg("--")
        .args(&target.probe)
        .arg("__probe")
        .arg("sleep")
        .arg(&marker)
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    let inside = match child {
        Err(e) => ProbeRun {
            got_through: false,
            detail: format!("cannot start airlock run: {e}"),
            error: true,
        },
        Ok(mut child) => {
            // The `airlock run` itself holds the marker in its arguments: only another process
            // (the probe inside) shows that the sandbox started.
            let run_pid = Some(child.id());
            if !wait_for(
                || marker_alive_except(&marker, run_pid),
                Duration::from_secs(10),
            ) {
                let _ = child.kill();
                let _ = child.wait();
                ProbeRun {
                    got_through: false,
                    detail: "the probe never started inside".into(),
                    error: true,
                }
            } else {
                let _ = child.kill();
                let _ = child.wait();
                let gone = wait_for(
                    || !marker_alive_except(&marker, run_pid),
                    Duration::from_secs(3),
                );
                kill_marker(&marker);
                ProbeRun {
                    got_through: !gone,
                    detail: if gone {
                        "the sandbox died with airlock".into()
                    } else {
                        "the sandbox outlived airlock".into()
                    },
                    error: false,
                }
            }
        }
    };
    Report {
        verdict: verdict(&inside, &control),
        name,
        guarantee: Guarantee::Lifetime,
        control: control.detail,
        inside: inside.detail,
    }
}

/// `airlock __probe NAME ARGS...`: prints what happened; exits 0 if the attempt got through,
/// 1 if it was stopped, 2 on a usage error.
pub(crate) fn probe(name: &str, args: &[String]) -> Result<i32> {
    match airlock_sandbox::probe::run(name, args) {
        Ok(o) => {
            writeln!(std::io::stdout(), "{}", o.detail)?;
            Ok(if o.got_through { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("airlock: {e}");
            Ok(2)
        }
    }
}
