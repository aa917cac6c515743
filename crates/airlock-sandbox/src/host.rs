//! What this host supports, for `airlock doctor` and for choosing fallbacks. Every check is a
//! real attempt (in a throwaway child process) rather than a guess from version numbers.

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Result of one host check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// Whether airlock cannot run without it.
    pub essential: bool,
    pub detail: String,
    /// What its absence costs (empty when ok).
    pub cost: String,
}

fn check(name: &str, essential: bool, r: Result<String, String>, cost: &str) -> Check {
    let ok = r.is_ok();
    Check {
        name: name.to_string(),
        ok,
        essential,
        detail: r.unwrap_or_else(|e| e),
        cost: if ok { String::new() } else { cost.to_string() },
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Runs `f` in a forked child and returns its verdict (exit 0 = Ok). Refused unless this
/// process is single-threaded (doctor is; checked, not assumed).
fn in_child(f: impl FnOnce() -> Result<(), Errno>) -> Result<(), String> {
    match crate::fork::thread_count() {
        Ok(1) => {}
        Ok(n) => {
            return Err(format!(
                "not probed: airlock has {n} threads here (an airlock bug)"
            ))
        }
        Err(e) => return Err(format!("not probed: cannot read /proc/self/task: {e}")),
    }
    // SAFETY: this process has one thread (checked just above), so the child may run ordinary
    // code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = match f() {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, e)) => Err(Errno::from_raw(e).to_string()),
            Ok(other) => Err(format!("probe ended with {other:?}")),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn enter_userns() -> Result<(), Errno> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER)?;
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).map_err(|_| Errno::EPERM)?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(|_| Errno::EPERM)?;
    Ok(())
}

/// The Landlock ABI version of the running kernel (0 = unavailable).
pub fn landlock_abi() -> i64 {
    // SAFETY: with LANDLOCK_CREATE_RULESET_VERSION the call reads no memory and returns the ABI.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0,
            1u32,
        )
    };
    v.max(0)
}

/// All host checks.
pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    out.push(check("kernel", false, Ok(release), ""));

    let max = read("/proc/sys/user/max_user_namespaces").unwrap_or_else(|| "?".into());
    let mut userns_detail = format!("max_user_namespaces={max}");
    if let Some(v) = read("/proc/sys/kernel/unprivileged_userns_clone") {
        userns_detail.push_str(&format!(", unprivileged_userns_clone={v}"));
    }
    if let Some(v) = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        userns_detail.push_str(&format!(", apparmor_restrict_unprivileged_userns={v}"));
    }
    out.push(check(
        "user namespaces",
        true,
        in_child(enter_userns)
            .map(|()| format!("can create one ({userns_detail})"))
            .map_err(|e| format!("cannot create one: {e} ({userns_detail})")),
        "the native backend cannot run; enable unprivileged user namespaces \
         (sysctl kernel.unprivileged_userns_clone=1, or an AppArmor profile) or use --backend docker",
    ));
    out.push(check(
        "namespaces (mount, pid, net, ipc, uts, cgroup)",
        true,
        in_child(|| {
            enter_userns()?;
            unshare(
                CloneFlags::CLONE_NEWNS
                    | CloneFlags::CLONE_NEWPID
                    | CloneFlags::CLONE_NEWNET
                    | CloneFlags::CLONE_NEWIPC
                    | CloneFlags::CLONE_NEWUTS
                    | CloneFlags::CLONE_NEWCGROUP,
            )
        })
        .map(|()| "all available".to_string()),
        "the native backend cannot run",
    ));
    // SAFETY: probing with an invalid descriptor and null pointers: the kernel rejects the
    // arguments (EBADF/EINVAL/EFAULT) without touching memory, or says ENOSYS.
    let msa = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<u8>(),
            0,
            std::ptr::null::<u8>(),
            0,
        )
    };
    let msa_errno = Errno::last();
    out.push(check(
        "mount_setattr",
        true,
        if msa == 0 || msa_errno != Errno::ENOSYS {
            Ok("available (recursive read-only binds)".to_string())
        } else {
            Err("missing (Linux 5.12 or newer needed)".to_string())
        },
        "read-only binds cannot be applied recursively; the native backend refuses to run",
    ));
    let abi = landlock_abi();
    out.push(check(
        "landlock",
        false,
        if abi >= 6 {
            Ok(format!(
                "ABI {abi}: filesystem rules, abstract-socket and signal scoping"
            ))
        } else if abi > 0 {
            Err(format!(
                "ABI {abi} only (6 gives socket and signal scoping)"
            ))
        } else {
            Err("not enabled (add landlock to the lsm= boot parameter)".to_string())
        },
        "one layer of defence in depth is thinner; namespaces and seccomp still apply",
    ));
    out.push(unix_socket_check(abi));
    let seccomp = read("/proc/sys/kernel/seccomp/actions_avail");
    out.push(check(
        "seccomp",
        true,
        seccomp
            .map(|a| format!("filters available ({a})"))
            .ok_or_else(|| "not available".to_string()),
        "the system-call filter cannot be applied; the native backend refuses to run",
    ));
    for (name, r) in crate::cgroup::support() {
        let cost = match name.as_str() {
            "memory" => {
                "--memory falls back to a per-process data limit (RLIMIT_DATA), not a total"
            }
            "pids" => "--pids falls back to RLIMIT_NPROC (not enforced for root)",
            "cpu" => "--cpus cannot be enforced (airlock run refuses it)",
            _ => "",
        };
        out.push(check(&format!("cgroup {name}"), false, r, cost));
    }
    out.push(check(
        "overlayfs in a user namespace",
        false,
        overlay_probe(),
        "--mode overlay is unavailable; use --mode worktree or bind",
    ));
    for (tool, cost) in [
        ("tmux", "--detach and attach are unavailable"),
        (
            "git",
            "--mode worktree and merge of commits are unavailable",
        ),
        ("podman", "--backend podman is unavailable"),
        ("docker", "--backend docker is unavailable"),
    ] {
        out.push(check(
            tool,
            false,
            which(tool)
                .map(|p| p.display().to_string())
                .ok_or_else(|| "not found in PATH".to_string()),
            cost,
        ));
    }
    out
}

