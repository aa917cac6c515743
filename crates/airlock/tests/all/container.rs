//! `airlock run --backend podman|docker` against a real Podman and a real Docker daemon: one
//! test matrix of engines × OCI runtimes ([`matrix`]). Podman rootful as root, rootless as an
//! unprivileged user (scripts/test.sh re-runs this module as one). Docker is the daemon
//! scripts/docker-setup.sh starts on its own socket (`AIRLOCK_TEST_DOCKER_HOST`), as root only:
//! rootful Docker is root-equivalent for whoever may use its socket, and rootless Docker
//! (dockerd-rootless.sh with rootlesskit) is not set up by the test command, so the unprivileged
//! run skips the Docker rows with that reason. Needs the local test image the setup scripts
//! import (busybox on an empty root; no registry). A host without Podman skips with the reason
//! printed; Podman without the image is a failure that says to run the setup.
//!
//! The tests run one at a time (a lock per engine): the "nothing left behind" checks look at
//! every container and service process of this user, and at every container and volume of the
//! test daemon.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{MutexGuard, OnceLock};

const IMAGE: &str = "localhost/airlock-test-busybox:latest";
const LABEL: &str = "airlock.session";
/// The socket scripts/docker-setup.sh starts dockerd on.
const DOCKER_SOCKET: &str = "/run/airlock-docker.sock";

use crate::bin;
use airlock_test_support::upstream::answering_http;
use airlock_test_support::{is_root, stderr, stdout, Pinned, Run, RunExt, Workspace};

/// A container engine of the test matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Podman,
    Docker,
}

impl Engine {
    /// Its `--backend` name and CLI.
    fn name(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    /// Its CLI with `args` (Docker's aimed at the test daemon); `None` when it is not installed.
    fn cli(self, args: &[&str]) -> Option<Run> {
        let mut c = Command::new(self.name());
        if self == Engine::Docker {
            c.env("DOCKER_HOST", docker_host());
        }
        c.args(args).current_dir("/").stdin(Stdio::null());
        let command = airlock_test_support::run::describe(&c);
        c.output().ok().map(|o| Run::new(command, o))
    }
}

fn podman(args: &[&str]) -> Option<Run> {
    Engine::Podman.cli(args)
}

/// The test daemon's `DOCKER_HOST`: `AIRLOCK_TEST_DOCKER_HOST`, else scripts/docker-setup.sh's.
fn docker_host() -> String {
    std::env::var("AIRLOCK_TEST_DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("unix://{DOCKER_SOCKET}"))
}

/// Whether this host can run the tests; panics when Podman is there but not set up.
fn ready() -> bool {
    let Some(o) = podman(&["image", "exists", IMAGE]) else {
        airlock_test_support::skip(
            "podman is not installed (scripts/container-setup.sh installs it)",
        );
        return false;
    };
    assert!(
        o.status.success(),
        "podman has no image {IMAGE}: run scripts/container-setup.sh (as root) first; {}",
        stderr(&o)
    );
    true
}

/// Whether the Docker rows of the matrix run (asked once per test binary). Not as an
/// unprivileged user: a skip with the reason. As root: skipped when Docker is not installed;
/// installed, its test daemon must answer with the test image (under CI a failure says to run
/// scripts/docker-setup.sh start; elsewhere a skip says so).
fn docker_ready() -> bool {
    match docker_state() {
        Ok(()) => true,
        Err(why) => {
            airlock_test_support::skip(why);
            false
        }
    }
}

/// [`docker_ready`]'s verdict, worked out once, without recording a skip.
fn docker_state() -> &'static Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        if !is_root() {
            return Err(
                "rootful Docker is root-equivalent for any user who may use its socket \
                        (the docker group), and rootless Docker (dockerd-rootless.sh, \
                        rootlesskit) is not set up by the test command: the Docker rows of the \
                        matrix run as root only"
                    .into(),
            );
        }
        let installed = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join("dockerd").is_file());
        if !installed {
            return Err(
                "dockerd is not installed (scripts/docker-setup.sh start installs \
                        Debian's docker.io): the Docker rows of the matrix are not run"
                    .into(),
            );
        }
        match Engine::Docker.cli(&["image", "inspect", "--format", "{{.Id}}", IMAGE]) {
            Some(o) if o.status.success() => Ok(()),
            o => {
                let why = format!(
                    "the test Docker daemon at {} has no image {IMAGE} or does not answer \
                        (run scripts/docker-setup.sh start as root): {}",
                    docker_host(),
                    o.map(|o| stderr(&o)).unwrap_or_default()
                );
                assert!(std::env::var_os("CI").is_none_or(|v| v.is_empty()), "{why}");
                Err(why)
            }
        }
    });
    r
}

/// The engines of the matrix: Podman, and Docker where [`docker_ready`].
fn engines() -> Vec<Engine> {
    let mut v = vec![Engine::Podman];
    if docker_ready() {
        v.push(Engine::Docker);
    }
    v
}

/// The whole matrix: every engine × every runtime.
fn matrix() -> Vec<(Engine, Option<&'static str>)> {
    let rts = runtimes();
    engines()
        .into_iter()
        .flat_map(|e| rts.iter().map(move |r| (e, *r)))
        .collect()
}

/// The locks of both engines ([`airlock_test_support::podman_lock`], then
/// [`airlock_test_support::docker_lock`]), held for a whole test.
fn locks() -> (MutexGuard<'static, ()>, MutexGuard<'static, ()>) {
    let p = airlock_test_support::podman_lock();
    (p, airlock_test_support::docker_lock())
}

