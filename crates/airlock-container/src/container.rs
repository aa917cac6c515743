//! One sandbox as one container: the engine request built from a [`SandboxSpec`], the start,
//! the control-socket handshake with pid 1 (`airlock __container-init`), and the container's
//! removal whatever happens.
//!
//! What the spec asks for and how the container gives it:
//!
//! | spec                      | container                                                    |
//! |---------------------------|--------------------------------------------------------------|
//! | root view                 | the image, read-only (`ReadonlyRootfs`)                      |
//! | `binds` (not optional)    | bind mounts; optional ones are the host's system directories, |
//! |                           | which the image replaces                                     |
//! | workspace `Bind`          | a read-write bind                                            |
//! | workspace `Overlay`,      | Podman's overlay mount with the session's upper/work dirs;   |
//! | `overlays` (caches)       | on Docker an anonymous `local` volume of type overlay        |
//! | home, /tmp, /dev/shm      | tmpfs of the spec's sizes                                    |
//! | `hide`                    | an empty unreadable file or tmpfs over the path              |
//! | `files`                   | written to the session's private directory, bound read-only  |
//! | uid/gid                   | `User`, and `keep-id` on rootless Podman                     |
//! | env                       | passed by pid 1 to the command only (the container's is empty)|
//! | net                       | `--network none`; listeners made inside and passed out       |
//! | lockdown                  | `--cap-drop ALL`, no-new-privileges, the seccomp profile, and |
//! |                           | pid 1's own (Landlock, native seccomp) before the command    |

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_sandbox::message::ChannelListener;
use airlock_sandbox::unix_gate::UnixRefusal;
use airlock_sandbox::{RelayedNet, RemoteInit, Sandbox, SandboxSpec, WorkspaceView, RELAY_SOCKETS};
use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, HostConfigCgroupnsModeEnum, Mount, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    LogsOptionsBuilder,
};
use futures_util::StreamExt;
use nix::sys::signal::Signal;

use crate::engine::{Engine, EngineKind, Runtime};
use crate::error::ContainerError;

/// Where airlock's own files appear inside the container.
const AIRLOCK_DIR: &str = "/.airlock";
/// How long pid 1 may take to connect after the container started.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// cgroup limits for the container (the native backend's `CgroupLimits`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// CPUs (fractional).
    pub cpus: Option<f64>,
}

impl Limits {
    fn any(&self) -> bool {
        self.memory_bytes.is_some() || self.pids.is_some() || self.cpus.is_some()
    }
}

/// Everything about a container that is not in the spec.
#[derive(Debug)]
pub struct ContainerOptions {
    /// The image (`--image`), which must be in the engine's local store.
    pub image: String,
    /// The airlock binary on the host, bind-mounted read-only as pid 1.
    pub exe: PathBuf,
    pub limits: Limits,
    /// A private directory of the session (mode 0700) for the control socket and the generated
    /// files; removed with the container.
    pub state_dir: PathBuf,
    /// Container name (for `podman ps`); the engine picks one when `None`.
    pub name: Option<String>,
    /// Labels added to the container (the session id, for clean-up and `airlock ls`).
    pub labels: HashMap<String, String>,
    /// Where the connect gate reports refused unix-socket connects.
    pub unix_refusals: Option<std::sync::mpsc::Sender<UnixRefusal>>,
}

/// Why this engine will not enforce cgroup limits here, if it will not.
pub fn limits_unenforced(engine: &Engine) -> Option<String> {
    if let Some(why) = engine.limits_ignored() {
        return Some(why.to_string());
    }
    let f = engine.facts();
    if f.rootless && f.cgroup_version != "2" {
        return Some(format!(
            "rootless {} on cgroup v{} (a v1 or hybrid hierarchy) cannot delegate cgroups to an \
             unprivileged user and silently ignores memory, pids and cpu limits",
            engine.kind().name(),
            if f.cgroup_version.is_empty() {
                "1"
            } else {
                &f.cgroup_version
            }
        ));
    }
    let missing: Vec<&str> = [
        (f.memory_limit, "memory"),
        (f.pids_limit, "pids"),
        (f.cpu_limit, "cpu"),
    ]
    .iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, n)| *n)
    .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "the engine reports no {} limit support",
            missing.join(", ")
        ))
    }
}

fn check_limits(engine: &Engine, limits: &Limits) -> Result<(), ContainerError> {
    if !limits.any() {
        return Ok(());
    }
    if let (Some(p), Some(why)) = (limits.pids, engine.pids_limit_unenforced()) {
        return Err(ContainerError::Unenforceable {
            engine: engine.kind().name(),
            what: format!("the limit asked for (pids {p})"),
            why: why.into(),
            hint: "drop the pids limit ([limits] in the config, --pids)".into(),
        });
    }
    let Some(why) = limits_unenforced(engine) else {
        return Ok(());
    };
    let mut asked = Vec::new();
    if let Some(m) = limits.memory_bytes {
        asked.push(format!("memory {m} bytes"));
    }
    if let Some(p) = limits.pids {
        asked.push(format!("pids {p}"));
    }
    if let Some(c) = limits.cpus {
        asked.push(format!("cpus {c}"));
    }
    Err(ContainerError::Unenforceable {
        engine: engine.kind().name(),
        what: format!("limits asked for ({})", asked.join(", ")),
        why,
        hint: "run as root, on a cgroup v2 host with delegation, or with the native backend; \
               or drop the limits ([limits] in the config, --memory/--pids/--cpus)"
            .into(),
    })
}

