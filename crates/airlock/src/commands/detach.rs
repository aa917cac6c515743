//! Background sessions: `airlock run --detach` starts a supervisor in the background whose
//! sandbox runs a tmux server (the host's tmux binary, run inside; its socket on the sandbox's
//! private /tmp, never in a directory the host reads); `airlock attach` asks the supervisor to
//! start `tmux attach` inside the sandbox and relays that pty's bytes to the user's terminal
//! (no host tmux ever talks to the sandbox's server: its protocol lets the server make the
//! client run commands); `airlock logs` prints what the agent wrote, opened without following
//! links the sandbox could have planted.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};
use airlock_sandbox::host::which;
use airlock_sandbox::termfilter::TermFilter;
use airlock_sandbox::{Bind, Exec, ExecHandle, SandboxSpec, TtySpec};
use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

use crate::cli::RunArgs;
use crate::control;
use crate::session_dir;

/// Where the session's output directory (the host's `SESSION/tmux`, which holds only
/// `agent.log`) appears inside the sandbox. The sandbox can write it: the host reads it only
/// through `read_from`.
const TMUX_DIR: &str = "/run/airlock/tmux";
/// The tmux server's socket, on the sandbox's private /tmp (a tmpfs the host never sees).
const TMUX_SOCK: &str = "/tmp/.airlock-tmux/sock";
/// The tmux session's name.
const TMUX_SESSION: &str = "airlock";

/// The script that runs as the sandbox's command: a tmux session with the agent on top (80%)
/// and a shell in the workspace below, the agent's output logged, and the session ending (with
/// the agent's status) when the agent exits.
const TMUX_SCRIPT: &str = r#"
D=/tmp/.airlock-tmux
S=$D/sock
T="tmux -S $S -f /dev/null"
mkdir -p -m 0700 $D || { echo "airlock: cannot create $D in the sandbox" >&2; exit 125; }
rm -f $D/status $D/go
# The agent starts once its output is being logged.
$T new-session -d -s airlock -x 200 -y 50 \
  sh -c 'while [ ! -e /tmp/.airlock-tmux/go ]; do sleep 0.02; done; if [ -p /run/airlock/tmux/stdin ]; then "$@" < /run/airlock/tmux/stdin; else "$@"; fi; echo $? > /tmp/.airlock-tmux/status; tmux -S /tmp/.airlock-tmux/sock kill-server' airlock-agent "$@" \
  || { echo "airlock: cannot start tmux in the sandbox" >&2; exit 125; }
$T pipe-pane -t airlock:0.0 'cat >> /run/airlock/tmux/agent.log'
$T split-window -v -l 20% -t airlock:0 "${SHELL:-/bin/sh}"
$T select-pane -t airlock:0.0
: > $D/go
while $T has-session -t airlock 2>/dev/null; do sleep 0.5; done
exit "$(cat $D/status 2>/dev/null || echo 0)"
"#;

