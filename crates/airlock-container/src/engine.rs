//! Finding and talking to a container engine: Docker or Podman through the Docker Engine API
//! (Podman's compat API), over a unix socket.
//!
//! Discovery, in order: `DOCKER_HOST` (Docker) or `CONTAINER_HOST` (Podman) when set and
//! `unix://`; then the engine's usual socket (`/var/run/docker.sock`; Podman's rootful
//! `/run/podman/podman.sock` as root, rootless `$XDG_RUNTIME_DIR/podman/podman.sock` otherwise);
//! then, for Podman, a private `podman system service` started for the session
//! ([`crate::service`]). A runtime other than the engine's default is used per container on
//! Docker, and through a service of its own on Podman (4.3 ignores a per-container runtime sent
//! over the compat API).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use crate::error::ContainerError;
use crate::service::PodmanService;

/// Seconds a request to the engine may take (pulling nothing, so short).
const REQUEST_TIMEOUT: u64 = 120;

/// The Engine API version airlock speaks: 1.41 (Docker 20.10; Podman 4's compat API serves it),
/// fixed rather than negotiated, which would cost one more `/version` round trip (Podman answers
/// it slowly). Everything airlock sends exists in 1.41.
const API_VERSION: &bollard::ClientVersion = &bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Which engine the user asked for (`--backend docker|podman`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    /// The name users know it by.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }
}

/// An OCI runtime (`--runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Runc,
    Crun,
    /// gVisor: a user-space kernel between the agent and the host. Its own networking is off
    /// (`network=none`), host unix sockets may be connected to (`host-uds=open`), which the
    /// control socket and the egress relay need ([`Runtime::relays_egress`]), and the engine's
    /// seccomp profile is applied inside (`oci-seccomp`; gVisor ignores it otherwise).
    Runsc,
    Kata,
}

impl Runtime {
    /// Every runtime airlock knows, for `airlock doctor`.
    pub const ALL: [Runtime; 4] = [Runtime::Runc, Runtime::Crun, Runtime::Runsc, Runtime::Kata];

    /// Parses `runc`, `crun`, `runsc` (or `gvisor`), `kata`.
    pub fn parse(s: &str) -> Option<Runtime> {
        match s {
            "runc" => Some(Runtime::Runc),
            "crun" => Some(Runtime::Crun),
            "runsc" | "gvisor" => Some(Runtime::Runsc),
            "kata" | "kata-runtime" => Some(Runtime::Kata),
            _ => None,
        }
    }

    /// The name engines register it under.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
            Runtime::Runsc => "runsc",
            Runtime::Kata => "kata",
        }
    }

    /// Why airlock's sandbox cannot run on this runtime, if it cannot.
    pub fn unsupported(self) -> Option<&'static str> {
        match self {
            Runtime::Runc | Runtime::Crun | Runtime::Runsc => None,
            Runtime::Kata => Some(
                "a Kata container runs in a virtual machine, whose sockets cannot be passed to \
                 the host as descriptors, and whose host unix sockets airlock has no relay for",
            ),
        }
    }

    /// Whether the container's pid 1 relays the proxy, DNS and audit connections to the
    /// supervisor's unix sockets instead of handing the listeners out (SCM_RIGHTS). gVisor's
    /// sockets live in its own kernel (its netstack, with `network=none`) and it refuses to send
    /// them over a host unix socket (sendmsg: EINVAL), so there the listeners stay inside and a
    /// relay forwards each connection; with runc and crun nothing of airlock's but the command's
    /// pid 1 stays inside.
    pub fn relays_egress(self) -> bool {
        self == Runtime::Runsc
    }

    /// The executable that implements it.
    pub fn binary(self) -> &'static str {
        match self {
            Runtime::Kata => "kata-runtime",
            other => other.name(),
        }
    }

    /// Flags the runtime itself needs for airlock's sandbox (passed by Podman's
    /// `--runtime-flag`, or expected in the Docker daemon's runtime registration). `rootless`:
    /// the engine runs without root, where runsc cannot make the container's cgroups
    /// (`mkdir /sys/fs/cgroup/cpu/ID: permission denied`) and is told to make none
    /// (`ignore-cgroups`; limits are then refused, [`Engine::limits_ignored`]).
    pub fn flags(self, rootless: bool) -> Vec<String> {
        match self {
            Runtime::Runsc => {
                let mut f = vec![
                    "network=none".to_string(),
                    "host-uds=open".to_string(),
                    "oci-seccomp".to_string(),
                ];
                if rootless {
                    f.push("ignore-cgroups".into());
                }
                f
            }
            _ => Vec::new(),
        }
    }
}