/// What of the image's configuration airlock overrides or refuses (`check_image`).
#[derive(Debug, Default)]
struct ImageFacts {
    /// The names of the image's `ENV` variables: each is sent empty, so that none reaches pid 1.
    env_keys: Vec<String>,
    /// The image's `VOLUME`s (paths inside).
    volumes: Vec<PathBuf>,
}

fn check_image(engine: &Engine, image: &str) -> Result<ImageFacts, ContainerError> {
    match engine.rt.block_on(engine.client.inspect_image(image)) {
        Ok(inspect) => {
            let config = inspect.config.unwrap_or_default();
            Ok(ImageFacts {
                env_keys: config
                    .env
                    .unwrap_or_default()
                    .iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .map_or(kv.as_str(), |(k, _)| k)
                            .to_string()
                    })
                    .collect(),
                volumes: config
                    .volumes
                    .unwrap_or_default()
                    .into_iter()
                    .map(PathBuf::from)
                    .collect(),
            })
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(ContainerError::ImageMissing {
            engine: engine.kind().name(),
            socket: engine.socket().to_path_buf(),
            image: image.into(),
            hint: format!(
                "build or import it first (`{} images` lists what is there); airlock pulls \
                 nothing",
                engine.kind().name()
            ),
        }),
        Err(e) => Err(engine.error(format!("inspect image {image}"), &e)),
    }
}

/// The container's environment: every variable the image sets and every loader variable
/// ([`airlock_sandbox::LOADER_ENV`]), empty. The engines merge the image's `ENV` under the request's, so this is
/// how none of it reaches pid 1; pid 1 gives the command exactly the spec's.
fn container_env(facts: &ImageFacts) -> Vec<String> {
    let mut keys: Vec<&str> = airlock_sandbox::LOADER_ENV.to_vec();
    keys.extend(facts.env_keys.iter().map(String::as_str));
    keys.sort_unstable();
    keys.dedup();
    keys.iter()
        .filter(|k| !k.is_empty())
        .map(|k| format!("{k}="))
        .collect()
}

/// Refuses an image whose `VOLUME`s would shadow part of a mount airlock makes (a `VOLUME` on
/// the workspace's `.git` becomes an empty volume over it) or land in airlock's own directory.
/// A volume exactly on a mount point is replaced by airlock's mount; one elsewhere is the
/// image's own (removed with the container).
///
/// # Errors
/// Names the image, the volume and the mount it falls in.
fn check_volumes(image: &str, facts: &ImageFacts, layout: &Layout) -> Result<(), ContainerError> {
    let targets = layout
        .mounts
        .iter()
        .filter_map(|m| m.target.clone())
        .chain(layout.tmpfs.keys().cloned())
        .chain(
            layout
                .binds
                .iter()
                .filter_map(|b| b.split(':').nth(1).map(str::to_string)),
        )
        .chain([AIRLOCK_DIR.to_string()]);
    for t in targets {
        let t = Path::new(&t);
        if let Some(v) = facts.volumes.iter().find(|v| v.starts_with(t) && *v != t) {
            return Err(ContainerError::Unsupported(format!(
                "image {image} declares VOLUME {}, inside {} which airlock mounts: it would \
                 shadow part of it; rebuild the image without that VOLUME",
                v.display(),
                t.display()
            )));
        }
    }
    Ok(())
}

/// The shared libraries this airlock process runs with (from /proc/self/maps), so the same
/// binary runs as pid 1 in an image with another libc or none: `(loader, libraries)`.
fn runtime_libraries() -> Result<(PathBuf, Vec<PathBuf>), ContainerError> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| ContainerError::io("cannot read /proc/self/maps", e))?;
    let mut libs: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if path.starts_with('/')
            && name.contains(".so")
            && !libs.iter().any(|l| l == Path::new(path))
        {
            libs.push(PathBuf::from(path));
        }
    }
    let loader = libs
        .iter()
        .find(|l| {
            l.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ld-linux") || n.starts_with("ld-musl"))
        })
        .cloned();
    match loader {
        Some(l) => Ok((l, libs)),
        None => Err(ContainerError::Unsupported(
            "cannot find the dynamic loader airlock runs with in /proc/self/maps; a static \
             airlock build runs in containers without one"
                .into(),
        )),
    }
}