/// Starts `cmd` (`airlock` for `ws`) as a bind-mode podman session whose command touches
/// `started` and sleeps; returns once the command runs inside the container.
fn start_sleeping(ws: &Ws, mut cmd: Command) -> std::process::Child {
    let child = cmd
        .args(ws.run_args())
        .args(["--", "sh", "-c", "touch started; sleep 60"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = ws.path().join("started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(started.exists(), "the command never started");
    child
}

/// The test's workspace and session store ([`Workspace`]), with this module's helpers, the
/// engine its sessions run on and the OCI runtime they ask for (`None`: the engine's default).
struct Ws(Workspace, Engine, Option<&'static str>);

impl std::ops::Deref for Ws {
    type Target = Workspace;

    fn deref(&self) -> &Workspace {
        &self.0
    }
}

/// The runtimes the test matrix runs on: the engine's default (runc here), and gVisor when
/// `runsc` is installed (rootful, and rootless with `ignore-cgroups`).
fn runtimes() -> Vec<Option<&'static str>> {
    let installed = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("runsc").is_file());
    if !installed {
        airlock_test_support::skip(
            "gVisor's runsc is not installed (scripts/container-setup.sh installs it): its \
             row of the matrix is not run",
        );
        return vec![None];
    }
    vec![None, Some("runsc")]
}

impl Ws {
    fn new() -> Ws {
        Ws::of(Engine::Podman, None)
    }

    /// A workspace whose sessions run on Podman with `runtime`.
    fn on(runtime: Option<&'static str>) -> Ws {
        Ws::of(Engine::Podman, runtime)
    }

    /// A workspace whose sessions run on `engine` with `runtime`.
    fn of(engine: Engine, runtime: Option<&'static str>) -> Ws {
        Ws(
            Workspace::with_container_store("airlock-ctr").with_file("hello.txt", "hello\n"),
            engine,
            runtime,
        )
    }

    /// airlock, aimed at the test Docker daemon when the engine is Docker.
    fn airlock(&self) -> Command {
        let mut c = self.command(&bin());
        if self.1 == Engine::Docker {
            c.env("DOCKER_HOST", docker_host());
        }
        c
    }

    /// `run --backend ENGINE --mode bind --image IMAGE [--runtime R]`.
    fn run_args(&self) -> Vec<&'static str> {
        let mut v = vec![
            "run",
            "--backend",
            self.1.name(),
            "--mode",
            "bind",
            "--image",
            IMAGE,
        ];
        if let Some(r) = self.2 {
            v.extend(["--runtime", r]);
        }
        v
    }

    /// What the assertions name: the engine and the runtime.
    fn on_what(&self) -> String {
        format!(
            "{} with {}",
            self.1.name(),
            self.2.unwrap_or("the default runtime")
        )
    }

    /// `airlock run --backend podman --mode bind -- sh -c SCRIPT` with `extra` flags.
    fn sh_with(&self, extra: &[&str], script: &str) -> Run {
        self.airlock()
            .args(self.run_args())
            .args(extra)
            .args(["--", "sh", "-c", script])
            .run()
    }

    fn sh(&self, script: &str) -> Run {
        self.sh_with(&[], script)
    }

    /// `airlock run --backend ENGINE --mode bind --image IMAGE -- sh -c SCRIPT`.
    fn sh_image(&self, image: &str, script: &str) -> Run {
        self.airlock()
            .args([
                "run",
                "--backend",
                self.1.name(),
                "--mode",
                "bind",
                "--image",
                image,
            ])
            .args(["--", "sh", "-c", script])
            .run()
    }
}

/// Nothing of airlock's is left: no container with airlock's label and no private Podman
/// service; on the test Docker daemon (when the matrix has it), no container and no volume (the
/// overlay views' anonymous volumes).
fn assert_nothing_left(what: &str) {
    let o = podman(&["ps", "-a", "-q", "--filter", &format!("label={LABEL}")]).expect("podman ps");
    assert!(
        stdout(&o).trim().is_empty(),
        "{what}: containers left behind: {}",
        stdout(&o)
    );
    let o = Command::new("pgrep")
        .args([
            "-u",
            &nix::unistd::geteuid().to_string(),
            "-f",
            "system service --time 0 unix://.*airlock-podman-",
        ])
        .run();
    assert!(
        stdout(&o).trim().is_empty(),
        "{what}: podman service left running: {}",
        stdout(&o)
    );
    if docker_state().is_ok() {
        let o = Engine::Docker.cli(&["ps", "-a", "-q"]).expect("docker ps");
        o.assert_success();
        assert!(
            stdout(&o).trim().is_empty(),
            "{what}: Docker containers left behind: {}",
            stdout(&o)
        );
        let o = Engine::Docker
            .cli(&["volume", "ls", "-q"])
            .expect("docker volume ls");
        o.assert_success();
        assert!(
            stdout(&o).trim().is_empty(),
            "{what}: Docker volumes left behind: {}",
            stdout(&o)
        );
    }
}

#[test]
fn exit_status_is_the_commands() {
    if !ready() {
        return;
    }
    let _l = locks();
    for (engine, rt) in matrix() {
        let ws = Ws::of(engine, rt);
        let on = ws.on_what();
        assert_eq!(ws.sh("exit 0").status.code(), Some(0), "{on}");
        assert_eq!(ws.sh("exit 42").status.code(), Some(42), "{on}");
        assert_eq!(ws.sh("kill -TERM $$").status.code(), Some(143), "{on}");
        assert_eq!(ws.sh("kill -KILL $$").status.code(), Some(137), "{on}");
        let o = ws
            .airlock()
            .args(ws.run_args())
            .args(["--", "no-such-command-xyz"])
            .run();
        o.assert_code(127);
        assert!(
            stderr(&o).contains("command not found: no-such-command-xyz"),
            "{on}: {}",
            stderr(&o)
        );
        std::fs::write(ws.path().join("script.sh"), "#!/bin/sh\necho hi\n").expect("write");
        let o = ws
            .airlock()
            .args(ws.run_args())
            .args(["--", "./script.sh"])
            .run();
        o.assert_code(126);
        assert_nothing_left(&format!("after exits and failed commands on {on}"));
    }
}

/// The command sees exactly the spec's environment: the host's secrets and the variables the
/// engine gives a container's first process (container=, HOSTNAME) are absent.
#[test]
fn environment_is_the_allowlist() {
    if !ready() {
        return;
    }
    let _l = locks();
    for (engine, rt) in matrix() {
        let ws = Ws::of(engine, rt);
        let o = ws
            .airlock()
            .env("AWS_SECRET_ACCESS_KEY", "leak-aws")
            .env("GITHUB_TOKEN", "leak-gh")
            .env("SOME_SECRET", "leak-some")
            // The other engine's socket variable (Docker's sessions need DOCKER_HOST).
            .env(
                if engine == Engine::Docker {
                    "CONTAINER_HOST"
                } else {
                    "DOCKER_HOST"
                },
                "unix:///leak",
            )
            .args(ws.run_args())
            .args(["--env", "CHOSEN=yes", "--", "env"])
            .run();
        let out = stdout(&o);
        o.assert_code(0);
        let on = ws.on_what();
        assert!(out.contains("CHOSEN=yes"), "{on}: {out}");
        for leak in [
            "leak-aws",
            "leak-gh",
            "leak-some",
            "unix:///leak",
            "container=",
            "HOSTNAME=",
        ] {
            assert!(
                !out.contains(leak),
                "{on}: {leak} reached the command:\n{out}"
            );
        }
    }
}

/// Only the workspace, home, /tmp and /dev/shm are writable; the image root, airlock's own
/// files and the generated files are not, whatever way of writing is tried.
#[test]
fn root_is_read_only() {
    if !ready() {
        return;
    }
    let _l = locks();
    for engine in engines() {
        let ws = Ws::of(engine, None);
        let script = "for p in / /bin /etc /usr /var /var/tmp /run /.airlock /.airlock/lib /.airlock/ctl /run/airlock; do \
                        touch $p/airlock-probe 2>/dev/null && echo WROTE:$p; \
                        mkdir $p/airlock-dir 2>/dev/null && echo MKDIR:$p; done; \
                      echo x >> /etc/resolv.conf 2>/dev/null && echo WROTE:resolv; \
                      echo x > /.airlock/airlock 2>/dev/null && echo WROTE:airlock; \
                      ln -s /x /bin/airlock-link 2>/dev/null && echo WROTE:link; \
                      for p in /tmp \"$HOME\" /dev/shm \"$PWD\"; do touch \"$p/ok\" || echo FAILED:$p; done; \
                      echo done";
        let o = ws.sh(script);
        let out = stdout(&o);
        o.assert_code(0);
        assert!(out.ends_with("done\n"), "{out}");
        assert!(!out.contains("WROTE") && !out.contains("MKDIR"), "{out}");
        assert!(
            !out.contains("FAILED"),
            "private directories must be writable: {out}"
        );
        assert!(ws.path().join("ok").exists());
    }
}

/// No capability in any set, no_new_privs, and the seccomp filters: the engine's profile (made
/// from the native table) plus the native filters pid 1 installs; the calls they refuse fail.
#[test]
fn no_capabilities_and_seccomp() {
    if !ready() {
        return;
    }
    let _l = locks();
    for engine in engines() {
        let ws = Ws::of(engine, None);
        let o = ws.sh(
            "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; \
             unshare -U true 2>/dev/null && echo ESCAPE:userns; \
             unshare -n true 2>/dev/null && echo ESCAPE:netns; \
             mount -t tmpfs none /tmp 2>/dev/null && echo ESCAPE:mount; \
             chroot / true 2>/dev/null && echo ESCAPE:chroot; \
             echo done",
        );
        let out = stdout(&o);
        o.assert_code(0);
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert!(
                out.contains(&format!("{set}:\t0000000000000000")),
                "{set}: {out}"
            );
        }
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(out.contains("Seccomp:\t2"), "{out}");
        assert!(!out.contains("ESCAPE"), "{out}");
        // One filter more than native: the engine's profile under pid 1's own.
        let native = ws
            .airlock()
            .args([
                "run",
                "--mode",
                "bind",
                "--",
                "grep",
                "Seccomp_filters",
                "/proc/self/status",
            ])
            .run();
        let count = |s: &str| -> Option<u32> {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp_filters:"))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(n), Some(c)) = (count(&stdout(&native)), count(&out)) {
            assert_eq!(c, n + 1, "container filters {c}, native {n}");
        } else {
            panic!(
                "no filter count: native {:?} container {out}",
                stdout(&native)
            );
        }
    }
}

