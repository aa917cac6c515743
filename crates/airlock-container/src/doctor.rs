//! `airlock doctor`'s section on the container backends: which engines and runtimes exist here,
//! whether limits would be enforced, and the host conditions known to break Podman (each with
//! what to change), and whether airlock's default image is built. Nothing is started: sockets
//! are only looked at, and the image is looked up with the engine's CLI (`image inspect`).

use std::path::Path;

use airlock_sandbox::host::Check;

use crate::engine::{debian_package, Discovery, EngineKind, Runtime};

fn check(name: &str, ok: bool, detail: String, cost: String) -> Check {
    Check {
        name: name.into(),
        ok,
        essential: false,
        detail,
        cost: if ok { String::new() } else { cost },
    }
}

fn engine_check(d: &Discovery, kind: EngineKind) -> Check {
    let found: Vec<String> = d
        .sockets(kind)
        .into_iter()
        .filter(|(p, _)| p.exists())
        .map(|(p, src)| format!("{} ({src})", p.display()))
        .collect();
    let name = format!("{} engine", kind.name());
    if kind == EngineKind::Docker {
        if let Some(c) = docker_socket_check(d, &name) {
            return c;
        }
    }
    if !found.is_empty() {
        return check(
            &name,
            true,
            format!("socket {}", found.join(", ")),
            String::new(),
        );
    }
    match (kind, d.which(kind.name())) {
        (EngineKind::Podman, Some(p)) => check(
            &name,
            true,
            format!(
                "no API socket; {} is started as a private `system service` for each session",
                p.display()
            ),
            String::new(),
        ),
        (EngineKind::Docker, Some(p)) => check(
            &name,
            false,
            format!("{} is a client only: no daemon socket", p.display()),
            "--backend docker needs a daemon: start dockerd or set DOCKER_HOST=unix://PATH; \
             --backend podman works without one"
                .into(),
        ),
        (_, None) => check(
            &name,
            false,
            "not installed".into(),
            format!(
                "--backend {} is unavailable (Debian: apt-get install {})",
                kind.name(),
                if kind == EngineKind::Docker {
                    "docker.io"
                } else {
                    "podman"
                }
            ),
        ),
    }
}

/// Docker's first existing socket, judged for this user: one it may not open is a failed check
/// saying why; a rootful daemon's (owned by root) used by someone else than root says what that
/// means (the docker group is root-equivalent; the session's command still runs as the invoker's
/// uid without capabilities, in the host's user namespace). `None` when no socket exists.
fn docker_socket_check(d: &Discovery, name: &str) -> Option<Check> {
    use std::os::unix::fs::MetadataExt;
    let (path, src) = d
        .sockets(EngineKind::Docker)
        .into_iter()
        .find(|(p, _)| p.exists())?;
    let usable = nix::unistd::access(
        &path,
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    )
    .is_ok();
    if !usable {
        return Some(check(
            name,
            false,
            format!(
                "socket {} ({src}): this user may not use it",
                path.display()
            ),
            "a rootful Docker daemon's socket is root's and the docker group's, and that group \
             is root-equivalent (any member can start a privileged container); run as root, \
             join the group knowingly, or use rootless Docker, --backend podman or native"
                .into(),
        ));
    }
    let rootful = std::fs::metadata(&path).is_ok_and(|m| m.uid() == 0);
    Some(check(
        name,
        true,
        if rootful && d.uid != 0 {
            format!(
                "socket {} ({src}), a rootful daemon: being able to use it is root-equivalent; \
                 sessions run as your uid with no capabilities, in the host's user namespace \
                 (docs/containers.md)",
                path.display()
            )
        } else {
            format!("socket {} ({src})", path.display())
        },
        String::new(),
    ))
}

fn runtime_check(d: &Discovery, r: Runtime) -> Check {
    let name = format!("runtime {}", r.name());
    match (d.which(r.binary()), r.unsupported()) {
        (Some(p), None) if r == Runtime::Runsc => check(
            &name,
            true,
            format!(
                "{}: {}; egress relayed from inside, --mode bind, no --pids (docs/containers.md)",
                p.display(),
                if d.uid == 0 {
                    "rootful Podman"
                } else {
                    "rootless Podman with ignore-cgroups (no limits)"
                }
            ),
            String::new(),
        ),
        (Some(p), None) => check(&name, true, p.display().to_string(), String::new()),
        (Some(p), Some(why)) => check(
            &name,
            false,
            format!("{} installed, not usable by airlock", p.display()),
            why.to_string(),
        ),
        (None, _) => check(
            &name,
            false,
            "not installed".into(),
            format!(
                "--runtime {} is unavailable ({})",
                r.name(),
                debian_package(r)
            ),
        ),
    }
}

