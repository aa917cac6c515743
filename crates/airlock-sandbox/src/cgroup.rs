//! Resource limits through cgroups, set up by the supervisor before the sandbox starts: the init
//! stage is placed in a fresh cgroup (one per controller on v1/hybrid hosts) that every process of
//! the sandbox inherits. Works as root, or unprivileged where the host delegates a cgroup.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::SandboxError;
use crate::Step;

/// Limits for one sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupLimits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

/// The cgroup(s) of one sandbox; removed (after killing stragglers) when dropped.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Controllers that are enforced, e.g. `memory (v1)`.
    pub enforced: Vec<String>,
    /// Controllers that were asked for but cannot be enforced here, with the reason.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Mount {
    path: PathBuf,
    v2: bool,
    controllers: Vec<String>,
}

fn mounts() -> Vec<Mount> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = pre.split(' ').nth(4).unwrap_or("");
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let superopts = post.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" => out.push(Mount {
                path: PathBuf::from(mountpoint),
                v2: true,
                controllers: Vec::new(),
            }),
            "cgroup" => out.push(Mount {
                path: PathBuf::from(mountpoint),
                v2: false,
                controllers: superopts.split(',').map(str::to_string).collect(),
            }),
            _ => {}
        }
    }
    out
}

/// (hierarchy id, controllers, path) from /proc/self/cgroup.
fn memberships() -> Vec<(String, Vec<String>, String)> {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let id = parts.next()?.to_string();
            let ctrls = parts
                .next()?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            Some((id, ctrls, parts.next()?.to_string()))
        })
        .collect()
}

fn join(mount: &Path, cg_path: &str) -> PathBuf {
    mount.join(cg_path.trim_start_matches('/'))
}

/// Where a new cgroup with `controller` can be created, and whether it is v2.
fn parent_for(
    controller: &str,
    mounts: &[Mount],
    member: &[(String, Vec<String>, String)],
) -> Option<(PathBuf, bool)> {
    // Prefer v2 where the controller is available to children of our cgroup.
    if let (Some(m), Some((_, _, p))) = (
        mounts.iter().find(|m| m.v2),
        member.iter().find(|(id, c, _)| id == "0" && c.is_empty()),
    ) {
        let dir = join(&m.path, p);
        let sub = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        if sub.split_whitespace().any(|c| c == controller) {
            return Some((dir, true));
        }
        // As root on a v2 host: use a dedicated subtree off the root, which is exempt from the
        // no-internal-processes rule.
        let root_ctrls = fs::read_to_string(m.path.join("cgroup.controllers")).unwrap_or_default();
        if nix::unistd::geteuid().is_root()
            && root_ctrls.split_whitespace().any(|c| c == controller)
        {
            let base = m.path.join("airlock");
            let _ = fs::create_dir(&base);
            let _ = fs::write(
                m.path.join("cgroup.subtree_control"),
                format!("+{controller}"),
            );
            let _ = fs::write(
                base.join("cgroup.subtree_control"),
                format!("+{controller}"),
            );
            let sub = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
            if sub.split_whitespace().any(|c| c == controller) {
                return Some((base, true));
            }
        }
    }
    let m = mounts
        .iter()
        .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
    let (_, _, p) = member
        .iter()
        .find(|(_, c, _)| c.iter().any(|c| c == controller))?;
    Some((join(&m.path, p), false))
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|e| {
        SandboxError::io(
            Step::Cgroup,
            format!("cannot write {value} to {}", path.display()),
            e,
        )
    })
}