/// Where to look for engines; taken from the environment by [`Discovery::from_env`], settable
/// for tests.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub docker_host: Option<String>,
    pub container_host: Option<String>,
    pub xdg_runtime_dir: Option<PathBuf>,
    /// The effective uid (0 selects Podman's rootful socket).
    pub uid: u32,
    /// `PATH` to find `podman` and the runtimes in.
    pub path: String,
}

impl Discovery {
    /// From this process's environment.
    pub fn from_env() -> Discovery {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Discovery {
            docker_host: var("DOCKER_HOST"),
            container_host: var("CONTAINER_HOST"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            uid: nix::unistd::geteuid().as_raw(),
            path: var("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        }
    }

    /// An executable named `name` on `PATH`.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    /// The sockets to try for `kind`, in order, each with where it came from.
    pub fn sockets(&self, kind: EngineKind) -> Vec<(PathBuf, &'static str)> {
        let unix = |v: &Option<String>| {
            v.as_deref()
                .and_then(|h| h.strip_prefix("unix://"))
                .map(PathBuf::from)
        };
        let mut out = Vec::new();
        match kind {
            EngineKind::Docker => {
                if let Some(p) = unix(&self.docker_host) {
                    out.push((p, "DOCKER_HOST"));
                }
                out.push((
                    PathBuf::from("/var/run/docker.sock"),
                    "Docker's default socket",
                ));
            }
            EngineKind::Podman => {
                if let Some(p) = unix(&self.container_host) {
                    out.push((p, "CONTAINER_HOST"));
                }
                if self.uid == 0 {
                    out.push((
                        PathBuf::from("/run/podman/podman.sock"),
                        "Podman's rootful socket",
                    ));
                } else if let Some(d) = &self.xdg_runtime_dir {
                    out.push((d.join("podman/podman.sock"), "Podman's rootless socket"));
                }
            }
        }
        out
    }
}

/// What the engine says about itself, reduced to what airlock decides on.
#[derive(Debug, Clone)]
pub struct EngineFacts {
    /// "Docker Engine" or "Podman Engine" and its version.
    pub product: String,
    pub version: String,
    /// Runs without root (Podman rootless, Docker rootless).
    pub rootless: bool,
    /// "1" or "2" (hybrid hosts report "1").
    pub cgroup_version: String,
    pub memory_limit: bool,
    pub pids_limit: bool,
    pub cpu_limit: bool,
    /// The runtime containers get unless told otherwise.
    pub default_runtime: String,
    /// Runtimes registered with the engine (Docker; Podman lists the ones it found).
    pub runtimes: Vec<String>,
}

impl EngineFacts {
    /// Whether this engine is Podman (whichever API it is reached through).
    pub fn is_podman(&self) -> bool {
        self.product.to_ascii_lowercase().contains("podman")
    }
}

/// A connected engine. Holds the private service, if one was started, until dropped.
#[derive(Debug)]
pub struct Engine {
    pub(crate) kind: EngineKind,
    pub(crate) socket: PathBuf,
    pub(crate) client: Docker,
    pub(crate) rt: Arc<tokio::runtime::Runtime>,
    pub(crate) facts: EngineFacts,
    /// The runtime containers are created with by name (Docker), if not the default.
    pub(crate) runtime: Option<Runtime>,
    pub(crate) service: Option<PodmanService>,
    /// The runtime a private service was started with.
    pub(crate) service_runtime: Option<Runtime>,
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, ContainerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ContainerError::io("cannot start the container engine client", e))
}

/// Connects to the socket at `path` and asks the engine about itself; `Err(detail)` if it does
/// not answer as a Docker Engine API.
fn probe(rt: &tokio::runtime::Runtime, path: &Path) -> Result<(Docker, EngineFacts), String> {
    let socket = path.to_str().ok_or("the socket path is not UTF-8")?;
    let client = Docker::connect_with_unix(socket, REQUEST_TIMEOUT, API_VERSION)
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        // Podman says who it is in every response's headers; its /version gathers the whole of
        // /info first (a quarter of a second per session, most of airlock's start-up on a
        // running service), so a /_ping identifies it.
        if let Ok(Ok(Some(version))) =
            tokio::time::timeout(Duration::from_secs(10), libpod_version(path)).await
        {
            let facts = podman_facts("Podman Engine".into(), version, path);
            return Ok((client, facts));
        }
        let version = tokio::time::timeout(Duration::from_secs(10), client.version())
            .await
            .map_err(|_| "no answer within 10s".to_string())?
            .map_err(|e| e.to_string())?;
        let product = version
            .components
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| c.name.clone())
            .or_else(|| version.platform.as_ref().map(|p| p.name.clone()))
            .unwrap_or_else(|| "Docker Engine".into());
        let podman = product.to_ascii_lowercase().contains("podman");
        if podman {
            // Podman's /info takes a third of a second and its compat answer lacks what matters
            // (rootless); what airlock decides on is known here.
            let facts = podman_facts(product, version.version.clone().unwrap_or_default(), path);
            return Ok((client, facts));
        }
        let info = client.info().await.map_err(|e| e.to_string())?;
        let sec = info.security_options.clone().unwrap_or_default();
        let facts = EngineFacts {
            product,
            version: version.version.clone().unwrap_or_default(),
            rootless: sec.iter().any(|s| s.contains("name=rootless"))
                || (podman && owned_by_user(path)),
            cgroup_version: info
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            memory_limit: info.memory_limit.unwrap_or(false),
            pids_limit: info.pids_limit.unwrap_or(false),
            cpu_limit: info.cpu_cfs_quota.unwrap_or(false),
            default_runtime: info.default_runtime.clone().unwrap_or_default(),
            runtimes: info
                .runtimes
                .as_ref()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default(),
        };
        Ok((client, facts))
    })
}

