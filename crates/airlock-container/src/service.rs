//! A private `podman system service` for one session, when Podman is installed but no API
//! socket is running (or a runtime other than the service's is asked for: Podman 4.3 ignores a
//! per-container runtime sent over the compat API, so each runtime gets its own service).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::ContainerError;

/// Name prefix of a service's private directory.
const PREFIX: &str = "airlock-podman-";
/// The service's pid, in its directory.
const PID_FILE: &str = "service.pid";

/// Removes the directories of services whose airlock was killed (the service died with it, its
/// directory stayed): those of this user whose recorded service process is gone. A directory
/// without a pid file yet belongs to a service being started and is left alone unless it is a
/// minute old.
fn sweep(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        let stale = match std::fs::read_to_string(dir.join(PID_FILE)) {
            Ok(pid) => {
                let pid = pid.trim();
                // Gone, or the pid now belongs to something else than this service.
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|cmd| !String::from_utf8_lossy(&cmd).contains(&*dir.to_string_lossy()))
                    .unwrap_or(true)
            }
            Err(_) => meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(60)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// How long a new service may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping service gets after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `podman system service --time 0 unix://DIR/podman.sock`, stopped (and its private
/// directory removed) when dropped. It gets SIGTERM if the thread that started it dies, so an
/// airlock that is killed leaves no service behind either.
#[derive(Debug)]
pub struct PodmanService {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl PodmanService {
    /// Starts the service on a socket in a new private directory under `parent` (the user's
    /// runtime directory, or the system temporary directory), with `runtime` as its OCI runtime
    /// (name or path; `None`: Podman's default) and `runtime_flags` passed to that runtime. Does
    /// not wait for it to answer: see [`PodmanService::wait_ready`].
    pub fn spawn(
        podman: &Path,
        parent: &Path,
        runtime: Option<&str>,
        runtime_flags: &[String],
    ) -> Result<PodmanService, ContainerError> {
        sweep(parent);
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(|e| {
                ContainerError::io(
                    format!(
                        "cannot create a directory for the podman service in {}",
                        parent.display()
                    ),
                    e,
                )
            })?;
        let socket = dir.path().join("podman.sock");
        let log = File::create(dir.path().join("service.log"))
            .map_err(|e| ContainerError::io("cannot create the podman service log", e))?;
        let mut cmd = Command::new(podman);
        if let Some(rt) = runtime {
            cmd.arg("--runtime").arg(rt);
        }
        for f in runtime_flags {
            cmd.arg("--runtime-flag").arg(f);
        }
        cmd.args(["system", "service", "--time", "0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            // Not in the terminal's process group: Ctrl-C is airlock's to handle, and airlock
            // stops the service itself once the container is gone.
            .process_group(0);
        airlock_sandbox::die_with_parent(&mut cmd);
        airlock_sandbox::unblock_signals_in_child(&mut cmd);
        let child = cmd.spawn().map_err(|e| ContainerError::Service {
            socket: socket.clone(),
            detail: format!(
                "cannot run {}: {e}; install Podman (Debian: apt-get install podman)",
                podman.display()
            ),
        })?;
        // For the sweep of a later session, should this airlock be killed before it removes
        // the directory (the service itself dies with it).
        let _ = std::fs::write(dir.path().join(PID_FILE), child.id().to_string());
        Ok(PodmanService {
            child: Some(child),
            dir,
            socket,
        })
    }

    /// The socket the service listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Waits until `ready` says the service answers; fails with the service's own error output
    /// when it exits first or does not answer within 20 s.
    pub fn wait_ready(
        &mut self,
        mut ready: impl FnMut(&Path) -> bool,
    ) -> Result<(), ContainerError> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(self.failure(format!("it exited ({status})")));
                }
            }
            if self.socket.exists() && ready(&self.socket) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.failure(format!(
            "it did not answer within {}s",
            START_TIMEOUT.as_secs()
        )))
    }

    fn failure(&self, what: String) -> ContainerError {
        let log = std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        ContainerError::Service {
            socket: self.socket.clone(),
            detail: if tail.is_empty() {
                what
            } else {
                format!("{what}; it said: {}", tail.join(" | "))
            },
        }
    }

    /// Host pid of the service process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the service: SIGTERM, then SIGKILL after 5 s. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        self.stop();
    }
}
