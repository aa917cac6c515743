//! The container backend against a real engine (Podman, rootful as root and rootless as an
//! unprivileged user; `AIRLOCK_TEST_RUNTIME=runsc` for gVisor). Needs the local test image that
//! scripts/container-setup.sh imports (busybox on an empty root; no registry). A host without
//! Podman or the image skips with the reason printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use airlock_container::{ContainerOptions, Discovery, Engine, EngineKind, Limits, Runtime};
use airlock_sandbox::{Rlimits, SandboxSpec, WorkspaceView};

const IMAGE: &str = "localhost/airlock-test-busybox:latest";

fn bin() -> PathBuf {
    std::env::var_os("AIRLOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_airlock")))
}

fn runtime() -> Option<Runtime> {
    std::env::var("AIRLOCK_TEST_RUNTIME")
        .ok()
        .and_then(|r| Runtime::parse(&r))
}

/// The engine, or `None` (with the reason printed) when this host has no Podman or no image.
fn engine() -> Option<Engine> {
    let d = Discovery::from_env();
    if d.which("podman").is_none() {
        eprintln!("skipping: podman is not installed (scripts/container-setup.sh installs it)");
        return None;
    }
    match Engine::connect(EngineKind::Podman, runtime(), &d) {
        Ok(e) => Some(e),
        Err(e) => panic!("podman is installed but airlock cannot use it: {e}"),
    }
}

struct Env {
    dir: tempfile::TempDir,
    ws: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::Builder::new()
        .prefix("airlock-ctr-")
        .tempdir()
        .expect("tempdir");
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).expect("ws");
    Env { dir, ws }
}

fn spec(ws: &Path, argv: &[&str]) -> SandboxSpec {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    SandboxSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("PATH".into(), "/bin".into()),
            ("HOME".into(), "/home/agent".into()),
            ("ALLOWED".into(), "yes".into()),
        ],
        cwd: PathBuf::from("/workspace"),
        uid,
        gid,
        hostname: "airlock".into(),
        binds: Vec::new(),
        workspace: Some(WorkspaceView::Bind {
            source: ws.to_path_buf(),
            target: PathBuf::from("/workspace"),
        }),
        home: PathBuf::from("/home/agent"),
        home_bytes: 16 << 20,
        tmp_bytes: 16 << 20,
        shm_bytes: 16 << 20,
        hide: Vec::new(),
        files: Vec::new(),
        rlimits: Rlimits::default(),
        net: None,
        tty: None,
    }
}

fn options(env: &Env) -> ContainerOptions {
    ContainerOptions {
        image: IMAGE.into(),
        exe: bin(),
        limits: Limits::default(),
        state_dir: env.dir.path().to_path_buf(),
        name: None,
        labels: HashMap::from([("airlock.test".to_string(), "1".to_string())]),
        unix_refusals: None,
    }
}

/// Runs `script` in a container; its exit status and what it wrote to /workspace/out.
fn run_script(script: &str) -> Option<(i32, String)> {
    let engine = engine()?;
    let env = env();
    let s = spec(&env.ws, &["sh", "-c", script]);
    let sandbox = airlock_container::launch(engine, &s, options(&env)).expect("launch");
    let status = sandbox.wait().expect("wait");
    let out = std::fs::read_to_string(env.ws.join("out")).unwrap_or_default();
    Some((status, out))
}

#[test]
fn exit_status_and_env_allowlist() {
    let Some((status, out)) = run_script("env > /workspace/out; exit 7") else {
        return;
    };
    assert_eq!(status, 7);
    assert!(out.contains("ALLOWED=yes"), "{out}");
    for leaked in ["container=", "HOSTNAME=", "TERM="] {
        assert!(
            !out.contains(leaked),
            "{leaked} leaked into the command: {out}"
        );
    }
}