/// The `Libpod-Api-Version` header of the engine's answer to `GET /_ping` (Podman sets it on
/// every response, Docker never), or `None` for an engine without it. One HTTP/1.0 exchange on
/// the unix socket: bollard's `ping` does not return headers.
async fn libpod_version(path: &Path) -> std::io::Result<Option<String>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::UnixStream::connect(path).await?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: airlock\r\n\r\n")
        .await?;
    let mut head = Vec::new();
    // The answer is a few headers and "OK"; HTTP/1.0 closes after it. Bounded all the same.
    s.take(16 * 1024).read_to_end(&mut head).await?;
    Ok(libpod_header(&String::from_utf8_lossy(&head)))
}

/// `Libpod-Api-Version` from an HTTP response head (names are case-insensitive, RFC 9110 5.1).
fn libpod_header(response: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    let ok = head.starts_with("HTTP/1.") && head.split(' ').nth(1) == Some("200");
    if !ok {
        return None;
    }
    head.lines().skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("libpod-api-version")
            .then(|| value.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// A local Podman's facts without asking it: rootless when its socket is a user's, the cgroup
/// version of this host, limits enforced as root or on cgroup v2 (rootless on v1 or hybrid
/// hierarchies ignores them: podman-run(1), "--memory").
fn podman_facts(product: String, version: String, socket: &Path) -> EngineFacts {
    let rootless = owned_by_user(socket);
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let limits = !rootless || v2;
    EngineFacts {
        product,
        version,
        rootless,
        cgroup_version: if v2 { "2" } else { "1" }.into(),
        memory_limit: limits,
        pids_limit: limits,
        cpu_limit: limits,
        default_runtime: String::new(),
        runtimes: Vec::new(),
    }
}

/// Whether the socket at `path` belongs to a user other than root: Podman's compat API does not
/// say whether it runs rootless (Docker's lists `name=rootless` in its security options), but a
/// rootless service's socket is its user's.
fn owned_by_user(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.uid() != 0)
}

/// What to do when no engine answers, for the error message.
/// Whether a probe failed because this user may not connect to the socket (EACCES).
fn denied(detail: &str) -> bool {
    detail.to_ascii_lowercase().contains("permission denied")
}

/// What to do when this user may not use the engine's socket. A rootful Docker daemon's socket
/// belongs to root and the `docker` group, and whoever may use it can start a privileged
/// container with the host's root bind-mounted: membership is root-equivalent (Docker's
/// "Docker daemon attack surface"). airlock itself never asks the daemon for more than the
/// invoker's uid without capabilities, but it cannot stop another client of the same socket.
fn socket_denied_hint(kind: EngineKind, socket: &Path) -> String {
    match kind {
        EngineKind::Docker => format!(
            "this user may not connect to {}: a rootful Docker daemon's socket is root's and \
             the docker group's, and that group is root-equivalent (any member can start a \
             privileged container); run as root, join the group knowingly, use rootless Docker \
             (dockerd-rootless.sh; set DOCKER_HOST to its socket), or use --backend podman \
             (rootless) or the native backend",
            socket.display()
        ),
        EngineKind::Podman => format!(
            "this user may not connect to {}: use your own rootless Podman socket \
             (CONTAINER_HOST), or run as root",
            socket.display()
        ),
    }
}

fn no_engine_hint(kind: EngineKind, d: &Discovery) -> String {
    match kind {
        EngineKind::Docker => {
            "start the Docker daemon, or set DOCKER_HOST=unix:///path/to/docker.sock; \
             with only Podman installed use --backend podman"
                .into()
        }
        EngineKind::Podman if d.which("podman").is_none() => {
            "install Podman (Debian: apt-get install podman) or use --backend docker".into()
        }
        EngineKind::Podman => "run `podman system service` or check `podman info`".into(),
    }
}

impl Engine {
    /// Finds and connects to the engine of `kind`, with `runtime` for its containers.
    pub fn connect(
        kind: EngineKind,
        runtime: Option<Runtime>,
        d: &Discovery,
    ) -> Result<Engine, ContainerError> {
        let rt = Arc::new(tokio_runtime()?);
        if let Some(why) = runtime.and_then(Runtime::unsupported) {
            return Err(ContainerError::Runtime {
                engine: kind.name(),
                runtime: runtime.map_or("", Runtime::name).into(),
                detail: format!(
                    "not supported by airlock's container backend yet: {why}; use \
                     --runtime runc or crun"
                ),
            });
        }
        if let Some(r) = runtime {
            if d.which(r.binary()).is_none() && kind == EngineKind::Podman {
                return Err(ContainerError::Runtime {
                    engine: kind.name(),
                    runtime: r.name().into(),
                    detail: format!(
                        "{} is not on PATH; install it (Debian: {}) or choose another with \
                         --runtime (`airlock doctor` lists those found)",
                        r.binary(),
                        debian_package(r)
                    ),
                });
            }
        }
        // Podman with an explicit runtime: a service of its own, since 4.3 ignores the
        // per-container runtime over the compat API.
        let private = kind == EngineKind::Podman && runtime.is_some();
        let mut tried = Vec::new();
        if !private {
            for (path, source) in d.sockets(kind) {
                if !path.exists() {
                    tried.push(format!("{} ({source}): absent", path.display()));
                    continue;
                }
                // bollard reports a refused connect without its cause: look first.
                let rw = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
                let result = match nix::unistd::access(&path, rw) {
                    Err(nix::errno::Errno::EACCES) => {
                        Err("permission denied (connect needs write access)".to_string())
                    }
                    _ => probe(&rt, &path),
                };
                match result {
                    Ok((client, facts)) => {
                        let engine = Engine {
                            kind,
                            socket: path,
                            client,
                            rt,
                            facts,
                            runtime,
                            service: None,
                            service_runtime: None,
                        };
                        engine.check_runtime()?;
                        return Ok(engine);
                    }
                    Err(detail) if source.ends_with("_HOST") || denied(&detail) => {
                        return Err(ContainerError::Unreachable {
                            engine: kind.name(),
                            hint: if denied(&detail) {
                                socket_denied_hint(kind, &path)
                            } else {
                                format!("check that the engine runs, or unset {source}")
                            },
                            socket: path,
                            detail,
                        })
                    }
                    Err(detail) => tried.push(format!("{} ({source}): {detail}", path.display())),
                }
            }
        }
        if kind == EngineKind::Podman {
            if let Some(podman) = d.which("podman") {
                return Engine::with_service(&podman, runtime, d, rt);
            }
            tried.push("no `podman` on PATH to start a service with".into());
        }
        Err(ContainerError::NoEngine {
            engine: kind.name(),
            tried: tried.join("; "),
            hint: no_engine_hint(kind, d),
        })
    }

    fn with_service(
        podman: &Path,
        runtime: Option<Runtime>,
        d: &Discovery,
        rt: Arc<tokio::runtime::Runtime>,
    ) -> Result<Engine, ContainerError> {
        let parent = match &d.xdg_runtime_dir {
            Some(p) if d.uid != 0 && p.is_dir() => p.clone(),
            _ => std::env::temp_dir(),
        };
        let flags = runtime.map(|r| r.flags(d.uid != 0)).unwrap_or_default();
        let mut service =
            PodmanService::spawn(podman, &parent, runtime.map(Runtime::binary), &flags)?;
        service.wait_ready(|p| probe(&rt, p).is_ok())?;
        let (client, facts) =
            probe(&rt, service.socket()).map_err(|detail| ContainerError::Service {
                socket: service.socket().to_path_buf(),
                detail,
            })?;
        Ok(Engine {
            kind: EngineKind::Podman,
            socket: service.socket().to_path_buf(),
            client,
            rt,
            facts,
            // The service runs it for every container.
            runtime: None,
            service: Some(service),
            service_runtime: runtime,
        })
    }

    /// Docker: a named runtime must be registered with the daemon (with runsc's flags).
    fn check_runtime(&self) -> Result<(), ContainerError> {
        let Some(r) = self.runtime else {
            return Ok(());
        };
        if self.facts.runtimes.iter().any(|n| n == r.name()) {
            return Ok(());
        }
        Err(ContainerError::Runtime {
            engine: self.kind.name(),
            runtime: r.name().into(),
            detail: format!(
                "the engine at {} has no runtime named {} (it has: {}); register it in \
                 /etc/docker/daemon.json under \"runtimes\"{} and restart the daemon",
                self.socket.display(),
                r.name(),
                if self.facts.runtimes.is_empty() {
                    "none listed".to_string()
                } else {
                    self.facts.runtimes.join(", ")
                },
                if r.flags(self.facts.rootless).is_empty() {
                    String::new()
                } else {
                    format!(
                        " with runtimeArgs {:?}",
                        r.flags(self.facts.rootless)
                            .iter()
                            .map(|f| format!("--{f}"))
                            .collect::<Vec<_>>()
                    )
                }
            ),
        })
    }

    /// The OCI runtime containers get: the one asked for, or the engine's default.
    pub fn runtime_name(&self) -> String {
        match (self.runtime, self.service_runtime) {
            (Some(r), _) | (None, Some(r)) => r.name().to_string(),
            (None, None) if self.facts.default_runtime.is_empty() => "the engine's default".into(),
            (None, None) => self.facts.default_runtime.clone(),
        }
    }

    /// Whether this engine's containers relay egress ([`Runtime::relays_egress`]).
    pub fn relays_egress(&self) -> bool {
        self.runtime
            .or(self.service_runtime)
            .is_some_and(Runtime::relays_egress)
    }

    /// Why a pids limit would not bound the command's processes on this engine's runtime, if it
    /// would not: gVisor runs them as tasks of its own kernel, so the container's pids cgroup
    /// counts the sandbox's host threads instead (and runsc 20221219 hangs starting a container
    /// that has one through Podman's API).
    pub fn pids_limit_unenforced(&self) -> Option<&'static str> {
        self.runtime
            .or(self.service_runtime)
            .filter(|r| *r == Runtime::Runsc)
            .map(|_| {
                "gVisor (runsc) runs the command's processes in its own kernel, where the \
                 container's pids cgroup does not count them; use --runtime runc or crun, or the \
                 native backend"
            })
    }

    /// Why this engine's runtime makes no cgroup for the container, if it makes none: runsc
    /// under a rootless engine runs with `ignore-cgroups` ([`Runtime::flags`]), so memory, pids
    /// and cpu limits would be ignored.
    pub fn limits_ignored(&self) -> Option<&'static str> {
        let runsc = self.runtime.or(self.service_runtime) == Some(Runtime::Runsc);
        (runsc && self.facts.rootless).then_some(
            "gVisor (runsc) under rootless Podman cannot make the container's cgroups and runs \
             with ignore-cgroups",
        )
    }

    /// What the engine said about itself.
    pub fn facts(&self) -> &EngineFacts {
        &self.facts
    }

    /// The socket this engine was reached on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Which engine was asked for.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The private service's pid, when airlock started one.
    pub fn service_pid(&self) -> Option<u32> {
        self.service.as_ref().and_then(PodmanService::pid)
    }

    /// Stops the private service, if any (also done on drop).
    pub fn shutdown(&mut self) {
        if let Some(s) = self.service.as_mut() {
            s.stop();
        }
    }

    /// An engine error, named with the engine, its socket and what was being done.
    pub(crate) fn error(
        &self,
        action: impl Into<String>,
        e: &bollard::errors::Error,
    ) -> ContainerError {
        let detail = match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => {
                format!("{message} (HTTP {status_code})")
            }
            other => other.to_string(),
        };
        ContainerError::Engine {
            engine: self.kind.name(),
            socket: self.socket.clone(),
            action: action.into(),
            hint: hint_for(&detail),
            detail,
        }
    }
}

