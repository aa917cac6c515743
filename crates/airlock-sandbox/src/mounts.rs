//! Assembly of the sandbox's root filesystem inside its own mount namespace (stage 2):
//! a scaffolding tmpfs with the host root at `/oldroot` and the new root at `/newroot`, read-only
//! binds of system directories, private tmpfs home, /tmp and /dev/shm, a new /proc and a minimal
//! /dev, the workspace view, hidden paths, and finally a pivot into `/newroot`.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};

use crate::spec::{Bind, OverlayMount, SandboxSpec, WorkspaceView};
use crate::SandboxError;
use crate::Step;

const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets mount attributes on the mount at `path` (and every mount below it if `recursive`), with
/// `mount_setattr(2)` (Linux 5.12+), which also handles submounts and locked flags correctly.
fn setattr(path: &Path, set: u64, recursive: bool) -> Result<(), SandboxError> {
    let c = cpath(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated string and `attr` a properly laid out `mount_attr`
    // that outlives the call; the kernel reads `size_of::<MountAttr>()` bytes of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        let e = nix::errno::Errno::last();
        let hint = if e == nix::errno::Errno::ENOSYS {
            " (the kernel lacks mount_setattr: Linux 5.12 or newer is required)"
        } else {
            ""
        };
        return Err(SandboxError::sys(
            Step::Mounts,
            format!("cannot restrict mount {}{hint}", show(path)),
            e,
        ));
    }
    Ok(())
}

fn cpath(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        SandboxError::failed(
            Step::Mounts,
            format!("path {} contains a NUL byte", path.display()),
        )
    })
}

/// The path as the user knows it (without our scaffolding prefixes).
fn show(path: &Path) -> String {
    let s = path.display().to_string();
    for prefix in [NEW, OLD] {
        if let Some(rest) = s.strip_prefix(prefix) {
            if rest.is_empty() {
                return "/".into();
            }
            if rest.starts_with('/') {
                return rest.to_string();
            }
        }
    }
    s
}

/// `base` + absolute `p`, refusing `..` so a spec cannot point outside the scaffolding.
fn under(base: &str, p: &Path) -> Result<PathBuf, SandboxError> {
    let mut out = PathBuf::from(base);
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(SandboxError::failed(
                    Step::Mounts,
                    format!("path {} must be absolute and free of '..'", p.display()),
                ))
            }
        }
    }
    Ok(out)
}

fn do_mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SandboxError> {
    mount(src, dst, fstype, flags, data).map_err(|e| {
        let what = match (fstype, src) {
            (Some(t), _) => format!("cannot mount {t} on {}", show(dst)),
            (None, Some(s)) => format!("cannot bind {} to {}", show(s), show(dst)),
            (None, None) => format!("cannot change mount {}", show(dst)),
        };
        SandboxError::sys(Step::Mounts, what, e)
    })
}

fn mkdir_all(p: &Path) -> Result<(), SandboxError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|e| {
            SandboxError::io(
                Step::Mounts,
                format!("cannot create mount point {}", show(p)),
                e,
            )
        })
}

fn touch(p: &Path) -> Result<(), SandboxError> {
    if fs::symlink_metadata(p).is_ok() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        mkdir_all(parent)?;
    }
    match fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(p)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(SandboxError::io(
            Step::Mounts,
            format!("cannot create mount point {}", show(p)),
            e,
        )),
    }
}

fn tmpfs(dst: &Path, mode: &str, bytes: u64, flags: MsFlags) -> Result<(), SandboxError> {
    mkdir_all(dst)?;
    let data = format!("mode={mode},size={bytes}");
    do_mount(
        Some(Path::new("tmpfs")),
        dst,
        Some("tmpfs"),
        flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&data),
    )
}