/// The container has no network of its own (`--network none`: loopback only); egress goes only
/// through the proxy airlock serves on the listeners pid 1 made inside and passed out.
#[test]
fn egress_only_through_the_passed_listeners() {
    if !ready() {
        return;
    }
    let _l = locks();
    for (engine, rt) in matrix() {
        egress_only_through_the_proxy_on(&Ws::of(engine, rt));
    }
}

/// Egress on one runtime of the matrix: the allowed host answers through the proxy, a host the
/// policy does not allow gets 403 and a refused DNS answer (NXDOMAIN), and nothing else leaves
/// (no direct connection to the host's loopback or elsewhere, only `lo`). With runc the
/// listeners are handed out; with gVisor a relay inside forwards to the supervisor's unix
/// sockets, and the same answers prove the same proxy and DNS filter decided.
fn egress_only_through_the_proxy_on(ws: &Ws) {
    let on = ws.on_what();
    let port = answering_http("hello from upstream");
    let pol = ws.data().join("policy.toml");
    std::fs::write(
        &pol,
        Pinned::new()
            .pin_allowed("test.airlock.internal", "127.0.0.1", &[port])
            .policy_toml(),
    )
    .expect("policy");
    let pol = pol.display().to_string();
    // busybox's nc speaks HTTP to the proxy (Debian's static wget crashes resolving names).
    let script = format!(
        "get() {{ (printf 'GET http://%s/ HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n' $1 $1; \
                  sleep 3) | nc -w 10 127.0.0.1 ${{http_proxy##*:}}; }}; \
         get test.airlock.internal:{port} | tail -n 1; echo; \
         get example.com | head -n 1; \
         nc -w 5 127.0.0.1 {port} </dev/null 2>/dev/null || echo direct-loopback-refused; \
         nc -w 5 192.0.2.1 80 </dev/null 2>/dev/null || echo direct-ip-refused; \
         nslookup example.com 2>&1 | grep -q NXDOMAIN || echo dns-leak; \
         nslookup test.airlock.internal 2>&1 | grep -q 'Name:.*test.airlock.internal' && echo dns-filter-answers; \
         cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '"
    );
    let o = ws.sh_with(&["--policy", &pol], &script);
    let out = stdout(&o);
    o.assert_code(0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"hello from upstream"), "{on}: {out}");
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("HTTP/1.1 403")),
        "{on}: not allowed by the policy: {out}"
    );
    for refused in ["direct-loopback-refused", "direct-ip-refused"] {
        assert!(out.contains(refused), "{on}: {refused}: {out}");
    }
    assert!(!out.contains("dns-leak"), "{on}: {out}");
    assert!(out.contains("dns-filter-answers"), "{on}: {out}");
    assert_eq!(lines.last(), Some(&"lo"), "{on}: only loopback: {out}");
    assert_eq!(out.matches("hello from upstream").count(), 1, "{on}: {out}");
    // The refusal is the proxy's own, with its notice (the policy's rule named).
    let e = stderr(&o);
    assert!(
        e.contains("refused example.com:80") && e.contains("network.allow"),
        "{on}: {e}"
    );
}

