//! The per-test directories an `airlock` integration test runs in: a workspace (the current
//! directory of the command) and a private session store (`XDG_DATA_HOME`), both removed when
//! the fixture is dropped, and the airlock binary to run there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// The airlock binary a test runs: `AIRLOCK_BIN` when set (scripts/test.sh sets it when it
/// re-runs the tests as another user from a world-readable copy), else `built`, the path cargo
/// gave the test (`env!("CARGO_BIN_EXE_airlock")`).
pub fn airlock_bin(built: &str) -> PathBuf {
    std::env::var_os("AIRLOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(built))
}

/// A temporary workspace and session store for one test.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Workspace {
    /// An empty workspace `/tmp/PREFIX-…` and store `/tmp/PREFIX-data-…`.
    ///
    /// # Panics
    /// When a temporary directory cannot be made.
    pub fn new(prefix: &str) -> Workspace {
        let mk = |p: String| {
            tempfile::Builder::new()
                .prefix(&p)
                .tempdir()
                .expect("make a temporary directory")
        };
        Workspace {
            dir: mk(format!("{prefix}-")),
            data: mk(format!("{prefix}-data-")),
        }
    }

    /// The same, with the invoking user's Podman image store linked into the session store
    /// ([`crate::link_container_store`]), for tests of the container backends.
    pub fn with_container_store(prefix: &str) -> Workspace {
        let ws = Workspace::new(prefix);
        crate::link_container_store(ws.data());
        ws
    }

    /// Writes `contents` to `name` in the workspace and returns the workspace.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn with_file(self, name: &str, contents: &str) -> Workspace {
        std::fs::write(self.path().join(name), contents).expect("write a workspace file");
        self
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The session store (`XDG_DATA_HOME` of every command).
    pub fn data(&self) -> &Path {
        self.data.path()
    }

    /// `bin` to run in the workspace: stdin from /dev/null, the private session store, and none
    /// of the caller's settings that would change what a test sees (`AIRLOCK_RUNTIME`,
    /// `AIRLOCK_IMAGE`, and the desktop bus, so tests send no notifications; the notification
    /// tests set their own).
    pub fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.current_dir(self.path())
            .stdin(Stdio::null())
            .env("XDG_DATA_HOME", self.data())
            .env_remove("AIRLOCK_RUNTIME")
            .env_remove("AIRLOCK_IMAGE")
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        c
    }
}

/// Held by every test that uses Podman in one test binary: their "nothing left behind" checks
/// look at every container and Podman service of the user, so no two such tests may overlap.
/// A test that panicked while holding it does not poison it for the others.
pub fn podman_lock() -> MutexGuard<'static, ()> {
    static PODMAN: Mutex<()> = Mutex::new(());
    PODMAN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held by every test that uses the tests' Docker daemon (scripts/docker-setup.sh) in one test
/// binary, for the same reason as [`podman_lock`]: their "nothing left behind" checks look at
/// every container and volume of that daemon. Take it after [`podman_lock`] when holding both.
pub fn docker_lock() -> MutexGuard<'static, ()> {
    static DOCKER: Mutex<()> = Mutex::new(());
    DOCKER.lock().unwrap_or_else(|e| e.into_inner())
}