/// The argv prefix that runs a copy of this airlock binary bound at `inside` in a container of
/// this backend: its own loader and libraries, whatever libc the image has (for `airlock
/// selftest`, whose probes are airlock itself).
pub fn run_inside_prefix(inside: &Path) -> Result<Vec<String>, ContainerError> {
    let (loader, _) = runtime_libraries()?;
    let lib = Path::new(AIRLOCK_DIR).join("lib");
    Ok(vec![
        lib.join(loader.file_name().unwrap_or_default())
            .display()
            .to_string(),
        "--library-path".into(),
        lib.display().to_string(),
        inside.display().to_string(),
    ])
}

fn bind(source: &Path, target: &Path, writable: bool) -> Mount {
    Mount {
        target: Some(target.display().to_string()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(!writable),
        ..Mount::default()
    }
}

/// Characters that Podman's volume syntax (`SRC:DST:OPTIONS`) or the overlay mount's options
/// (`lowerdir=…,upperdir=…`, `\\` escapes, one option per line in crun's log) would read as
/// structure rather than as part of a path.
const OVERLAY_SEPARATORS: &[char] = &[':', ',', '\n', '\\', '\0'];

/// Characters Podman's compat API reads as structure in a bind or tmpfs mount: it turns the
/// request's structured `Mounts` into `type=bind,source=…,target=…` strings and `Tmpfs` into
/// `PATH:OPTIONS` (Podman 4.3, `pkg/api/handlers/compat/containers_create.go`).
const PODMAN_MOUNT_SEPARATORS: &[char] = &[',', ':', '\n', '\0'];

/// Refuses, for Podman, a mount whose path holds one of [`PODMAN_MOUNT_SEPARATORS`].
///
/// # Errors
/// Names the path and the character, and what to do.
fn check_podman_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<(), ContainerError> {
    for text in paths {
        if let Some(c) = text.chars().find(|c| PODMAN_MOUNT_SEPARATORS.contains(c)) {
            return Err(ContainerError::Unsupported(format!(
                "{text:?} holds {c:?}, which Podman reads as a mount option separator; rename \
                 the directory, or use the native backend"
            )));
        }
    }
    Ok(())
}

/// Podman's overlay volume `LOWER:TARGET:O,upperdir=UPPER,workdir=WORK` (the compat API has no
/// structured form of it).
///
/// # Errors
/// A path holds one of [`OVERLAY_SEPARATORS`]: it would be parsed as more options (a second
/// `upperdir`, say) by Podman or the kernel, so it is refused, naming the path.
fn overlay_volume(
    lower: &Path,
    target: &Path,
    upper: &Path,
    work: &Path,
) -> Result<String, ContainerError> {
    for p in [lower, target, upper, work] {
        let text = p.to_str().ok_or_else(|| {
            ContainerError::Unsupported(format!(
                "{} is not UTF-8, which Podman's overlay mounts cannot name; use --mode bind \
                 or the native backend",
                p.display()
            ))
        })?;
        if let Some(c) = text.chars().find(|c| OVERLAY_SEPARATORS.contains(c)) {
            return Err(ContainerError::Unsupported(format!(
                "{text:?} holds {c:?}, which Podman's overlay mounts read as an option \
                 separator; rename the directory, or use --mode bind or the native backend"
            )));
        }
    }
    Ok(format!(
        "{}:{}:O,upperdir={},workdir={}",
        lower.display(),
        target.display(),
        upper.display(),
        work.display()
    ))
}

/// Docker's form of an overlay view: an anonymous volume of the `local` driver that the daemon
/// mounts as `overlay` with the session's layers (the `docker volume create --opt type=overlay`
/// of the local driver's documentation), not populated from the image (`NoCopy`). The engine
/// removes it with the container (`AutoRemove`, and `v` on forced removal).
///
/// # Errors
/// A path holds one of [`OVERLAY_SEPARATORS`] (the kernel would read it as more overlay
/// options) or is not UTF-8: refused, naming the path ([`overlay_volume`]'s checks).
fn docker_overlay(
    lower: &Path,
    target: &Path,
    upper: &Path,
    work: &Path,
) -> Result<Mount, ContainerError> {
    // The same checks as Podman's form; its text is not used.
    overlay_volume(lower, target, upper, work)?;
    let options = HashMap::from([
        ("type".to_string(), "overlay".to_string()),
        ("device".to_string(), "overlay".to_string()),
        (
            "o".to_string(),
            format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ),
        ),
    ]);
    Ok(Mount {
        target: Some(target.display().to_string()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".into()),
                options: Some(options),
            }),
            ..MountVolumeOptions::default()
        }),
        ..Mount::default()
    })
}

/// What a path inside the container shows, by the deepest mount of the spec over it.
#[derive(Debug, PartialEq)]
enum Origin {
    /// A host path (a bind's source below the mount point).
    Host(PathBuf),
    /// An overlay of host directories: the session's upper layer over the host's lower one.
    Overlay { upper: PathBuf, lower: PathBuf },
    /// Nothing of the host: the image, or a tmpfs or generated file of airlock's.
    Private,
}