/// Whether this host's cgroups are a v2-only (unified) hierarchy.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn limits_check(d: &Discovery) -> Check {
    if d.uid != 0 && !cgroup_v2() {
        return check(
            "container limits",
            false,
            "rootless engines on a cgroup v1 or hybrid hierarchy ignore memory, pids and cpu \
             limits"
                .into(),
            "airlock refuses --memory/--pids/--cpus with --backend podman|docker here; run as \
             root, on a cgroup v2 host with delegation, or with the native backend"
                .into(),
        );
    }
    check(
        "container limits",
        true,
        if d.uid == 0 {
            "enforced by the engine (root)".into()
        } else {
            "enforced by the engine (cgroup v2; needs delegation to this user)".into()
        },
        String::new(),
    )
}

/// The host's hard RLIMIT_NOFILE.
fn hard_nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(u64::MAX)
}

fn ulimits_check() -> Option<Check> {
    let conf = std::fs::read_to_string("/etc/containers/containers.conf").unwrap_or_default();
    let pinned = conf
        .lines()
        .any(|l| l.trim_start().starts_with("default_ulimits"));
    // Podman raises nofile to 1048576 unless told otherwise (containers.conf(5)).
    let hard = hard_nofile();
    if pinned || hard >= 1_048_576 {
        return None;
    }
    Some(check(
        "podman ulimits",
        false,
        format!("no default_ulimits in /etc/containers/containers.conf, hard nofile is {hard}"),
        "rootful runtimes fail `setrlimit ... Operation not permitted` when the defaults exceed \
         the host's hard limits (no CAP_SYS_RESOURCE): add [containers] default_ulimits = \
         [\"nofile=N:N\",\"nproc=M:M\"] within `ulimit -Hn` and `ulimit -Hu`"
            .into(),
    ))
}

fn hybrid_check() -> Option<Check> {
    let unified = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").ok()?;
    let controllers = unified.split_whitespace().collect::<Vec<_>>().join(" ");
    if controllers.is_empty() {
        return None;
    }
    Some(check(
        "crun on hybrid cgroups",
        false,
        format!("controllers on the v2 hierarchy of a hybrid host: {controllers}"),
        "crun fails with \"cgroups in hybrid mode not supported\": mount each of them on a v1 \
         hierarchy (mount -t cgroup -o NAME cgroup /sys/fs/cgroup/NAME), or use --runtime runc"
            .into(),
    ))
}

fn rootless_dir_check(d: &Discovery) -> Option<Check> {
    if d.uid == 0 {
        return None;
    }
    let ok = d.xdg_runtime_dir.as_deref().is_some_and(Path::is_dir);
    Some(check(
        "rootless runtime dir",
        ok,
        match &d.xdg_runtime_dir {
            Some(p) => format!("XDG_RUNTIME_DIR={}", p.display()),
            None => "XDG_RUNTIME_DIR is not set".into(),
        },
        format!(
            "rootless Podman needs it: create /run/user/{} (mode 700, yours) and set \
             XDG_RUNTIME_DIR (no login manager does it on this host)",
            d.uid
        ),
    ))
}

/// Whether `kind`'s engine has airlock's default image (`crate::image`), for engines whose CLI
/// is installed.
fn image_check(d: &Discovery, kind: EngineKind) -> Option<Check> {
    d.which(kind.name())?;
    let recipe = crate::image::Recipe::from_env();
    let tag = recipe.tag();
    let name = format!("{} default image", kind.name());
    Some(match crate::image::exists(kind, &tag) {
        Ok(true) => check(&name, true, format!("{tag} is built"), String::new()),
        Ok(false) => {
            let debootstrap = crate::image::debootstrap_path()
                .map(|p| {
                    format!(
                        "; without a registry debootstrap ({}) makes the base",
                        p.display()
                    )
                })
                .unwrap_or_else(|| {
                    "; without a registry it needs debootstrap (apt-get install debootstrap)"
                        .to_string()
                });
            check(
                &name,
                false,
                format!("{tag} is not built (base {}{debootstrap})", recipe.base),
                format!(
                    "the first `airlock run --backend {}` without --image builds it (minutes,                      once): run `airlock image build --backend {}` ahead",
                    kind.name(),
                    kind.name()
                ),
            )
        }
        Err(e) => check(&name, false, e.to_string(), "see the engine check".into()),
    })
}

/// The container section of `airlock doctor`.
pub fn checks(d: &Discovery) -> Vec<Check> {
    let mut out = vec![
        engine_check(d, EngineKind::Podman),
        engine_check(d, EngineKind::Docker),
    ];
    out.extend(Runtime::ALL.iter().map(|r| runtime_check(d, *r)));
    out.push(limits_check(d));
    out.extend(ulimits_check());
    out.extend(hybrid_check());
    out.extend(rootless_dir_check(d));
    out.extend(image_check(d, EngineKind::Podman));
    out.extend(image_check(d, EngineKind::Docker));
    out
}