/// Removes cgroups left by supervisors that were killed before they could clean up: empty
/// `airlock-*-PID` directories whose PID is gone.
fn sweep_stale(parent: &Path) {
    let Ok(dir) = fs::read_dir(parent) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("airlock-")
            .and_then(|rest| rest.rsplit('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let empty = fs::read_to_string(e.path().join("cgroup.procs"))
            .map(|p| p.trim().is_empty())
            .unwrap_or(false);
        if empty {
            let _ = fs::remove_dir(e.path());
        }
    }
}

impl Cgroup {
    /// Creates the cgroup(s) for a sandbox named `name` (the directory is `airlock-NAME-PID`, PID
    /// being this supervisor's) with `limits`. Limits that cannot be
    /// enforced on this host are listed in `missing` rather than failing.
    pub fn create(name: &str, limits: &CgroupLimits) -> Result<Cgroup, SandboxError> {
        let mounts = mounts();
        let member = memberships();
        let mut cg = Cgroup {
            dirs: Vec::new(),
            enforced: Vec::new(),
            missing: Vec::new(),
        };
        let wanted: Vec<(&str, String)> = [
            limits.memory.map(|m| ("memory", m.to_string())),
            limits.pids.map(|p| ("pids", p.to_string())),
            limits.cpus.map(|c| ("cpu", format!("{c}"))),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (ctrl, _) in &wanted {
            let Some((parent, v2)) = parent_for(ctrl, &mounts, &member) else {
                cg.missing.push(format!(
                    "{ctrl}: no {ctrl} controller is delegated to this user"
                ));
                continue;
            };
            sweep_stale(&parent);
            let dir = parent.join(format!("airlock-{name}-{}", std::process::id()));
            if !cg.dirs.contains(&dir) {
                match fs::create_dir(&dir) {
                    Ok(()) => cg.dirs.push(dir.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        cg.dirs.push(dir.clone())
                    }
                    Err(e) => {
                        cg.missing
                            .push(format!("{ctrl}: cannot create {}: {e}", dir.display()));
                        continue;
                    }
                }
            }
            let r = match (*ctrl, v2) {
                ("memory", true) => {
                    let m = limits.memory.unwrap_or(0).to_string();
                    write(&dir.join("memory.max"), &m).map(|_| {
                        let _ = fs::write(dir.join("memory.swap.max"), "0");
                    })
                }
                ("memory", false) => {
                    let m = limits.memory.unwrap_or(0).to_string();
                    write(&dir.join("memory.limit_in_bytes"), &m).map(|_| {
                        let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), &m);
                    })
                }
                ("pids", _) => write(&dir.join("pids.max"), &limits.pids.unwrap_or(0).to_string()),
                ("cpu", v2) => {
                    let period = 100_000u64;
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let quota = (limits.cpus.unwrap_or(1.0) * period as f64).max(1000.0) as u64;
                    if v2 {
                        write(&dir.join("cpu.max"), &format!("{quota} {period}"))
                    } else {
                        write(&dir.join("cpu.cfs_period_us"), &period.to_string())
                            .and_then(|_| write(&dir.join("cpu.cfs_quota_us"), &quota.to_string()))
                    }
                }
                _ => Ok(()),
            };
            match r {
                Ok(()) => cg
                    .enforced
                    .push(format!("{ctrl} ({})", if v2 { "v2" } else { "v1" })),
                Err(e) => cg.missing.push(format!("{ctrl}: {e}")),
            }
        }
        Ok(cg)
    }

    /// Moves process `pid` (and so its future children) into the cgroup(s).
    pub fn add(&self, pid: u32) -> Result<(), SandboxError> {
        place(&self.procs_files(), pid)
    }

    /// The `cgroup.procs` file of each of the cgroup's directories, for [`place`].
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Whether there is any cgroup to place a process in.
    pub fn has_dirs(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// Moves the process `pidfd` refers to into the cgroup(s), like [`Cgroup::add`]. The pid is
    /// read from the pidfd (`/proc/self/fdinfo`, pidfd_open(2)), and the process is checked to be
    /// still alive after the writes: its pid cannot have been reused by another process while the
    /// pidfd's own process lived. Fails when it has exited.
    pub fn add_pidfd(&self, pidfd: &OwnedFd) -> Result<(), SandboxError> {
        let pid = pidfd_pid(pidfd)?;
        self.add(pid)?;
        if pidfd_exited(pidfd)? {
            return Err(SandboxError::failed(
                Step::Cgroup,
                format!(
                "the sandbox's pid 1 (pid {pid}) exited while it was being placed in its cgroup"
            ),
            ));
        }
        Ok(())
    }

    /// Whether any limit is enforced.
    pub fn is_active(&self) -> bool {
        !self.enforced.is_empty()
    }
}

/// Moves process `pid` (and so its future children) into the cgroups whose `cgroup.procs`
/// files are `procs` ([`Cgroup::procs_files`]): [`Cgroup::add`], for a thread that does not
/// hold the [`Cgroup`].
pub(crate) fn place(procs: &[PathBuf], pid: u32) -> Result<(), SandboxError> {
    for f in procs {
        write(f, &pid.to_string())?;
    }
    Ok(())
}

/// The pid (in our pid namespace) of the process a pidfd refers to, from the `Pid:` line of its
/// `/proc/self/fdinfo` entry (Linux 5.3+; `-1` once the process has been reaped, `0` when it is
/// not visible from our namespace).
pub(crate) fn pidfd_pid(pidfd: &OwnedFd) -> Result<u32, SandboxError> {
    let path = format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd());
    let text = fs::read_to_string(&path)
        .map_err(|e| SandboxError::io(Step::Cgroup, format!("cannot read {path}"), e))?;
    let pid = text
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .ok_or_else(|| SandboxError::Protocol(format!("{path} has no Pid line: not a pidfd")))?;
    u32::try_from(pid).ok().filter(|p| *p > 0).ok_or_else(|| {
        SandboxError::failed(
            Step::Cgroup,
            format!(
                "the process of pidfd {} is gone or not visible here (Pid: {pid})",
                pidfd.as_raw_fd()
            ),
        )
    })
}