/// The mounts of `spec` with what each shows: `(target inside, origin of the target)`.
fn mount_origins(spec: &SandboxSpec) -> Vec<(PathBuf, Origin)> {
    let mut out = vec![
        (PathBuf::from("/tmp"), Origin::Private),
        (spec.home.clone(), Origin::Private),
    ];
    for b in spec.binds.iter().filter(|b| !b.optional) {
        out.push((b.target.clone(), Origin::Host(b.source.clone())));
    }
    match &spec.workspace {
        Some(WorkspaceView::Bind { source, target }) => {
            out.push((target.clone(), Origin::Host(source.clone())));
        }
        Some(WorkspaceView::Overlay {
            lower,
            upper,
            target,
            ..
        }) => out.push((
            target.clone(),
            Origin::Overlay {
                upper: upper.clone(),
                lower: lower.clone(),
            },
        )),
        None => {}
    }
    for o in &spec.overlays {
        out.push((
            o.target.clone(),
            Origin::Overlay {
                upper: o.upper.clone(),
                lower: o.lower.clone(),
            },
        ));
    }
    for f in &spec.files {
        out.push((f.target.clone(), Origin::Private));
    }
    out
}

/// How a hidden path must be covered in the container.
#[derive(Debug, PartialEq)]
enum Cover {
    /// A directory of the host: an empty read-only tmpfs.
    Dir,
    /// A file (or other non-directory) of the host: the empty unreadable file.
    File,
    /// Nothing of the host's there (missing, a symlink, which native hiding leaves too, or the
    /// image's own path).
    Nothing,
}

/// Where `inside` comes from, by the deepest of `origins` over it (later entries win a tie, as
/// the workspace and cache overlays are mounted after the binds).
fn origin_of(origins: &[(PathBuf, Origin)], inside: &Path) -> Origin {
    let mut best: Option<(&PathBuf, &Origin)> = None;
    for (target, origin) in origins {
        if inside.starts_with(target)
            && best.is_none_or(|(b, _)| target.components().count() >= b.components().count())
        {
            best = Some((target, origin));
        }
    }
    let Some((target, origin)) = best else {
        return Origin::Private;
    };
    let rest = inside.strip_prefix(target).unwrap_or(Path::new(""));
    match origin {
        Origin::Host(src) => Origin::Host(src.join(rest)),
        Origin::Overlay { upper, lower } => Origin::Overlay {
            upper: upper.join(rest),
            lower: lower.join(rest),
        },
        Origin::Private => Origin::Private,
    }
}

/// The kind of host object at `p` (not following a final symlink), `None` when there is none.
///
/// # Errors
/// `p` cannot be examined (a permission error on a parent, say): whether it holds a secret is
/// unknown, so the container is not started (fail closed).
fn host_kind(p: &Path, hidden: &Path) -> Result<Option<std::fs::FileType>, ContainerError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => Ok(None),
        Err(e) => Err(ContainerError::io(
            format!(
                "cannot hide {} in the container: cannot examine {} on the host (fix its                  permissions, or run with the native backend)",
                hidden.display(),
                p.display()
            ),
            e,
        )),
    }
}

/// How the hidden path `inside` is covered, judged as native hiding does (after all mounts):
/// through the deepest mount over it, the workspace's and the caches' overlays included (the
/// session's upper layer first, where a whiteout means the path is gone).
///
/// # Errors
/// The host path behind it cannot be examined ([`host_kind`]).
fn cover(origins: &[(PathBuf, Origin)], inside: &Path) -> Result<Cover, ContainerError> {
    let kind = match origin_of(origins, inside) {
        Origin::Private => return Ok(Cover::Nothing),
        Origin::Host(p) => host_kind(&p, inside)?,
        Origin::Overlay { upper, lower } => match host_kind(&upper, inside)? {
            // An overlay whiteout (a character device in the upper layer): deleted inside.
            Some(k) if k.is_char_device() => return Ok(Cover::Nothing),
            Some(k) => Some(k),
            None => host_kind(&lower, inside)?,
        },
    };
    Ok(match kind {
        None => Cover::Nothing,
        Some(k) if k.is_symlink() => Cover::Nothing,
        Some(k) if k.is_dir() => Cover::Dir,
        Some(_) => Cover::File,
    })
}

/// What `refuse_overlay_on_runtime`'s error says (for `airlock selftest`, which counts such a
/// refusal as the session never starting).
pub const OVERLAY_REFUSED: &str = "does not make Podman's overlay mounts";

/// Refuses an overlay mount at `target` on a runtime that does not make it: Podman hands its
/// overlay volumes to the runtime as mounts of type `overlay`, which gVisor does not mount (the
/// path would be missing inside, or show the image's directory).
///
/// # Errors
/// Names the runtime, the mount and what to use instead.
fn refuse_overlay_on_runtime(engine: &Engine, target: &Path) -> Result<(), ContainerError> {
    if !engine.relays_egress() {
        return Ok(());
    }
    Err(ContainerError::Unsupported(format!(
        "runtime {} {OVERLAY_REFUSED}, which the overlay view of {} needs; use --mode bind (or \
         drop the ecosystem preset that overlays it), or --runtime runc",
        engine.runtime_name(),
        target.display()
    )))
}