/// Builds the root described by `spec` and pivots into it. On return the process's root and cwd
/// are the sandbox's `/`.
pub(crate) fn build(spec: &SandboxSpec) -> Result<(), SandboxError> {
    // Nothing we mount may propagate back to the host.
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // Scaffolding: a tmpfs on /tmp becomes the root for a moment; pivot_root moves it (and not the
    // host's /tmp, which stays visible at /oldroot/tmp).
    let scaffold = Path::new("/tmp");
    do_mount(
        Some(Path::new("tmpfs")),
        scaffold,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=4m"),
    )?;
    chdir(scaffold)
        .map_err(|e| SandboxError::sys(Step::Mounts, "cannot enter the scaffolding tmpfs", e))?;
    mkdir_all(Path::new("newroot"))?;
    mkdir_all(Path::new("oldroot"))?;
    mkdir_all(Path::new("files"))?;
    do_mount(
        Some(Path::new("tmpfs")),
        Path::new("newroot"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=16m"),
    )?;
    pivot_root(".", "oldroot")
        .map_err(|e| SandboxError::sys(Step::Mounts, "cannot pivot into the scaffolding", e))?;
    chdir("/").map_err(|e| SandboxError::sys(Step::Mounts, "chdir /", e))?;

    // Private /tmp, then home, first: binds below them (toolchains in ~/.cargo, agent state in
    // ~/.claude, a workspace under /tmp) are mounted on top. /tmp goes before the home so that a
    // home under /tmp (a CI runner's, a test's) is its own tmpfs, with its own size limit, and
    // not hidden by /tmp.
    tmpfs(
        &under(NEW, Path::new("/tmp"))?,
        "1777",
        spec.tmp_bytes,
        MsFlags::empty(),
    )?;
    tmpfs(
        &under(NEW, &spec.home)?,
        "0700",
        spec.home_bytes,
        MsFlags::empty(),
    )?;
    for b in &spec.binds {
        bind(b)?;
    }
    proc_fs()?;
    dev(spec.shm_bytes)?;
    if let Some(ws) = &spec.workspace {
        workspace(ws)?;
    }
    for o in &spec.overlays {
        overlay(o, "run without the preset that shares this cache")?;
    }
    for (i, f) in spec.files.iter().enumerate() {
        generated_file(i, &f.target, &f.contents)?;
    }
    for h in &spec.hide {
        hide(h)?;
    }
    // The root tmpfs itself is read-only: the agent cannot create files in /.
    setattr(Path::new(NEW), MOUNT_ATTR_RDONLY, false)?;

    chdir(NEW).map_err(|e| SandboxError::sys(Step::Mounts, "cannot enter the new root", e))?;
    pivot_root(".", ".")
        .map_err(|e| SandboxError::sys(Step::Mounts, "cannot pivot into the new root", e))?;
    // The scaffolding (and the host root under it) is now stacked on "/"; detach it.
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| SandboxError::sys(Step::Mounts, "cannot detach the host root", e))?;
    chdir("/").map_err(|e| SandboxError::sys(Step::Mounts, "chdir /", e))?;
    Ok(())
}

fn bind(b: &Bind) -> Result<(), SandboxError> {
    let src = under(OLD, &b.source)?;
    let dst = under(NEW, &b.target)?;
    let meta = match fs::symlink_metadata(&src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && b.optional => return Ok(()),
        Err(e) => {
            return Err(SandboxError::io(
                Step::Mounts,
                format!("cannot bind {}", b.source.display()),
                e,
            ))
        }
    };
    if meta.file_type().is_symlink() {
        // Merged-/usr hosts: /bin -> usr/bin and the like are recreated as symlinks.
        let target = fs::read_link(&src).map_err(|e| {
            SandboxError::io(Step::Mounts, format!("cannot read link {}", show(&src)), e)
        })?;
        if let Some(parent) = dst.parent() {
            mkdir_all(parent)?;
        }
        return match symlink(&target, &dst) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(SandboxError::io(
                Step::Mounts,
                format!("cannot create link {}", show(&dst)),
                e,
            )),
        };
    }
    if meta.is_dir() {
        mkdir_all(&dst)?;
    } else {
        touch(&dst)?;
    }
    do_mount(
        Some(&src),
        &dst,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if !b.writable {
        set |= MOUNT_ATTR_RDONLY;
    }
    setattr(&dst, set, true)
}

fn proc_fs() -> Result<(), SandboxError> {
    let p = under(NEW, Path::new("/proc"))?;
    mkdir_all(&p)?;
    do_mount(
        Some(Path::new("proc")),
        &p,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| {
        SandboxError::failed(
            Step::Mounts,
            format!(
                "{e} (a new /proc needs a fully visible /proc on the host; inside a container run \
             airlock with the container backend or give the container an unmasked /proc)"
            ),
        )
    })?;
    // Kernel knobs stay read-only even for a root invoker mapped to uid 0.
    for d in ["sys", "sysrq-trigger", "irq", "bus", "fs"] {
        let path = p.join(d);
        if path.exists() {
            do_mount(
                Some(&path),
                &path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            setattr(
                &path,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                true,
            )?;
        }
    }
    let null = under(OLD, Path::new("/dev/null"))?;
    for f in [
        "kcore",
        "keys",
        "timer_list",
        "sched_debug",
        "latency_stats",
    ] {
        let path = p.join(f);
        if path.exists() {
            do_mount(Some(&null), &path, None, MsFlags::MS_BIND, None)?;
        }
    }
    Ok(())
}

fn dev(shm_bytes: u64) -> Result<(), SandboxError> {
    let d = under(NEW, Path::new("/dev"))?;
    mkdir_all(&d)?;
    do_mount(
        Some(Path::new("tmpfs")),
        &d,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let src = under(OLD, &Path::new("/dev").join(node))?;
        match fs::metadata(&src) {
            Ok(m) if m.file_type().is_char_device() => {}
            _ if node == "tty" => continue,
            _ => {
                return Err(SandboxError::failed(
                    Step::Mounts,
                    format!("host device /dev/{node} is missing or not a character device"),
                ))
            }
        }
        let dst = d.join(node);
        touch(&dst)?;
        do_mount(Some(&src), &dst, None, MsFlags::MS_BIND, None)?;
        setattr(&dst, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false)?;
    }
    let pts = d.join("pts");
    mkdir_all(&pts)?;
    do_mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, target) in links {
        symlink(target, d.join(name))
            .map_err(|e| SandboxError::io(Step::Mounts, format!("cannot create /dev/{name}"), e))?;
    }
    tmpfs(&d.join("shm"), "1777", shm_bytes, MsFlags::empty())?;
    // Nothing else may be created in /dev.
    setattr(&d, MOUNT_ATTR_RDONLY, false)
}