/// Turns the spec's command into the tmux layout (its standard input the FIFO `stdin` in the
/// session's output directory when there is one: a remote session's piped input, which
/// `airlock serve` makes, docs/remote.md) and binds the session's output directory
/// (created by [`create_output_dir`]; nothing is created here, so `--dry-run` touches nothing).
pub(crate) fn wrap_in_tmux(spec: &mut SandboxSpec, session_dir: &Path) {
    spec.binds.push(Bind {
        source: session_dir.join("tmux"),
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
}

/// Creates the session's output directory that [`wrap_in_tmux`] binds.
pub(crate) fn create_output_dir(session_dir: &Path) -> Result<()> {
    let dir = session_dir.join("tmux");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// The supervisor's side of `airlock attach`: programs started inside the sandbox on request.
#[derive(Debug, Clone)]
pub(crate) struct Console {
    exec: ExecHandle,
    allow_clipboard: bool,
}

/// How long the supervisor waits for the sandbox to start a program.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

impl Console {
    pub(crate) fn new(exec: ExecHandle, allow_clipboard: bool) -> Console {
        Console {
            exec,
            allow_clipboard,
        }
    }

    /// Whether the tmux session is up: `tmux has-session` run inside the sandbox.
    pub(crate) fn ready(&self) -> bool {
        let argv = tmux_argv(&["has-session", "-t", TMUX_SESSION]);
        match self.exec.start(argv, Vec::new(), None, EXEC_TIMEOUT) {
            Ok(e) => e.wait(EXEC_TIMEOUT) == Some(0),
            Err(_) => false,
        }
    }

    /// Starts `tmux attach` inside the sandbox on a new pty of the asked size.
    pub(crate) fn attach(&self, req: &AttachRequest) -> Result<Exec> {
        let mut args = vec!["attach-session", "-t", TMUX_SESSION];
        if req.utf8 {
            args.insert(0, "-u");
        }
        let env = vec![("TERM".to_string(), req.term.clone())];
        let tty = TtySpec {
            rows: req.rows,
            cols: req.cols,
        };
        Ok(self
            .exec
            .start(tmux_argv(&args), env, Some(tty), EXEC_TIMEOUT)?)
    }

    /// Whether the session's policy lets OSC 52 clipboard writes through.
    pub(crate) fn allow_clipboard(&self) -> bool {
        self.allow_clipboard
    }
}

fn tmux_argv(args: &[&str]) -> Vec<String> {
    ["tmux", "-S", TMUX_SOCK]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect()
}

/// `attach ROWS COLS TERM UTF8` as sent on the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttachRequest {
    pub(crate) rows: u16,
    pub(crate) cols: u16,
    /// The attaching terminal's `TERM` (letters, digits, `.`, `_`, `+`, `-`; at most 64).
    pub(crate) term: String,
    /// The attaching terminal decodes UTF-8 (`tmux attach -u`).
    pub(crate) utf8: bool,
}

impl AttachRequest {
    pub(crate) fn parse(words: &[&str]) -> Result<AttachRequest> {
        let [rows, cols, term, utf8] = words else {
            bail!("expected `attach ROWS COLS TERM UTF8`");
        };
        let size = |v: &str| {
            v.parse::<u16>()
                .ok()
                .filter(|n| (1..=4096).contains(n))
                .ok_or_else(|| anyhow!("bad terminal size '{v}'"))
        };
        let term_ok = !term.is_empty()
            && term.len() <= 64
            && term
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if !term_ok {
            bail!("bad TERM '{term}'");
        }
        Ok(AttachRequest {
            rows: size(rows)?,
            cols: size(cols)?,
            term: term.to_string(),
            utf8: *utf8 == "1",
        })
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "attach {} {} {} {}\n",
            self.rows,
            self.cols,
            self.term,
            u8::from(self.utf8)
        )
    }
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
    // Report a session that failed to start at once instead of leaving the user guessing. The
    // supervisor says when the tmux server inside is up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_ready(&dir) && Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "session {id} ended while starting ({status}):\n{}",
                log.trim_end()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let name = args.name.clone().unwrap_or_else(|| id.clone());
    let mut out = std::io::stdout().lock();
    writeln!(out, "session {id} started in the background")?;
    writeln!(out, "  attach:  airlock attach {name}")?;
    writeln!(out, "  logs:    airlock logs {name}")?;
    writeln!(out, "  stop:    airlock stop {name}")?;
    Ok(0)
}

/// Whether the session's supervisor reports its tmux session up.
fn is_ready(dir: &Path) -> bool {
    control::request(dir, "ready").is_ok_and(|a| a == "ok\n")
}

/// Records what the terminal filter dropped during one relay in the session's audit log.
pub(crate) fn audit_terminal(log: &Path, session: &str, relay: &str, filter: &TermFilter) {
    if filter.dropped() == 0 {
        return;
    }
    let dropped = filter
        .counts()
        .iter()
        .map(|(k, n)| (k.name().to_string(), *n))
        .collect();
    let event = AuditEvent::now(
        Decision::Deny,
        Detail::Terminal {
            relay: relay.to_string(),
            dropped,
        },
    )
    .session(session.to_string())
    .rule("builtin:terminal-filter")
    .reason(format!(
        "{} control sequence(s) kept from your terminal (clipboard writes, answer-back \
         queries, window operations); [terminal] allow_clipboard lets clipboard writes through",
        filter.dropped()
    ));
    match AuditLog::open(log) {
        Ok(a) => {
            if let Err(e) = a.append(&event) {
                eprintln!("airlock: warning: cannot write {}: {e}", log.display());
            }
        }
        Err(e) => eprintln!("airlock: warning: {e}"),
    }
}

/// Opens `rel` (a path of plain names) under the host-owned directory `dir` without following
/// any symbolic link on the way (`O_NOFOLLOW` on every component, opened relative to directory
/// descriptors), without blocking (`O_NONBLOCK`: a FIFO the sandbox planted cannot hang us), and
/// only if it is a regular file. `Ok(None)` when it does not exist; an error names the path.
pub(crate) fn open_sandbox_written(dir: &Path, rel: &[&str]) -> Result<Option<std::fs::File>> {
    let shown = rel.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
    let refuse = |why: String| {
        anyhow!(
            "refusing to read {}: {why} (the sandbox can write there; airlock never follows \
             what it planted)",
            shown.display()
        )
    };
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = open(dir, dir_flags, Mode::empty())
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let Some((last, parents)) = rel.split_last() else {
        bail!("no file named under {}", dir.display());
    };
    let nofollow = |fd: &OwnedFd, name: &str, flags: OFlag| match openat(
        fd,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(f) => Ok(Some(f)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(nix::errno::Errno::ELOOP) => Err(refuse("it is a symbolic link".into())),
        Err(nix::errno::Errno::ENOTDIR) => Err(refuse("a component is not a directory".into())),
        Err(e) => Err(refuse(e.to_string())),
    };
    for p in parents {
        match nofollow(&fd, p, OFlag::O_RDONLY | OFlag::O_DIRECTORY)? {
            Some(f) => fd = f,
            None => return Ok(None),
        }
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let Some(file) = nofollow(&fd, last, flags)? else {
        return Ok(None);
    };
    let st = fstat(&file).with_context(|| format!("cannot stat {}", shown.display()))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(refuse("it is not a regular file".into()));
    }
    Ok(Some(std::fs::File::from(file)))
}