/// Bad input: a missing image, an unreachable engine, a runtime airlock cannot use, a limit the
/// engine would ignore. Each is exit 125 with an error naming the engine, socket, image or
/// runtime and what to do, and leaves no container and no service process.
#[test]
fn bad_input_is_125_and_leaves_nothing() {
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let o = ws
        .airlock()
        .args([
            "run",
            "--backend",
            "podman",
            "--image",
            "localhost/no-such-image:1",
            "--",
            "true",
        ])
        .run();
    let e = stderr(&o);
    o.assert_code(125);
    assert!(
        e.contains("localhost/no-such-image:1") && e.contains("podman"),
        "{e}"
    );
    assert_nothing_left("missing image");
    // The same from the config's [container] section.
    let cfg = ws.data().join("container.toml");
    std::fs::write(&cfg, "[container]\nimage = \"localhost/no-such-image:2\"\n").expect("cfg");
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman", "--policy"])
        .arg(&cfg)
        .args(["--", "true"])
        .run();
    let e = stderr(&o);
    o.assert_code(125);
    assert!(e.contains("localhost/no-such-image:2"), "{e}");
    assert_nothing_left("missing image from the config");

    let o = ws
        .airlock()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["run", "--backend", "docker", "--", "true"])
        .run();
    let e = stderr(&o);
    o.assert_code(125);
    assert!(
        e.contains("/nonexistent/docker.sock") && e.contains("docker"),
        "{e}"
    );

    for (runtime, says) in [("kata", "virtual machine"), ("nope", "unknown --runtime")] {
        let o = ws.sh_with(&["--runtime", runtime], "true");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{runtime}: {e}");
        assert!(e.contains(says), "{runtime}: {e}");
        assert_nothing_left(runtime);
    }
    // gVisor: what it cannot do is refused up front, naming it, with what to use instead: a
    // pids limit (its processes are its own kernel's; rootless, every limit: no cgroups), an
    // overlay view of the workspace or of a cache.
    if runtimes().contains(&Some("runsc")) {
        let gv = Ws::on(Some("runsc"));
        let o = gv.sh_with(&["--pids", "50"], "true");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "runsc --pids: {e}");
        assert!(e.contains("gVisor") && e.contains("pids"), "{e}");
        assert_nothing_left("runsc with --pids");
        let mode = "overlay";
        let o = gv
            .airlock()
            .args([
                "run",
                "--backend",
                "podman",
                "--runtime",
                "runsc",
                "--mode",
                mode,
                "--image",
                IMAGE,
                "--",
                "true",
            ])
            .run();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "runsc --mode {mode}: {e}");
        assert!(
            e.contains("runsc") && e.contains("--mode bind"),
            "runsc --mode {mode}: {e}"
        );
        assert_nothing_left(&format!("runsc with --mode {mode}"));
        if !is_root() {
            let o = gv.sh_with(&["--memory", "64M"], "true");
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(125), "rootless runsc --memory: {e}");
            assert!(e.contains("ignore-cgroups"), "{e}");
            assert_nothing_left("rootless runsc with --memory");
        }
    }

    // A runtime that is not installed: a PATH with podman only.
    let empty = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/usr/bin/podman", empty.path().join("podman")).expect("link");
    let o = ws
        .airlock()
        .env("PATH", empty.path())
        .args([
            "run",
            "--backend",
            "podman",
            "--runtime",
            "crun",
            "--",
            "true",
        ])
        .run();
    let e = stderr(&o);
    o.assert_code(125);
    assert!(
        e.contains("crun") && e.contains("apt-get install crun"),
        "{e}"
    );
    assert_nothing_left("runtime not installed");

    // Limits: enforced as root; refused where the engine would ignore them (rootless Podman on
    // cgroup v1 or hybrid hierarchies).
    let o = ws.sh_with(
        &["--memory", "64M", "--pids", "50"],
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes \
         /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; true",
    );
    let (out, e) = (stdout(&o), stderr(&o));
    let v1_rootless = !is_root() && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v1_rootless {
        assert_eq!(o.status.code(), Some(125), "{out}{e}");
        assert!(
            e.contains("cannot be enforced") && e.contains("rootless"),
            "{e}"
        );
    } else {
        assert_eq!(o.status.code(), Some(0), "{out}{e}");
        assert!(out.contains("67108864") && out.contains("50"), "{out}");
    }
    assert_nothing_left("limits");
}

/// Bad input on Docker: a socket nobody answers on, an image the daemon lacks, a limit gVisor
/// cannot enforce: exit 125, an error naming Docker, the socket, the image or the runtime, and
/// nothing left on the daemon. Limits asked for are enforced (rootful Docker makes the cgroups),
/// and the overlay view works through Docker's overlay volumes.
#[test]
fn docker_bad_input_is_125_and_leaves_nothing() {
    if !ready() || !docker_ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::of(Engine::Docker, None);
    // A socket file with no daemon behind it (bound, then closed).
    let dead = ws.data().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    let o = ws
        .airlock()
        .env("DOCKER_HOST", format!("unix://{}", dead.display()))
        .args(["run", "--backend", "docker", "--image", IMAGE, "--", "true"])
        .run();
    let e = stderr(&o);
    o.assert_code(125);
    assert!(
        e.contains(&dead.display().to_string())
            && e.contains("docker")
            && e.contains("unset DOCKER_HOST"),
        "{e}"
    );
    let o = ws.sh_image("localhost/no-such-image:1", "true");
    let e = stderr(&o);
    o.assert_code(125);
    assert!(
        e.contains("localhost/no-such-image:1")
            && e.contains("docker engine")
            && e.contains(DOCKER_SOCKET),
        "{e}"
    );
    assert_nothing_left("missing image on Docker");
    if runtimes().contains(&Some("runsc")) {
        let gv = Ws::of(Engine::Docker, Some("runsc"));
        let o = gv.sh_with(&["--pids", "50"], "true");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "docker runsc --pids: {e}");
        assert!(
            e.contains("gVisor") && e.contains("pids") && e.contains("docker"),
            "{e}"
        );
        assert_nothing_left("runsc with --pids on Docker");
    }
    // Limits: enforced by rootful Docker.
    let o = ws.sh_with(
        &["--memory", "64M", "--pids", "50"],
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes \
         /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; true",
    );
    let (out, e) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{out}{e}");
    assert!(out.contains("67108864") && out.contains("50"), "{out}");
    // The overlay view: the command's writes land in the session's layer, not the workspace.
    let o = ws
        .airlock()
        .args([
            "run",
            "--backend",
            "docker",
            "--mode",
            "overlay",
            "--image",
            IMAGE,
        ])
        .args(["--", "sh", "-c", "echo changed > hello.txt; cat hello.txt"])
        .run();
    o.assert_code(0);
    assert_eq!(stdout(&o), "changed\n");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("hello.txt")).expect("read"),
        "hello\n",
        "the overlay view wrote through to the workspace"
    );
    assert_nothing_left("limits and overlay on Docker");
}