fn workspace(ws: &WorkspaceView) -> Result<(), SandboxError> {
    match ws {
        WorkspaceView::Bind { source, target } => bind(&Bind {
            source: source.clone(),
            target: target.clone(),
            writable: true,
            optional: false,
        }),
        WorkspaceView::Overlay {
            lower,
            upper,
            work,
            target,
        } => overlay(
            &OverlayMount {
                lower: lower.clone(),
                upper: upper.clone(),
                work: work.clone(),
                target: target.clone(),
            },
            "run with --mode worktree or --mode bind instead",
        ),
    }
}

/// Mounts overlayfs at `o.target`: `o.lower` read-only, writes into `o.upper`; `hint` says
/// what to do when the kernel refuses.
fn overlay(o: &OverlayMount, hint: &str) -> Result<(), SandboxError> {
    let dst = under(NEW, &o.target)?;
    mkdir_all(&dst)?;
    let opt = |p: &Path| -> Result<String, SandboxError> {
        let s = under(OLD, p)?.display().to_string();
        if s.contains([',', ':', '\\']) {
            return Err(SandboxError::failed(
                Step::Mounts,
                format!(
                    "overlay paths may not contain ',', ':' or '\\': {}",
                    p.display()
                ),
            ));
        }
        Ok(s)
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        opt(&o.lower)?,
        opt(&o.upper)?,
        opt(&o.work)?
    );
    do_mount(
        Some(Path::new("overlay")),
        &dst,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&data),
    )
    .map_err(|e| {
        SandboxError::failed(
            Step::Mounts,
            format!(
                "{e}: this kernel cannot mount overlayfs in a user namespace over {} (see \
             `airlock doctor`); {hint}",
                o.lower.display()
            ),
        )
    })
}

/// Places generated contents at `target`: written to the scaffolding, then bound read-only over
/// the target. A target that is a symlink inside the new root (e.g. /etc/resolv.conf pointing into
/// /run) is followed once and the file created at the link's destination.
fn generated_file(index: usize, target: &Path, contents: &[u8]) -> Result<(), SandboxError> {
    let staged = PathBuf::from(format!("/files/{index}"));
    fs::write(&staged, contents).map_err(|e| {
        SandboxError::io(
            Step::Mounts,
            format!("cannot stage generated {}", target.display()),
            e,
        )
    })?;
    let mut dst = under(NEW, target)?;
    if let Ok(link) = fs::read_link(&dst) {
        let resolved = if link.is_absolute() {
            link
        } else {
            target.parent().unwrap_or(Path::new("/")).join(link)
        };
        dst = under(NEW, &normalize(&resolved))?;
    }
    touch(&dst)?;
    do_mount(Some(&staged), &dst, None, MsFlags::MS_BIND, None)?;
    setattr(
        &dst,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        false,
    )
}

/// Lexically resolves `.` and `..` in an absolute path.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Covers `path` (if it exists inside) with an empty read-only tmpfs (directories) or an empty
/// unreadable file (anything else).
fn hide(path: &Path) -> Result<(), SandboxError> {
    let dst = under(NEW, path)?;
    let Ok(meta) = fs::symlink_metadata(&dst) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        // A link is harmless by itself; what it points to is hidden if it is listed.
        return Ok(());
    }
    if meta.is_dir() {
        do_mount(
            Some(Path::new("tmpfs")),
            &dst,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0000,size=4k"),
        )?;
    } else {
        let empty = Path::new("/files/empty");
        if !empty.exists() {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o000)
                .open(empty)
                .map_err(|e| SandboxError::io(Step::Mounts, "cannot create the hiding file", e))?;
        }
        do_mount(Some(empty), &dst, None, MsFlags::MS_BIND, None)?;
    }
    setattr(
        &dst,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_refuses_parent_components() {
        assert_eq!(
            under(NEW, Path::new("/usr/lib")).expect("ok"),
            PathBuf::from("/newroot/usr/lib")
        );
        assert!(under(NEW, Path::new("/usr/../../etc")).is_err());
    }

    #[test]
    fn show_strips_scaffolding() {
        assert_eq!(show(Path::new("/newroot/etc/x")), "/etc/x");
        assert_eq!(show(Path::new("/oldroot")), "/");
        assert_eq!(show(Path::new("/newrootx")), "/newrootx");
    }

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(
            normalize(Path::new("/etc/../run/./systemd/resolve/stub-resolv.conf")),
            PathBuf::from("/run/systemd/resolve/stub-resolv.conf")
        );
    }
}