/// The mounts and tmpfs of the container, and the files they need in `dir`.
struct Layout {
    mounts: Vec<Mount>,
    binds: Vec<String>,
    tmpfs: HashMap<String, String>,
    entrypoint: Vec<String>,
}

fn layout(
    engine: &Engine,
    spec: &SandboxSpec,
    opts: &ContainerOptions,
    dir: &Path,
) -> Result<Layout, ContainerError> {
    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    let mut tmpfs = HashMap::new();
    let inside = Path::new(AIRLOCK_DIR);
    // pid 1: airlock with the loader and libraries it runs with, all read-only.
    let (loader, libs) = runtime_libraries()?;
    mounts.push(bind(&opts.exe, &inside.join("airlock"), false));
    for l in &libs {
        if let Some(name) = l.file_name() {
            mounts.push(bind(l, &inside.join("lib").join(name), false));
        }
    }
    mounts.push(bind(&dir.join("ctl"), &inside.join("ctl"), false));
    let loader_inside = inside
        .join("lib")
        .join(loader.file_name().unwrap_or_default());
    let mut entrypoint = vec![
        loader_inside.display().to_string(),
        "--library-path".into(),
        inside.join("lib").display().to_string(),
        inside.join("airlock").display().to_string(),
        "__container-init".into(),
        inside.join("ctl/ctl.sock").display().to_string(),
    ];
    if engine.relays_egress() {
        entrypoint.push("--relay".into());
    }
    for b in spec.binds.iter().filter(|b| !b.optional) {
        if b.target.starts_with(inside) {
            continue; // the native view's own copy of airlock
        }
        mounts.push(bind(&b.source, &b.target, b.writable));
    }
    match &spec.workspace {
        Some(WorkspaceView::Bind { source, target }) => mounts.push(bind(source, target, true)),
        Some(WorkspaceView::Overlay {
            lower,
            upper,
            work,
            target,
        }) => {
            refuse_overlay_on_runtime(engine, target)?;
            if engine.kind() == EngineKind::Podman || engine.facts().is_podman() {
                binds.push(overlay_volume(lower, target, upper, work)?);
            } else {
                mounts.push(docker_overlay(lower, target, upper, work)?);
            }
        }
        None => {}
    }
    // Host caches with a session layer on top (ecosystem presets): the same overlay mounts.
    for o in &spec.overlays {
        refuse_overlay_on_runtime(engine, &o.target)?;
        if engine.kind() == EngineKind::Podman || engine.facts().is_podman() {
            binds.push(overlay_volume(&o.lower, &o.target, &o.upper, &o.work)?);
        } else {
            mounts.push(docker_overlay(&o.lower, &o.target, &o.upper, &o.work)?);
        }
    }
    // Home belongs to the command's user: Podman chowns with `U`, Docker passes uid/gid to tmpfs.
    let owner = if engine.kind() == EngineKind::Podman || engine.facts().is_podman() {
        "U".to_string()
    } else {
        format!("uid={},gid={}", spec.uid, spec.gid)
    };
    tmpfs.insert(
        "/tmp".to_string(),
        format!("rw,nosuid,nodev,size={},mode=1777", spec.tmp_bytes),
    );
    tmpfs.insert(
        spec.home.display().to_string(),
        format!("rw,nosuid,nodev,size={},mode=0700,{owner}", spec.home_bytes),
    );
    let files = dir.join("files");
    for (i, f) in spec.files.iter().enumerate() {
        let p = files.join(i.to_string());
        std::fs::write(&p, &f.contents)
            .map_err(|e| ContainerError::io(format!("cannot write {}", p.display()), e))?;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444));
        mounts.push(bind(&p, &f.target, false));
    }
    let empty = files.join("hidden");
    std::fs::write(&empty, b"")
        .map_err(|e| ContainerError::io(format!("cannot write {}", empty.display()), e))?;
    let _ = std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o000));
    // Every hidden path is judged through the mount that shows it (binds, the workspace, the
    // cache overlays); one that cannot be judged stops the start (`cover`).
    let origins = mount_origins(spec);
    let mut hidden_dirs: Vec<&Path> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for h in spec.hide.iter().filter(|h| seen.insert(*h)) {
        match cover(&origins, h)? {
            Cover::Dir => {
                tmpfs.insert(h.display().to_string(), "ro,size=4k,mode=000".into());
                hidden_dirs.push(h);
            }
            Cover::File => mounts.push(bind(&empty, h, false)),
            Cover::Nothing => {}
        }
    }
    // Natively a hidden directory covers whatever was mounted below it; engines mount parents
    // first, so a mount below a hidden directory would show through: leave it out.
    mounts.retain(|m| {
        let t = Path::new(m.target.as_deref().unwrap_or("/"));
        !hidden_dirs.iter().any(|d| t != *d && t.starts_with(d))
    });
    if engine.facts().is_podman() || engine.kind() == EngineKind::Podman {
        check_podman_paths(
            mounts
                .iter()
                .flat_map(|m| [m.source.as_deref(), m.target.as_deref()])
                .flatten()
                .chain(tmpfs.keys().map(String::as_str)),
        )?;
    }
    Ok(Layout {
        mounts,
        binds,
        tmpfs,
        entrypoint,
    })
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// CPUs as the API's billionths of a CPU (clamped to what an i64 holds; a negative or NaN
/// request, which the policy layer refuses, would become 0).
#[allow(clippy::cast_possible_truncation)]
fn nano_cpus(cpus: f64) -> i64 {
    // `as` saturates and maps NaN to 0 (the Rust reference, "numeric cast").
    (cpus * 1e9).round() as i64
}