/// A pidfd for process `pid` of our pid namespace (pidfd_open(2), Linux 5.3+); close-on-exec.
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, SandboxError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; nothing is
    // borrowed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(SandboxError::sys(
            Step::Cgroup,
            format!("cannot open a pidfd for pid {pid}"),
            nix::errno::Errno::last(),
        ));
    }
    let fd = std::os::fd::RawFd::try_from(fd)
        .map_err(|_| SandboxError::Protocol(format!("pidfd_open returned {fd}")))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Whether the process of `pidfd` has exited (a pidfd polls readable then, pidfd_open(2)).
fn pidfd_exited(pidfd: &OwnedFd) -> Result<bool, SandboxError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(SandboxError::sys(
                    Step::Cgroup,
                    "cannot poll the sandbox's pidfd",
                    e,
                ))
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            for _ in 0..50 {
                let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// What this host offers for each controller, for `airlock doctor`.
pub fn support() -> Vec<(String, Result<String, String>)> {
    let mounts = mounts();
    let member = memberships();
    let version = match (mounts.iter().any(|m| m.v2), mounts.iter().any(|m| !m.v2)) {
        (true, true) => "hybrid (v1 controllers + v2)",
        (true, false) => "v2",
        (false, true) => "v1",
        (false, false) => "none mounted",
    };
    let mut out = vec![("version".to_string(), Ok(version.to_string()))];
    for ctrl in ["memory", "pids", "cpu"] {
        let r = match parent_for(ctrl, &mounts, &member) {
            Some((dir, v2)) => {
                let probe = dir.join(format!("airlock-probe-{}", std::process::id()));
                match fs::create_dir(&probe) {
                    Ok(()) => {
                        let _ = fs::remove_dir(&probe);
                        Ok(format!(
                            "{} ({})",
                            dir.display(),
                            if v2 { "v2" } else { "v1" }
                        ))
                    }
                    Err(e) => Err(format!("{} is not writable: {e}", dir.display())),
                }
            }
            None => Err("no controller delegated to this user".to_string()),
        };
        out.push((ctrl.to_string(), r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_names_its_process_until_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        let fd = pidfd_open(pid).expect("pidfd");
        assert_eq!(pidfd_pid(&fd).expect("pid"), child.id());
        assert!(!pidfd_exited(&fd).expect("poll"));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(pidfd_exited(&fd).expect("poll"));
        // Reaped: the pidfd names no process any more, so nothing can be placed through it.
        assert!(pidfd_pid(&fd).is_err());
    }

    #[test]
    fn a_descriptor_that_is_not_a_pidfd_is_refused() {
        let f = std::fs::File::open("/proc/self/status").expect("open");
        assert!(pidfd_pid(&OwnedFd::from(f)).is_err());
    }
}