/// What to change for engine errors whose cause is known (the host's setup, not airlock).
pub(crate) fn hint_for(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    if d.contains("setrlimit") {
        "; the runtime could not set the default ulimits, which exceed what this host allows \
         (no CAP_SYS_RESOURCE): set default_ulimits = [\"nofile=N:N\",\"nproc=M:M\"] below the \
         host's hard limits (`ulimit -Hn`, `ulimit -Hu`) in /etc/containers/containers.conf"
            .into()
    } else if d.contains("hybrid mode") {
        "; crun does not support controllers on the cgroup v2 hierarchy of a hybrid host: move \
         those listed in /sys/fs/cgroup/unified/cgroup.controllers to a v1 mount, or use \
         --runtime runc"
            .into()
    } else if d.contains("xdg_runtime_dir") || d.contains("/run/user") {
        "; rootless Podman needs a runtime directory: create /run/user/$(id -u) (mode 700, \
         owned by you) and set XDG_RUNTIME_DIR"
            .into()
    } else if d.contains("unknown runtime specified") {
        "; register the runtime with the Docker daemon (\"runtimes\" in /etc/docker/daemon.json) \
         and restart it, or choose another with --runtime (`airlock doctor` lists them)"
            .into()
    } else if d.contains("no such image") || d.contains("image not known") {
        "; build or import the image first (`podman images` lists what is there)".into()
    } else {
        String::new()
    }
}