fn create_body(
    engine: &Engine,
    spec: &SandboxSpec,
    opts: &ContainerOptions,
    layout: Layout,
    seccomp: &Path,
    facts: &ImageFacts,
) -> ContainerCreateBody {
    let podman = engine.facts().is_podman();
    // Podman's compat API reads the profile from a file; Docker's takes its contents.
    let seccomp_opt = if podman {
        format!("seccomp={}", seccomp.display())
    } else {
        format!("seccomp={}", crate::seccomp::profile())
    };
    let host = HostConfig {
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into(), seccomp_opt]),
        network_mode: Some("none".into()),
        mounts: Some(layout.mounts),
        binds: (!layout.binds.is_empty()).then_some(layout.binds),
        tmpfs: Some(layout.tmpfs),
        shm_size: Some(i64_of(spec.shm_bytes)),
        memory: opts.limits.memory_bytes.map(i64_of),
        memory_swap: opts.limits.memory_bytes.map(i64_of),
        pids_limit: opts.limits.pids.map(i64_of),
        nano_cpus: opts.limits.cpus.map(nano_cpus),
        userns_mode: (podman && engine.facts().rootless).then(|| "keep-id".to_string()),
        ipc_mode: Some("private".into()),
        // Engines default to the host's cgroup namespace on cgroup v1 hosts.
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        // pid 1 has no CAP_NET_BIND_SERVICE and binds DNS on port 53 of the container's own
        // loopback (a per-network-namespace sysctl; nothing else listens there).
        sysctls: Some(HashMap::from([(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        )])),
        runtime: engine.runtime.map(|r: Runtime| r.name().to_string()),
        init: Some(false),
        // Removed by the engine when it stops, also when airlock was killed and cannot: pid 1
        // ends the container when the supervisor's end of the control socket closes.
        auto_remove: Some(true),
        ..HostConfig::default()
    };
    ContainerCreateBody {
        image: Some(opts.image.clone()),
        entrypoint: Some(layout.entrypoint),
        cmd: Some(Vec::new()),
        env: Some(container_env(facts)),
        // The image's HEALTHCHECK would run its command in the container as the user.
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..HealthConfig::default()
        }),
        stop_signal: Some("SIGKILL".into()),
        user: Some(format!("{}:{}", spec.uid, spec.gid)),
        hostname: Some(spec.hostname.clone()),
        working_dir: Some("/".into()),
        network_disabled: Some(true),
        labels: Some(opts.labels.clone()),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host),
        ..ContainerCreateBody::default()
    }
}

/// A created container: removed (with its private service stopped) when dropped.
#[derive(Debug)]
pub struct Container {
    engine: Engine,
    id: String,
    pid: u32,
    state_dir: Option<tempfile::TempDir>,
    removed: bool,
    exit: Option<i32>,
}

impl Container {
    /// The engine's id of the container.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn inspect_exit(&mut self) -> Option<i32> {
        let r = self
            .engine
            .rt
            .block_on(
                self.engine
                    .client
                    .inspect_container(&self.id, None::<InspectContainerOptions>),
            )
            .ok()?;
        let st = r.state?;
        if st.running == Some(true) {
            return None;
        }
        st.exit_code
            .map(|c| i32::try_from(c).unwrap_or(airlock_sandbox::EXIT_FAILURE))
    }

    /// The container's last words (its log), for an error when pid 1 never connected.
    fn logs(&self) -> String {
        let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let out = self.engine.rt.block_on(async {
            let mut s = self.engine.client.logs(&self.id, Some(opts));
            let mut text = String::new();
            while let Some(Ok(chunk)) = s.next().await {
                text.push_str(&chunk.to_string());
            }
            text
        });
        out.trim().to_string()
    }

    fn remove(&mut self) {
        if self.removed {
            return;
        }
        // AutoRemove may be removing it at the same moment: `remove_forced` retries that race;
        // warn only if it is still there.
        let last =
            crate::engine::remove_forced(&self.engine.rt, &self.engine.client, &self.id).err();
        if let Some(e) = last {
            tracing::warn!(
                "cannot remove container {} from {}: {e}; remove it with `{} rm -f {}`",
                self.id,
                self.engine.socket().display(),
                self.engine.kind().name(),
                self.id
            );
        }
        self.removed = true;
        self.engine.shutdown();
        self.state_dir.take();
    }
}