/// What the engine was told, read back from the OCI config the runtime got: the seccomp profile
/// made from the native table (calls Podman's default profile allows are refused), no
/// capabilities, no_new_privs, a read-only root, a network namespace of its own. Then SIGTERM to
/// airlock ends the session and removes the container.
#[test]
fn runtime_gets_the_hardened_config() {
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let mut child = start_sleeping(&ws, ws.airlock());
    let ids = podman(&["ps", "-q", "--filter", &format!("label={LABEL}")]).expect("ps");
    let id = stdout(&ids).trim().to_string();
    assert!(
        !id.is_empty() && !id.contains('\n'),
        "one container: {id:?}"
    );
    let path = podman(&["inspect", &id, "--format", "{{.OCIConfigPath}}"]).expect("inspect");
    // Rootless, the runtime's files belong to the user namespace's root: read them from there.
    let text = if is_root() {
        std::fs::read_to_string(stdout(&path).trim()).expect("read config.json")
    } else {
        let o = podman(&["unshare", "cat", stdout(&path).trim()]).expect("podman unshare");
        o.assert_success();
        stdout(&o)
    };
    let cfg: serde_json::Value = serde_json::from_str(&text).expect("json");
    let refused = |name: &str| {
        cfg["linux"]["seccomp"]["syscalls"]
            .as_array()
            .is_some_and(|rules| {
                rules.iter().any(|r| {
                    r["action"] == "SCMP_ACT_ERRNO"
                        && r["args"].as_array().is_none_or(Vec::is_empty)
                        && r["names"]
                            .as_array()
                            .is_some_and(|n| n.iter().any(|x| x == name))
                })
            })
    };
    for name in [
        "ptrace",
        "process_vm_readv",
        "pidfd_getfd",
        "keyctl",
        "setns",
        "syslog",
        "bpf",
        "mount",
    ] {
        assert!(
            refused(name),
            "{name} is not refused by the profile the runtime got"
        );
    }
    assert_eq!(cfg["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    assert_eq!(cfg["process"]["noNewPrivileges"], true);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        let caps = &cfg["process"]["capabilities"][set];
        assert!(
            caps.is_null() || caps.as_array().is_some_and(Vec::is_empty),
            "{set}: {caps}"
        );
    }
    assert_eq!(cfg["root"]["readonly"], true);
    let netns = cfg["linux"]["namespaces"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["type"] == "network"))
        .cloned()
        .expect("a network namespace");
    assert!(
        netns["path"].is_null() || netns["path"] == "",
        "a new one: {netns}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "SIGTERM reaches the command");
    assert_nothing_left("after SIGTERM");
}

/// airlock killed outright (no clean-up of its own): pid 1 sees the control socket close and
/// ends the container, the engine removes it, and the private service dies with airlock.
#[test]
fn killed_supervisor_leaves_nothing() {
    if !ready() {
        return;
    }
    let _l = locks();
    for (engine, rt) in matrix() {
        killed_supervisor_leaves_nothing_on(&Ws::of(engine, rt));
    }
}

fn killed_supervisor_leaves_nothing_on(ws: &Ws) {
    // Where airlock puts its private Podman service: the runtime directory rootless, the
    // temporary directory (here the test's own) as root.
    let tmp = ws.data().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let parent = if is_root() {
        tmp.clone()
    } else {
        PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").expect("XDG_RUNTIME_DIR"))
    };
    let service_dirs = || -> Vec<String> {
        std::fs::read_dir(&parent)
            .expect("read the service parent")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("airlock-podman-"))
            .collect()
    };
    let mut cmd = ws.airlock();
    cmd.env("TMPDIR", &tmp);
    let mut child = start_sleeping(ws, cmd);
    child.kill().expect("SIGKILL airlock");
    let _ = child.wait();
    // The engine needs a moment to notice pid 1's end and remove the container.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o =
            ws.1.cli(&["ps", "-a", "-q", "--filter", &format!("label={LABEL}")])
                .expect("ps");
        if stdout(&o).trim().is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_nothing_left(&format!("airlock killed, on {}", ws.on_what()));
    // Its service's directory stayed (airlock could not remove it); the next session sweeps it.
    let o = ws
        .airlock()
        .env("TMPDIR", &tmp)
        .args(ws.run_args())
        .args(["--", "true"])
        .run();
    o.assert_code(0);
    assert!(
        service_dirs().is_empty(),
        "service directories left: {:?}",
        service_dirs()
    );
}

/// Hidden paths (`[filesystem] hide`) are unreadable whichever way they are reached: directly,
/// through a symlink, through `..`, after chmod, after renaming or deleting them.
#[test]
fn hidden_paths_stay_hidden() {
    if !ready() {
        return;
    }
    let _l = locks();
    for engine in engines() {
        let ws = Ws::of(engine, None);
        let root = ws.path();
        std::fs::write(root.join("secret.txt"), "TOPSECRET\n").expect("write");
        std::fs::create_dir(root.join("sdir")).expect("mkdir");
        std::fs::write(root.join("sdir/f"), "TOPSECRET\n").expect("write");
        std::os::unix::fs::symlink("secret.txt", root.join("link")).expect("symlink");
        let pol = ws.data().join("hide.toml");
        std::fs::write(
            &pol,
            format!(
                "[filesystem]\nhide = [\"{}\", \"{}\"]\n",
                root.join("secret.txt").display(),
                root.join("sdir").display()
            ),
        )
        .expect("policy");
        let pol = pol.display().to_string();
        let o = ws.sh_with(
            &["--policy", &pol],
            "cat secret.txt link ./sdir/../secret.txt sdir/f 2>/dev/null; ls sdir 2>/dev/null; \
             chmod 644 secret.txt 2>/dev/null; chmod 755 sdir 2>/dev/null; \
             cat secret.txt sdir/f 2>/dev/null; \
             mv secret.txt moved 2>/dev/null; cat moved 2>/dev/null; \
             rm -f secret.txt 2>/dev/null; cat secret.txt 2>/dev/null; \
             cp secret.txt copy 2>/dev/null; cat copy 2>/dev/null; echo done",
        );
        let out = stdout(&o);
        o.assert_code(0);
        // Nothing read, nothing listed, nothing moved or copied: only the final word.
        assert_eq!(out, "done\n", "a hidden path was reached");
        // The host's files are untouched.
        assert_eq!(
            std::fs::read_to_string(root.join("secret.txt")).expect("still there"),
            "TOPSECRET\n"
        );
    }
}

/// Every ecosystem preset × the secrets its tools keep in and beside its caches, in a
/// container: none is readable (the hide list reaches inside the cache overlays, as natively),
/// while the cache itself is.
#[test]
fn preset_caches_show_no_tool_secrets() {
    use airlock_test_support::presets::{plant, CONTROL, MARKER};
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let home = tempfile::tempdir().expect("home");
    let sets = plant(home.path());
    for set in &sets {
        let files: Vec<String> = set
            .secrets
            .iter()
            .map(|f| format!("\"$HOME/{f}\""))
            .collect();
        let script = format!(
            "for f in {}; do cat \"$f\"; cp \"$f\" /tmp/c 2>/dev/null && cat /tmp/c; done \
             2>/dev/null; grep -rs {MARKER} \"$HOME\" /tmp; echo; cat \"$HOME/{}\"",
            files.join(" "),
            set.control
        );
        let o = ws
            .airlock()
            .args([
                "run",
                "--backend",
                "podman",
                "--mode",
                "bind",
                "--image",
                IMAGE,
            ])
            .args(["--preset", set.preset, "--", "sh", "-c", &script])
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env_remove("CARGO_HOME")
            .run();
        let out = stdout(&o);
        assert!(
            !out.contains(MARKER),
            "--preset {}: a tool secret is readable in the container: {out}",
            set.preset
        );
        assert!(
            out.contains(CONTROL),
            "--preset {}: the cache is not shown: {out}{}",
            set.preset,
            stderr(&o)
        );
    }
}

/// Workspace paths holding characters of Podman's mount and overlay option syntax (`,` `:`
/// newlines; Podman's compat API turns even structured mounts into option strings): refused
/// with a clear error before any container exists, in bind and overlay mode, never read as
/// injected mount options (`/tmp/c,upperdir=/x` once reached the kernel's overlay options);
/// `=` and spaces are plain characters and work.
#[test]
fn workspace_paths_are_never_parsed_as_mount_options() {
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    for (name, overlay_ok) in [
        ("a,upperdir=x", false),
        ("b:c", false),
        ("new\nline", false),
        ("d=e f", true),
    ] {
        let dir = ws.data().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("hello.txt"), "hello\n").expect("write");
        for mode in ["bind", "overlay"] {
            let o = ws
                .airlock()
                .current_dir(&dir)
                .args([
                    "run",
                    "--backend",
                    "podman",
                    "--mode",
                    mode,
                    "--image",
                    IMAGE,
                ])
                .args(["--", "sh", "-c", "cat hello.txt && echo new > made.txt"])
                .run();
            let ok = overlay_ok;
            if ok {
                assert_eq!(
                    (o.status.code(), stdout(&o).as_str()),
                    (Some(0), "hello\n"),
                    "{name:?} {mode}: {}",
                    stderr(&o)
                );
            } else {
                assert_eq!(
                    o.status.code(),
                    Some(125),
                    "{name:?} {mode}: {}",
                    stderr(&o)
                );
                assert!(
                    stderr(&o).contains("option separator")
                        && stderr(&o).contains("native backend"),
                    "{name:?}: {}",
                    stderr(&o)
                );
            }
            // Bind mode writes the workspace; overlay mode never does before a merge.
            assert_eq!(
                dir.join("made.txt").exists(),
                ok && mode == "bind",
                "{name:?} {mode}"
            );
            let _ = std::fs::remove_file(dir.join("made.txt"));
        }
    }
}

