//! Path handling without the file system: lexical normalisation, base names, whether a word
//! looks like a path, resolving a word to a path or the directory it lies under, and the
//! system and scratch directories.

use crate::ir::{Word, DYN};

/// `/usr/bin/rm` → `rm`.
pub fn basename(s: &str) -> String {
    let t = s.trim_end_matches('/');
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Whether an argument looks like a file path rather than a word.
pub fn looks_like_path(w: &Word) -> bool {
    let t = &w.text;
    if t.contains("://") {
        return false;
    }
    t.starts_with('/')
        || t.starts_with("./")
        || t.starts_with("../")
        || t.starts_with('~')
        || t == "."
        || t == ".."
        || t.starts_with('.') && t.len() > 1 && !t.contains(' ')
        || (t.contains('/') && !t.contains(' ') && !t.starts_with('-'))
}

/// `~` and `~/…` expanded against `home`; anything else unchanged.
pub(crate) fn expand_tilde(p: &str, home: &str) -> String {
    if p == "~" {
        home.to_string()
    } else if let Some(rest) = p.strip_prefix("~/") {
        format!("{home}/{rest}")
    } else {
        p.to_string()
    }
}

/// Lexically normalises an absolute path: `//`, `.` and `..` removed (`/a/../b` → `/b`).
pub fn lexical(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(p.len());
    for s in &parts {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Resolves `w` to an absolute path (static), or a known directory it lies under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRef {
    Exact(String),
    Under(String),
    Unknown,
}

/// `w` as a [`PathRef`], relative to `cwd` (when known) with `~` as `home`.
pub fn resolve(w: &Word, cwd: Option<&str>, home: &str) -> PathRef {
    let t = &w.text;
    let cut = t
        .char_indices()
        .find(|(_, c)| *c == DYN || (w.glob && matches!(c, '*' | '?' | '[')))
        .map(|(i, _)| i);
    let expand = |s: &str| -> Option<String> {
        let s = if s == "~" {
            home.to_string()
        } else if let Some(r) = s.strip_prefix("~/") {
            format!("{home}/{r}")
        } else {
            s.to_string()
        };
        if s.starts_with('/') {
            Some(lexical(&s))
        } else {
            cwd.map(|c| lexical(&format!("{c}/{s}")))
        }
    };
    match cut {
        None => match expand(t) {
            Some(p) => PathRef::Exact(p),
            None => PathRef::Unknown,
        },
        Some(i) => {
            let prefix = &t[..i];
            match prefix.rfind('/') {
                Some(j) => {
                    let dir = if j == 0 { "/" } else { &prefix[..j] };
                    match expand(dir) {
                        Some(d) => PathRef::Under(d),
                        None => PathRef::Unknown,
                    }
                }
                None => {
                    // `$X…`: could be anywhere. `*.log`, `build$X`: a name in cwd.
                    if prefix.is_empty() && t.starts_with(DYN) {
                        PathRef::Unknown
                    } else {
                        // `build$X`: somewhere in cwd (or a sibling name): under cwd.
                        match cwd {
                            Some(c) => PathRef::Under(c.to_string()),
                            None => PathRef::Unknown,
                        }
                    }
                }
            }
        }
    }
}

/// Whether `p` is `dir` or inside it (both absolute and lexically normalised).
pub(crate) fn under(p: &str, dir: &str) -> bool {
    dir == "/" || p == dir || (p.starts_with(dir) && p.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Directories of the operating system and its packages.
pub(crate) const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/usr",
    "/var",
    "/snap",
    "/nix",
    "/System",
    "/Library",
    "/Applications",
    "/private",
    "/mnt",
    "/media",
];
/// Scratch directories: what is written there stays on the machine and is no one's file.
pub(crate) const SCRATCH_DIRS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];

/// Whether `path` (absolute, `.` and `..` resolved) is scratch space: inside one of `dirs`
/// (strictly inside, or also the directory itself with `or_dir`), but not inside the home
/// directory `home`. A home that lives in a scratch directory (`HOME=/tmp/h`, as on some CI
/// runners and in throwaway accounts) is still the home: its keys and rc files are there.
/// Used by the `target` categories ([`categorize`]) and the container mount checks
/// ([`crate::checks::container_host_mount`]).
pub(crate) fn is_scratch(path: &str, home: &str, dirs: &[&str], or_dir: bool) -> bool {
    let in_dir = dirs
        .iter()
        .any(|d| under(path, d) && (or_dir || path != *d));
    let trimmed = home.trim_end_matches('/');
    let in_home = home != "/" && under(path, if trimmed.is_empty() { home } else { trimmed });
    in_dir && !in_home
}