impl RemoteInit for Container {
    fn signal(&self, sig: Signal) -> Result<(), airlock_sandbox::SandboxError> {
        let opts = KillContainerOptionsBuilder::new()
            .signal(&(sig as i32).to_string())
            .build();
        match self
            .engine
            .rt
            .block_on(self.engine.client.kill_container(&self.id, Some(opts)))
        {
            Ok(()) => Ok(()),
            // Gone or no longer running: the sandbox has ended, which is not an error.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(airlock_sandbox::SandboxError::Setup(
                self.engine
                    .error(format!("send {sig} to the container"), &e)
                    .to_string(),
            )),
        }
    }

    fn describe(&self) -> String {
        let f = self.engine.facts();
        format!(
            "{} {} at {}{}, runtime {}",
            f.product,
            f.version,
            self.engine.socket().display(),
            if f.rootless { " (rootless)" } else { "" },
            self.engine.runtime_name()
        )
    }

    fn try_wait(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            self.exit = self.inspect_exit();
        }
        self.exit
    }

    fn wait(&mut self) -> Option<i32> {
        if self.exit.is_some() {
            return self.exit;
        }
        let code = self.engine.rt.block_on(async {
            let mut s = self.engine.client.wait_container(&self.id, None);
            match s.next().await {
                Some(Ok(r)) => Some(r.status_code),
                // bollard reports a non-zero exit as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    Some(code)
                }
                _ => None,
            }
        });
        self.exit = code
            .map(|c| i32::try_from(c).unwrap_or(airlock_sandbox::EXIT_FAILURE))
            .or_else(|| self.inspect_exit());
        self.exit
    }

    fn kill(&mut self) {
        self.remove();
    }

    fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The session's private directory: `ctl/` for the control socket, `files/` for generated files
/// and the seccomp profile. Mode 0700, owned by the invoker (who is the container's user).
fn state_dir(parent: &Path) -> Result<tempfile::TempDir, ContainerError> {
    let dir = tempfile::Builder::new()
        .prefix("container-")
        .tempdir_in(parent)
        .map_err(|e| {
            ContainerError::io(
                format!("cannot create a directory in {}", parent.display()),
                e,
            )
        })?;
    for sub in ["ctl", "files"] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join(sub))
            .map_err(|e| {
                ContainerError::io(
                    format!("cannot create {sub} in {}", dir.path().display()),
                    e,
                )
            })?;
    }
    Ok(dir)
}

/// Runs `spec` as a container on `engine` and waits until pid 1 has built the sandbox: the
/// returned [`Sandbox`] is supervised exactly as a native one (terminal, signals, listeners,
/// exit). Takes the engine: it (and a private service) lives until the container is removed,
/// which happens when the sandbox is dropped, and on every error before that.
pub fn launch(
    engine: Engine,
    spec: &SandboxSpec,
    opts: ContainerOptions,
) -> Result<Sandbox, ContainerError> {
    check_limits(&engine, &opts.limits)?;
    let facts = check_image(&engine, &opts.image)?;
    let dir = state_dir(&opts.state_dir)?;
    let layout = layout(&engine, spec, &opts, dir.path())?;
    check_volumes(&opts.image, &facts, &layout)?;
    let seccomp = dir.path().join("files/seccomp.json");
    std::fs::write(&seccomp, crate::seccomp::profile().to_string())
        .map_err(|e| ContainerError::io(format!("cannot write {}", seccomp.display()), e))?;
    let listener = ChannelListener::bind(&dir.path().join("ctl/ctl.sock"))?;
    let relayed = if engine.relays_egress() {
        Some(relay_sockets(&dir.path().join("ctl"), spec)?)
    } else {
        None
    };
    let body = create_body(&engine, spec, &opts, layout, &seccomp, &facts);
    tracing::debug!(body = ?body, socket = %engine.socket().display(), "creating the container");
    let create_opts = opts
        .name
        .as_deref()
        .map(|n| CreateContainerOptionsBuilder::new().name(n).build());
    let created = engine
        .rt
        .block_on(engine.client.create_container(create_opts, body))
        .map_err(|e| engine.error(format!("create a container from {}", opts.image), &e))?;
    let mut container = Container {
        engine,
        id: created.id,
        pid: 0,
        state_dir: Some(dir),
        removed: false,
        exit: None,
    };
    let started = container
        .engine
        .rt
        .block_on(container.engine.client.start_container(&container.id, None));
    if let Err(e) = started {
        return Err(container
            .engine
            .error(format!("start the container from {}", opts.image), &e));
    }
    let mut ticks = 0u32;
    let chan = listener.accept(CONNECT_TIMEOUT, || {
        ticks += 1;
        ticks % 5 != 0 || container.inspect_exit().is_none()
    })?;
    drop(listener);
    let Some(chan) = chan else {
        let status = container.inspect_exit();
        let logs = container.logs();
        return Err(ContainerError::Engine {
            engine: container.engine.kind().name(),
            socket: container.engine.socket().to_path_buf(),
            action: format!(
                "run airlock as the container's first process in {}",
                opts.image
            ),
            detail: format!(
                "it did not connect to the control socket ({}){}",
                status.map_or("still running after 60s".into(), |c| format!("exited {c}")),
                if logs.is_empty() {
                    String::new()
                } else {
                    format!("; it said: {logs}")
                }
            ),
            hint: crate::engine::hint_for(&logs),
        });
    };
    container.pid = container
        .engine
        .rt
        .block_on(
            container
                .engine
                .client
                .inspect_container(&container.id, None::<InspectContainerOptions>),
        )
        .ok()
        .and_then(|r| r.state.and_then(|s| s.pid))
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    Ok(match relayed {
        Some(r) => Sandbox::adopt_relayed(spec, chan, Box::new(container), opts.unix_refusals, r)?,
        None => Sandbox::adopt(spec, chan, Box::new(container), opts.unix_refusals)?,
    })
}