/// Builds `localhost/airlock-test-hostile-NAME` from the test image plus `lines` (Containerfile
/// instructions) with `files` in the build context; removed by the returned guard.
struct HostileImage(String);

impl HostileImage {
    fn build(name: &str, files: &[(&str, &Path)], lines: &str) -> HostileImage {
        let ctx = tempfile::tempdir().expect("context");
        for (dst, src) in files {
            std::fs::copy(src, ctx.path().join(dst)).expect("copy into the context");
        }
        std::fs::write(
            ctx.path().join("Containerfile"),
            format!("FROM {IMAGE}\n{lines}\n"),
        )
        .expect("containerfile");
        let tag = format!("localhost/airlock-test-hostile-{name}:latest");
        let ctx_s = ctx.path().display().to_string();
        let o = podman(&["build", "-q", "--format", "docker", "-t", &tag, &ctx_s])
            .expect("podman build");
        assert!(o.status.success(), "podman build {tag}: {}", stderr(&o));
        HostileImage(tag)
    }
}

impl Drop for HostileImage {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

/// A shared object whose constructor leaves `/tmp/PRELOAD_RAN` and writes an OSC 52 clipboard
/// write to every terminal it holds: what a hostile image's `ENV LD_PRELOAD` would run in pid 1.
fn preload_library(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("p.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\n\
         __attribute__((constructor)) static void p(void) {\n\
           FILE *f = fopen(\"/tmp/PRELOAD_RAN\", \"a\"); if (f) { fprintf(f, \"pid %d\\n\", getpid()); fclose(f); }\n\
           for (int fd = 0; fd < 3; fd++) if (isatty(fd)) write(fd, \"\\033]52;c;UFdORUQ=\\a\", 15);\n\
         }\n\
         unsigned int la_version(unsigned int v) { return v; }\n",
    )
    .expect("source");
    let so = dir.join("p.so");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(so)
}

/// A hostile or careless image's configuration never reaches pid 1 or the session: `ENV` that
/// loads code into pid 1 (`LD_PRELOAD`, `LD_AUDIT`, `LD_LIBRARY_PATH`, `GLIBC_TUNABLES`) is
/// sent empty, the image's other variables do not reach the command, and a `VOLUME` inside the
/// workspace (which would shadow its `.git` with an empty volume) is refused with an error
/// naming it.
#[test]
fn hostile_image_configuration_is_overridden() {
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let Some(so) = preload_library(ws.data()) else {
        airlock_test_support::skip("no C compiler (cc) to build the preload library");
        return;
    };
    for (name, env) in [
        ("preload", "ENV LD_PRELOAD=/p.so IMAGE_VAR=from-image"),
        ("audit", "ENV LD_AUDIT=/p.so"),
        (
            "libpath",
            "ENV LD_LIBRARY_PATH=/evil GLIBC_TUNABLES=glibc.malloc.check=3",
        ),
    ] {
        let lines = format!("COPY p.so /p.so\nCOPY p.so /evil/libc.so.6\n{env}");
        let img = HostileImage::build(name, &[("p.so", &so)], &lines);
        let o = ws.sh_image(
            &img.0,
            "cat /tmp/PRELOAD_RAN 2>/dev/null || echo clean; echo \"var=$IMAGE_VAR\"; \
             echo \"ld=$LD_PRELOAD$LD_AUDIT$LD_LIBRARY_PATH\"",
        );
        let out = stdout(&o);
        assert_eq!(
            out,
            "clean\nvar=\nld=\n",
            "{name}: the image's ENV reached pid 1 or the command: {}",
            stderr(&o)
        );
    }
    std::fs::create_dir(ws.path().join(".git")).expect(".git");
    std::fs::write(ws.path().join(".git/HEAD"), "ref: refs/heads/main\n").expect("HEAD");
    let vol = format!("VOLUME {}/.git", ws.path().display());
    let img = HostileImage::build("volume", &[], &vol);
    let o = ws.sh_image(&img.0, "cat .git/HEAD");
    o.assert_code(125);
    assert!(
        stderr(&o).contains("VOLUME") && stderr(&o).contains(".git"),
        "{}",
        stderr(&o)
    );
    // A VOLUME outside every mount is the image's own and harmless: the session runs.
    let img = HostileImage::build("volume-elsewhere", &[], "VOLUME /data");
    let o = ws.sh_image(&img.0, "cat .git/HEAD");
    assert_eq!(stdout(&o), "ref: refs/heads/main\n", "{}", stderr(&o));
    // USER, WORKDIR, ENTRYPOINT, CMD, HEALTHCHECK and STOPSIGNAL are airlock's, not the image's.
    // (Podman runs healthchecks from systemd timers: where there is no systemd, as in CI's
    // containers, the HEALTHCHECK part of this check holds either way.)
    let lines = format!(
        "USER 0:0\nWORKDIR /etc\nENTRYPOINT [\"/bin/sh\", \"-c\", \"touch {ws}/ENTRYPOINT_RAN\"]\n\
         CMD [\"{ws}/CMD_RAN\"]\nSTOPSIGNAL SIGSTOP\n\
         HEALTHCHECK --interval=1s CMD touch {ws}/HEALTHCHECK_RAN",
        ws = ws.path().display()
    );
    let img = HostileImage::build("config", &[], &lines);
    let o = ws.sh_image(&img.0, "id -u; pwd; sleep 3");
    assert_eq!(
        stdout(&o),
        format!("{}\n{}\n", nix::unistd::geteuid(), ws.path().display()),
        "{}",
        stderr(&o)
    );
    for f in ["ENTRYPOINT_RAN", "CMD_RAN", "HEALTHCHECK_RAN"] {
        assert!(!ws.path().join(f).exists(), "the image's {f} ran");
    }
}

/// The user's terminal never goes into the container: run under a terminal (`script`), pid 1's
/// stdin, stdout and stderr are pipes or /dev/null that airlock relays (output through the
/// terminal filter), not the terminal, which code running in pid 1 before its lockdown (an
/// image's `LD_PRELOAD`, once) could write raw escapes to.
#[test]
fn the_users_terminal_never_enters_the_container() {
    if !ready() {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        airlock_test_support::skip("script (util-linux) is not installed");
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let inner = format!(
        "'{}' run --backend podman --mode bind --image {IMAGE} -- sh -c 'touch started; sleep 30'",
        bin().display()
    );
    let mut child = Command::new("script")
        .current_dir(ws.path())
        .env("XDG_DATA_HOME", ws.data())
        .env_remove("AIRLOCK_RUNTIME")
        .env_remove("AIRLOCK_IMAGE")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("script");
    let started = ws.path().join("started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(started.exists(), "the command never started");
    // This test's container: the one with the workspace among its mounts.
    let o = podman(&["ps", "-q", "--filter", &format!("label={LABEL}")]).expect("ps");
    let ws_path = ws.path().display().to_string();
    let pid = stdout(&o).lines().find_map(|id| {
        let o = podman(&[
            "inspect",
            "-f",
            "{{.State.Pid}}{{range .Mounts}} {{.Destination}}{{end}}",
            id,
        ])?;
        let text = stdout(&o);
        let mut words = text.split_whitespace();
        let pid = words.next()?.to_string();
        words.any(|d| d == ws_path).then_some(pid)
    });
    let pid = pid.expect("the session's container");
    let mut checked = 0;
    for fd in 0..3 {
        // Rootless, pid 1 (not dumpable) is readable only from the engine's user namespace.
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|t| t.display().to_string())
            .or_else(|e| {
                podman(&["unshare", "readlink", &format!("/proc/{pid}/fd/{fd}")])
                    .filter(|o| o.status.success())
                    .map(|o| stdout(&o).trim().to_string())
                    .ok_or(e)
            });
        match link {
            Ok(t) => {
                assert!(
                    !t.starts_with("/dev/pts") && !t.starts_with("/dev/tty") && t != "/dev/console",
                    "pid 1 of the container holds the terminal as fd {fd}: {t}"
                );
                checked += 1;
            }
            Err(e) => airlock_test_support::skip(&format!(
                "cannot read /proc/{pid}/fd/{fd} of the container's pid 1: {e}"
            )),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        checked == 3 || !is_root(),
        "only {checked} descriptors checked"
    );
}

/// Overlay sessions of the container backend can be deleted: the overlay's scratch directory
/// (which rootless Podman leaves owned by a subordinate uid, mode 000) is removed when the
/// session ends, and `airlock rm` / `airlock prune` delete what a killed airlock left, through
/// the engine's user namespace when they must.
#[test]
fn container_overlay_sessions_can_be_removed() {
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let sessions = ws.data().join("airlock/sessions");
    let newest = |ws: &Ws| -> Option<String> {
        let o = ws.airlock().args(["ls", "--all", "--json"]).run();
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        rows[0]["id"].as_str().map(str::to_string)
    };
    let overlay = |script: &str| {
        let mut c = ws.airlock();
        c.args([
            "run",
            "--backend",
            "podman",
            "--mode",
            "overlay",
            "--image",
            IMAGE,
        ])
        .args(["--", "sh", "-c", script]);
        c
    };
    // Ended normally: no scratch left, and rm deletes it.
    let o = overlay("rm hello.txt; echo new > n.txt").run();
    o.assert_code(0);
    let id = newest(&ws).expect("the session");
    assert!(!sessions.join(&id).join("work").exists(), "scratch left");
    let o = ws.airlock().args(["rm", "--force", &id]).run();
    assert_eq!(o.status.code(), Some(0), "rm: {}", stderr(&o));
    assert!(!sessions.join(&id).exists(), "rm left {id}");
    // airlock killed mid-session: its scratch stays as the engine left it; rm and prune delete.
    for how in ["rm", "prune"] {
        // prune deletes only sessions without changes: that one writes nothing.
        let script = if how == "rm" {
            "echo x > a.txt; sleep 60"
        } else {
            "sleep 60"
        };
        let mut child = overlay(script)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let id = {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let id = newest(&ws).unwrap_or_default();
                let running = !id.is_empty()
                    && podman(&["ps", "-q", "--filter", &format!("label={LABEL}={id}")])
                        .is_some_and(|o| !stdout(&o).trim().is_empty());
                if running || std::time::Instant::now() > deadline {
                    break id;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        };
        std::thread::sleep(std::time::Duration::from_secs(1));
        let _ = child.kill();
        let _ = child.wait();
        // The container ends itself once airlock's end of the control socket is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let o = podman(&["ps", "-q", "--filter", &format!("label={LABEL}={id}")]).expect("ps");
            if stdout(&o).trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let o = if how == "rm" {
            ws.airlock().args(["rm", "--force", &id]).output()
        } else {
            ws.airlock().args(["prune"]).output()
        }
        .expect("remove");
        assert_eq!(
            o.status.code(),
            Some(0),
            "{how}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            !sessions.join(&id).exists(),
            "{how} left {id}: {}",
            stderr(&o)
        );
    }
}

/// A hidden path airlock cannot examine on the host (under a directory of mode 000, which the
/// command could chmod inside a bind workspace) stops the start with an error naming it: a
/// hide is never skipped because its kind is unknown.
#[test]
fn a_hide_that_cannot_be_judged_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    if !ready() {
        return;
    }
    if is_root() {
        airlock_test_support::skip("root examines a mode-000 directory; run as a user");
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let locked = ws.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::write(locked.join("secret"), "TOPSECRET\n").expect("write");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let pol = ws.data().join("hide.toml");
    std::fs::write(
        &pol,
        format!(
            "[filesystem]\nhide = [\"{}\"]\n",
            locked.join("secret").display()
        ),
    )
    .expect("policy");
    let o = ws.sh_with(
        &["--policy", &pol.display().to_string()],
        "chmod 700 locked; cat locked/secret",
    );
    let _ = std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700));
    assert!(
        !stdout(&o).contains("TOPSECRET"),
        "the hidden file was read"
    );
    o.assert_code(125);
    assert!(
        stderr(&o).contains("cannot hide") && stderr(&o).contains("locked/secret"),
        "{}",
        stderr(&o)
    );
}

/// Without a pty for the command (stdin not a terminal) but a terminal on stdout, what the
/// container writes reaches the terminal through airlock's relay and its filter, whole: a
/// clipboard write (OSC 52) is dropped, the text around it and a long output's tail arrive.
#[test]
fn relayed_terminal_output_is_filtered_and_whole() {
    if !ready() {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        airlock_test_support::skip("script (util-linux) is not installed");
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let inner = format!(
        "'{}' run --backend podman --mode bind --image {IMAGE} -- sh -c \
         'seq 1 20000 | tail -n 1; printf \"a\\033]52;c;UFdORUQ=\\007b\\n\"; \
          printf \"c\\033]52;c;UFdORUQ=\\007d\\n\" >&2' < /dev/null",
        bin().display()
    );
    let o = Command::new("script")
        .current_dir(ws.path())
        .env("XDG_DATA_HOME", ws.data())
        .env_remove("AIRLOCK_RUNTIME")
        .env_remove("AIRLOCK_IMAGE")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .run();
    let out = stdout(&o);
    assert!(
        !out.contains("]52;"),
        "a clipboard write reached the terminal: {out:?}"
    );
    for want in ["20000\r\n", "ab\r\n", "cd\r\n"] {
        assert!(out.contains(want), "missing {want:?}: {out:?}");
    }
}

/// `airlock image status --json` for `ws` with `base` as `AIRLOCK_IMAGE_BASE` (none: the
/// default base): the JSON object.
fn image_status(ws: &Ws, base: Option<&str>) -> serde_json::Value {
    let mut c = ws.airlock();
    c.args(["image", "status", "--json"])
        .env_remove("AIRLOCK_IMAGE_BASE");
    if let Some(b) = base {
        c.env("AIRLOCK_IMAGE_BASE", b);
    }
    let o = c.run();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("image status JSON")
}

/// Every image name in the engine, and how many dangling (`<none>`) images there are.
fn image_names() -> (Vec<String>, usize) {
    let o = podman(&["images", "-a", "--format", "{{.Repository}}:{{.Tag}}"]).expect("images");
    let all: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    let dangling = all.iter().filter(|n| n.starts_with("<none>")).count();
    (
        all.into_iter()
            .filter(|n| !n.starts_with("<none>"))
            .collect(),
        dangling,
    )
}

/// The first `airlock run --backend podman` without `--image` builds airlock's default image
/// (here through debootstrap: no registry), with progress on stderr; the command finds git,
/// Node.js and both agents' CLIs at the pinned versions; the next run reuses the image (same
/// tag, no build). The image stays cached by its tag, so a machine builds it once.
#[test]
fn default_image_is_built_once_and_has_the_agents() {
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let before = image_status(&ws, None);
    let tag = before["tag"].as_str().expect("tag").to_string();
    assert!(tag.starts_with("localhost/airlock-default:"), "{before}");
    let script = "git --version; node --version; claude --version; codex --version; id -u";
    let run = || {
        ws.airlock()
            .env_remove("AIRLOCK_IMAGE_BASE")
            .args(["run", "--backend", "podman", "--mode", "bind", "--"])
            .args(["sh", "-c", script])
            .run()
    };
    if before["present"] == false && !airlock_test_support::is_root() {
        // As a user without a registry: debootstrap needs root, so the error names the ways
        // out (scripts/test.sh copies root's build into the test user's store first).
        let o = run();
        o.assert_code(125);
        let e = stderr(&o);
        for want in [
            "--image",
            "debootstrap",
            "sudo airlock image build",
            "podman load",
        ] {
            assert!(e.contains(want), "{want:?} missing: {e}");
        }
        assert_eq!(image_status(&ws, None)["present"], false);
        assert_nothing_left("rootless default image without a base");
        airlock_test_support::skip(&format!(
            "{tag} is not in this user's store and a user cannot make its base without a \
             registry: load root's build (scripts/test.sh does) to run the agents in it"
        ));
        return;
    }
    let started = std::time::Instant::now();
    let o = run();
    let (out, err) = (stdout(&o), stderr(&o));
    o.assert_code(0);
    if before["present"] == false {
        eprintln!("built {tag} in {:?}", started.elapsed());
        assert!(
            err.contains(&format!("building the default image {tag}")) && err.contains("STEP "),
            "no progress naming the steps: {err}"
        );
    }
    for want in [
        "git version",
        "v18.",
        "2.1.112 (Claude Code)",
        "codex-cli 0.171.0",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}\n{err}");
    }
    // The command runs as the caller's uid, not as root or the image's user.
    let uid = nix::unistd::geteuid().to_string();
    assert_eq!(out.lines().last(), Some(uid.as_str()), "{out}");
    assert_nothing_left("default image run");

    let o = run();
    o.assert_code(0);
    let err = stderr(&o);
    assert!(
        !err.contains("building"),
        "rebuilt on the second run: {err}"
    );
    let after = image_status(&ws, None);
    assert_eq!(after["tag"], before["tag"]);
    assert_eq!(after["present"], true, "{after}");
    // Another input is another tag (and not built).
    let other = image_status(&ws, Some("registry.example/library/debian:bookworm-slim"));
    assert_ne!(other["tag"], before["tag"]);
    assert_eq!(other["present"], false, "{other}");
    assert_nothing_left("default image second run");
}

/// No base and no way to make one, or a build that fails: exit 125, an error naming the image,
/// the engine and the ways out, and nothing left: no image tagged (default or base), no new
/// dangling image, no container, no build directory.
#[test]
fn default_image_failures_leave_nothing() {
    if !ready() {
        return;
    }
    let _l = locks();
    let ws = Ws::new();
    let cache = tempfile::tempdir().expect("cache");
    let fail = |base: &str, debootstrap: &str| {
        let o = ws
            .airlock()
            .env("AIRLOCK_IMAGE_BASE", base)
            .env("AIRLOCK_DEBOOTSTRAP", debootstrap)
            .env("XDG_CACHE_HOME", cache.path())
            .args(["run", "--backend", "podman", "--mode", "bind", "--", "true"])
            .run();
        let e = stderr(&o);
        o.assert_code(125);
        let tag = image_status(&ws, Some(base))["tag"]
            .as_str()
            .expect("tag")
            .to_string();
        (e, tag)
    };
    let (names, dangling) = image_names();
    let cases = [
        // A Debian base that cannot be pulled, debootstrap disabled: both ways out named.
        (
            "localhost/airlock-test-unreachable/debian:bookworm-slim",
            "",
            vec!["--image", "debootstrap", "podman"],
        ),
        // A debootstrap that does not exist: the same.
        (
            "localhost/airlock-test-unreachable/debian:bookworm-slim",
            "/nonexistent/debootstrap",
            vec!["--image", "debootstrap"],
        ),
        // Not a Debian base: debootstrap cannot stand in, and the error says so (as a user it
        // cannot run at all, and the error says how to get root's build instead).
        (
            "localhost/airlock-test-no-such-base:1",
            "/usr/sbin/debootstrap",
            if airlock_test_support::is_root() {
                vec!["--image", "debootstrap makes only"]
            } else {
                vec!["--image", "needs root", "podman load"]
            },
        ),
        // A base that exists but cannot run the recipe (busybox has no apt-get): the build
        // fails with its last lines, and nothing is tagged.
        (IMAGE, "", vec!["apt-get", "nothing was tagged", "--image"]),
    ];
    for (base, debootstrap, says) in cases {
        let (e, tag) = fail(base, debootstrap);
        if base != IMAGE {
            assert!(e.contains(base), "{base}: the base is not named: {e}");
        }
        for s in says {
            assert!(e.contains(s), "{base} {debootstrap:?}: {s:?} missing: {e}");
        }
        let (now, now_dangling) = image_names();
        assert_eq!(
            now, names,
            "{base}: images changed (want none tagged, {tag})"
        );
        assert_eq!(now_dangling, dangling, "{base}: a dangling image was left");
        assert_nothing_left(base);
        let left: Vec<_> = std::fs::read_dir(cache.path().join("airlock/image-build"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n == "lock"),
            "{base}: build directories left: {left:?}"
        );
    }
}