/// Removes container `id` with its anonymous volumes (`force`, `v`), as `podman rm -f -v`.
/// A container already gone (404) counts as removed. Podman's removal races with its own
/// teardown: EBUSY on the container's shm or overlay mount (containers/podman#11594, #10454),
/// "removal in progress" or "state improper" while AutoRemove runs. Those are retried for up
/// to 3 s; any other error is returned at once.
pub(crate) fn remove_forced(
    rt: &tokio::runtime::Runtime,
    client: &Docker,
    id: &str,
) -> Result<(), bollard::errors::Error> {
    let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let mut attempt = 0;
    loop {
        match rt.block_on(client.remove_container(id, Some(opts.clone()))) {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) if attempt < 10 && is_transient_removal(&e) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => return Err(e),
        }
    }
}

/// An engine answer to a removal that a retry resolves (see [`remove_forced`]).
fn is_transient_removal(e: &bollard::errors::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "resource busy",
        "removal in progress",
        // Docker: "removal of container ID is already in progress".
        "already in progress",
        "state improper",
    ]
    .iter()
    .any(|t| text.contains(t))
}

/// The Debian package that provides `r`.
pub fn debian_package(r: Runtime) -> &'static str {
    match r {
        Runtime::Runc => "apt-get install runc",
        Runtime::Crun => "apt-get install crun",
        Runtime::Runsc => "apt-get install runsc",
        Runtime::Kata => "not packaged by Debian; see the Kata Containers install guide",
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn podman_is_told_by_its_ping_headers() {
        let podman = "HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nlibpod-api-version:  4.3.1 \r\n\
                      Server: Libpod/4.3.1 (linux)\r\n\r\nOK";
        assert_eq!(libpod_header(podman).as_deref(), Some("4.3.1"));
        let docker =
            "HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\nServer: Docker/26.1.5 (linux)\r\n\r\nOK";
        assert_eq!(libpod_header(docker), None);
        // Not a success, or the header only in the body: not Podman.
        let err = "HTTP/1.0 500 Internal Server Error\r\nLibpod-Api-Version: 4.3.1\r\n\r\n";
        assert_eq!(libpod_header(err), None);
        let body = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nLibpod-Api-Version: 9\r\n";
        assert_eq!(libpod_header(body), None);
        assert_eq!(libpod_header("garbage"), None);
        assert_eq!(
            libpod_header("HTTP/1.0 200 OK\r\nLibpod-Api-Version:\r\n\r\n"),
            None
        );
    }

    use super::*;

    fn discovery(uid: u32) -> Discovery {
        Discovery {
            docker_host: Some("unix:///custom/docker.sock".into()),
            container_host: Some("tcp://remote:1234".into()),
            xdg_runtime_dir: Some(PathBuf::from("/run/user/1000")),
            uid,
            path: "/nonexistent".into(),
        }
    }

    /// The environment's socket first, then the engine's usual one; Podman's rootful socket for
    /// root, the rootless one otherwise; only unix:// hosts are taken.
    #[test]
    fn sockets_in_order() {
        let d = discovery(1000);
        let docker: Vec<PathBuf> = d
            .sockets(EngineKind::Docker)
            .into_iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(
            docker,
            vec![
                PathBuf::from("/custom/docker.sock"),
                PathBuf::from("/var/run/docker.sock")
            ]
        );
        let podman: Vec<PathBuf> = d
            .sockets(EngineKind::Podman)
            .into_iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(
            podman,
            vec![PathBuf::from("/run/user/1000/podman/podman.sock")]
        );
        let root: Vec<PathBuf> = discovery(0)
            .sockets(EngineKind::Podman)
            .into_iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(root, vec![PathBuf::from("/run/podman/podman.sock")]);
    }

    #[test]
    fn runtimes_parse_and_the_unusable_say_why() {
        for (s, r) in [
            ("runc", Runtime::Runc),
            ("crun", Runtime::Crun),
            ("gvisor", Runtime::Runsc),
        ] {
            assert_eq!(Runtime::parse(s), Some(r));
        }
        assert_eq!(Runtime::parse("Runc"), None);
        for r in [Runtime::Runc, Runtime::Crun, Runtime::Runsc] {
            assert!(r.unsupported().is_none(), "{r:?}");
        }
        assert!(Runtime::Kata
            .unsupported()
            .is_some_and(|w| w.contains("virtual machine")));
        // Only gVisor keeps a relay inside; runc and crun hand the listeners out.
        assert!(Runtime::Runsc.relays_egress());
        assert!(![Runtime::Runc, Runtime::Crun, Runtime::Kata]
            .iter()
            .any(|r| r.relays_egress()));
    }

    /// Known host causes of engine errors get their fix.
    #[test]
    fn engine_errors_get_the_fix() {
        assert!(
            hint_for("crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted")
                .contains("default_ulimits")
        );
        assert!(hint_for("cgroups in hybrid mode not supported").contains("--runtime runc"));
        assert!(hint_for("something else").is_empty());
    }

    /// An unusable runtime is refused before anything is started or looked up.
    #[test]
    fn unusable_runtime_is_refused_first() {
        let e = Engine::connect(EngineKind::Podman, Some(Runtime::Kata), &discovery(1000))
            .expect_err("kata");
        assert!(e.to_string().contains("virtual machine"), "{e}");
        assert_eq!(e.exit_code(), 125);
        let e = Engine::connect(EngineKind::Podman, Some(Runtime::Crun), &discovery(1000))
            .expect_err("not on PATH");
        assert!(e.to_string().contains("apt-get install crun"), "{e}");
    }
}