/// The host unix sockets a relaying pid 1 ([`Runtime::relays_egress`]) forwards the proxy, DNS
/// and audit connections to, in the session's `ctl` directory (mode 0700, the invoker's, bound
/// read-only at /.airlock/ctl). Listening before the container starts: the relay connects only
/// when the agent does.
fn relay_sockets(ctl: &Path, spec: &SandboxSpec) -> Result<RelayedNet, ContainerError> {
    let [proxy, dns, audit] = RELAY_SOCKETS.map(|n| ctl.join(n));
    let bind = |p: &Path| {
        std::os::unix::net::UnixListener::bind(p).map_err(|e| {
            ContainerError::io(
                format!("cannot listen on the relay socket {}", p.display()),
                e,
            )
        })
    };
    Ok(RelayedNet {
        proxy: bind(&proxy)?,
        dns: bind(&dns)?,
        audit: match spec.net.and_then(|n| n.audit_port) {
            Some(_) => Some(bind(&audit)?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_volumes_refuse_option_separators() {
        let p = Path::new;
        assert_eq!(
            overlay_volume(p("/l"), p("/t"), p("/u"), p("/w")).expect("plain"),
            "/l:/t:O,upperdir=/u,workdir=/w"
        );
        for bad in ["/a:b", "/c,upperdir=/x", "/n\nl", "/b\\,x", "/z\0"] {
            for i in 0..4 {
                let mut paths = [p("/l"), p("/t"), p("/u"), p("/w")];
                paths[i] = p(bad);
                let e = overlay_volume(paths[0], paths[1], paths[2], paths[3])
                    .expect_err(bad)
                    .to_string();
                assert!(e.contains("--mode bind"), "{e}");
            }
        }
        // Spaces and '=' are plain characters there.
        assert!(overlay_volume(p("/a b=c"), p("/a b=c"), p("/u"), p("/w")).is_ok());
    }

    /// Hidden paths are judged through the deepest mount over them: a cache overlay inside a
    /// bound home (the layer first, then the host's cache), a bind, or nothing of the host's.
    #[test]
    fn hides_are_judged_through_the_mount_that_shows_them() {
        let d = tempfile::tempdir().expect("tempdir");
        let (lower, upper, src) = (
            d.path().join("lower"),
            d.path().join("upper"),
            d.path().join("src"),
        );
        for p in [&lower, &upper, &src, &lower.join("dir")] {
            std::fs::create_dir_all(p).expect("mkdir");
        }
        std::fs::write(lower.join("credentials.toml"), "t").expect("write");
        std::fs::write(upper.join("new"), "t").expect("write");
        std::fs::write(src.join("f"), "t").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", lower.join("link")).expect("link");
        let origins = vec![
            (PathBuf::from("/tmp"), Origin::Private),
            (PathBuf::from("/home/u"), Origin::Private),
            (
                PathBuf::from("/home/u/.cargo"),
                Origin::Overlay {
                    upper: upper.clone(),
                    lower,
                },
            ),
            (PathBuf::from("/home/u/.cargo/bin"), Origin::Host(src)),
        ];
        let at = |p: &str| cover(&origins, Path::new(p)).expect("cover");
        assert_eq!(at("/home/u/.cargo/credentials.toml"), Cover::File);
        assert_eq!(at("/home/u/.cargo/dir"), Cover::Dir);
        assert_eq!(at("/home/u/.cargo/new"), Cover::File);
        assert_eq!(at("/home/u/.cargo/missing"), Cover::Nothing);
        assert_eq!(at("/home/u/.cargo/link"), Cover::Nothing);
        assert_eq!(at("/home/u/.cargo/bin/f"), Cover::File);
        assert_eq!(at("/home/u/.ssh"), Cover::Nothing);
        assert_eq!(at("/etc/shadow"), Cover::Nothing);
        // A whiteout in the layer: deleted inside, though the host's cache has it.
        nix::sys::stat::mknod(
            &upper.join("credentials.toml"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .ok();
        if upper.join("credentials.toml").exists() {
            assert_eq!(at("/home/u/.cargo/credentials.toml"), Cover::Nothing);
        }
    }
}
