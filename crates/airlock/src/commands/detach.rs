//! Background sessions: `airlock run --detach` starts a supervisor in the background whose
//! sandbox runs a tmux server (the host's tmux binary, its socket in the session directory);
//! `airlock attach` joins it from the host, `airlock logs` prints what the agent wrote.

use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_sandbox::host::which;
use airlock_sandbox::{Bind, SandboxSpec};
use airlock_session::SessionState;
use anyhow::{bail, Context, Result};

use crate::cli::{AttachArgs, LogsArgs, RunArgs};
use crate::session_dir;

/// Where the session's tmux directory appears inside the sandbox.
const TMUX_DIR: &str = "/run/airlock/tmux";
/// The tmux session's name.
const TMUX_SESSION: &str = "airlock";

/// The script that runs as the sandbox's command: a tmux session with the agent on top (80%)
/// and a shell in the workspace below, the agent's output logged, and the session ending (with
/// the agent's status) when the agent exits.
const TMUX_SCRIPT: &str = r#"
S=/run/airlock/tmux/sock
T="tmux -S $S -f /dev/null"
D=/run/airlock/tmux
rm -f $D/status $D/go
# The agent starts once its output is being logged.
$T new-session -d -s airlock -x 200 -y 50 \
  sh -c 'while [ ! -e /run/airlock/tmux/go ]; do sleep 0.02; done; "$@"; echo $? > /run/airlock/tmux/status; tmux -S /run/airlock/tmux/sock kill-server' airlock-agent "$@" \
  || { echo "airlock: cannot start tmux in the sandbox" >&2; exit 125; }
$T pipe-pane -t airlock:0.0 'cat >> /run/airlock/tmux/agent.log'
$T split-window -v -l 20% -t airlock:0 "${SHELL:-/bin/sh}"
$T select-pane -t airlock:0.0
: > $D/go
while $T has-session -t airlock 2>/dev/null; do sleep 0.5; done
exit "$(cat /run/airlock/tmux/status 2>/dev/null || echo 0)"
"#;

/// Turns the spec's command into the tmux layout and binds the session's tmux directory.
pub(crate) fn wrap_in_tmux(spec: &mut SandboxSpec, session_dir: &Path) -> Result<()> {
    let host_dir = session_dir.join("tmux");
    std::fs::create_dir_all(&host_dir)
        .with_context(|| format!("cannot create {}", host_dir.display()))?;
    spec.binds.push(Bind {
        source: host_dir,
        target: PathBuf::from(TMUX_DIR),
        writable: true,
        optional: false,
    });
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        TMUX_SCRIPT.to_string(),
        "airlock-tmux".to_string(),
    ];
    argv.append(&mut spec.argv);
    spec.argv = argv;
    if !spec.env.iter().any(|(k, _)| k == "TERM") {
        spec.env.push(("TERM".into(), "xterm-256color".into()));
    }
    Ok(())
}

/// `airlock run --detach`: start the supervisor in the background and say how to reach it.
pub(crate) fn start(args: &RunArgs) -> Result<i32> {
    if which("tmux").is_none() {
        bail!("--detach needs tmux, which is not installed (apt-get install tmux)");
    }
    let id = super::run::new_session_id();
    let dir = session_dir::create(&id)?;
    let log_path = dir.join("session.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    // The same arguments, minus --detach, plus the session id, before the command separator.
    let mut rest: Vec<String> = std::env::args()
        .skip_while(|a| a != "run")
        .skip(1)
        .collect();
    let split = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    rest = rest[..split]
        .iter()
        .filter(|a| a.as_str() != "--detach")
        .cloned()
        .chain(["--detached-child".to_string(), id.clone()])
        .chain(rest[split..].iter().cloned())
        .collect();
    let exe = std::fs::canonicalize("/proc/self/exe").context("cannot find the airlock binary")?;
    let mut child = Command::new(exe)
        .arg("run")
        .args(&rest)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the background supervisor")?;
    // Report a session that failed to start at once instead of leaving the user guessing.
    let sock = dir.join("tmux/sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "session {id} ended while starting ({status}):\n{}",
                log.trim_end()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let name = args.name.clone().unwrap_or_else(|| id.clone());
    let mut out = std::io::stdout().lock();
    writeln!(out, "session {id} started in the background")?;
    writeln!(out, "  attach:  airlock attach {name}")?;
    writeln!(out, "  logs:    airlock logs {name}")?;
    writeln!(out, "  stop:    airlock stop {name}")?;
    Ok(0)
}

/// `airlock attach ID`: wait for the session's tmux to be up, then hand the terminal to tmux.
pub(crate) fn attach(args: AttachArgs) -> Result<i32> {
    let tmux = which("tmux").context("attach needs tmux, which is not installed")?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut said = false;
    loop {
        let r = session_dir::find(Some(&args.id))?;
        let sock = r.dir.join("tmux/sock");
        if r.state != SessionState::Running {
            bail!(
                "session {} is not running ({:?}); `airlock logs {}` shows what it printed",
                r.id,
                r.state,
                r.id
            );
        }
        let ready = sock.exists()
            && Command::new(&tmux)
                .arg("-S")
                .arg(&sock)
                .args(["has-session", "-t", TMUX_SESSION])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if ready {
            if said {
                eprintln!();
            }
            // The session has its own tmux server: attaching from inside the user's own tmux
            // is fine (tmux refuses nesting only because $TMUX names a server).
            let err = Command::new(&tmux)
                .arg("-S")
                .arg(&sock)
                .args(["attach-session", "-t", TMUX_SESSION])
                .env_remove("TMUX")
                .exec();
            bail!("cannot run tmux: {err}");
        }
        if Instant::now() >= deadline {
            bail!(
                "session {} did not become ready within {}s; `airlock logs {}` shows why",
                r.id,
                args.wait,
                r.id
            );
        }
        if !said {
            eprint!("airlock: waiting for session {} to start", r.id);
            said = true;
        } else {
            eprint!(".");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `airlock logs ID [-f]`
pub(crate) fn logs(args: LogsArgs) -> Result<i32> {
    let r = session_dir::find(Some(&args.id))?;
    let files = [r.dir.join("session.log"), r.dir.join("tmux/agent.log")];
    if !files.iter().any(|f| f.exists()) {
        bail!(
            "session {} has no logs (only --detach sessions keep their output; its audit log is \
             `airlock audit {}`)",
            r.id,
            r.id
        );
    }
    let mut offsets = [0u64; 2];
    let mut out = std::io::stdout().lock();
    loop {
        for (f, off) in files.iter().zip(offsets.iter_mut()) {
            if let Ok(bytes) = std::fs::read(f) {
                let start = usize::try_from(*off).unwrap_or(usize::MAX).min(bytes.len());
                out.write_all(&bytes[start..])?;
                *off = bytes.len() as u64;
            }
        }
        out.flush()?;
        if !args.follow {
            return Ok(0);
        }
        let now = session_dir::find(Some(&r.id))?;
        if now.state != SessionState::Running {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