/// How the sandbox is kept off host unix sockets (DESIGN.md guarantee 3) on this kernel: Landlock's
/// `LANDLOCK_ACCESS_FS_RESOLVE_UNIX` from ABI 9, else the connect gate, which needs seccomp user
/// notifications (`user_notif` in /proc/sys/kernel/seccomp/actions_avail), pidfd_getfd(2)
/// (Linux 5.6) and openat2(2) (Linux 5.6).
fn unix_socket_check(abi: i64) -> Check {
    let right = crate::security::LANDLOCK_RESOLVE_UNIX_ABI;
    let r = if abi >= right {
        Ok(format!(
            "Landlock ABI {abi} has the pathname unix socket right (LANDLOCK_ACCESS_FS_RESOLVE_UNIX): \
             only sockets created inside are reachable"
        ))
    } else {
        let notif = read("/proc/sys/kernel/seccomp/actions_avail")
            .is_some_and(|a| a.split_whitespace().any(|w| w == "user_notif"));
        // The gate takes the caller's socket with pidfd_getfd, a ptrace-attach check: Yama's
        // scope 3 forbids it to everyone (scopes 1 and 2 allow the supervisor, which is the
        // sandbox's ancestor and owns its user namespace).
        let yama = read("/proc/sys/kernel/yama/ptrace_scope");
        if yama.as_deref() == Some("3") {
            Err(format!(
                "Landlock ABI {abi} has no pathname unix socket right (ABI {right} has), and the \
                 connect gate cannot work under kernel.yama.ptrace_scope=3"
            ))
        } else if notif {
            Ok(format!(
                "Landlock ABI {abi} has no pathname unix socket right (ABI {right} has): the \
                 supervisor's connect gate (seccomp user notification) decides every connect; \
                 unix datagram sockets are refused inside"
            ))
        } else {
            Err(format!(
                "Landlock ABI {abi} has no pathname unix socket right (ABI {right} has) and \
                 seccomp has no user notifications"
            ))
        }
    };
    check(
        "unix sockets",
        true,
        r,
        "host unix sockets under bound directories cannot be kept out; the native backend \
         refuses to run (Linux 5.6 or newer needed)",
    )
}

/// The first `tool` on `PATH`.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn overlay_probe() -> Result<String, String> {
    let base = std::env::temp_dir().join(format!("airlock-doctor-{}", std::process::id()));
    let dirs = ["lower", "upper", "work", "merged"].map(|d| base.join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        dirs[0].display(),
        dirs[1].display(),
        dirs[2].display()
    );
    let merged = dirs[3].clone();
    let r = in_child(move || {
        enter_userns()?;
        unshare(CloneFlags::CLONE_NEWNS)?;
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
    });
    let _ = std::fs::remove_dir_all(&base);
    r.map(|()| "works".to_string())
}
