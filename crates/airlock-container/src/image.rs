//! airlock's default image for the container backends (`airlock run --backend podman|docker`
//! without `--image`): a slim Debian with git, curl, Node.js and the agents' CLIs, built from the
//! Containerfile embedded in this crate (`image/Containerfile`).
//!
//! - **Tag**: `localhost/airlock-default:HASH`, HASH the SHA-256 (first 16 hex digits) of every
//!   input: the Containerfile, its build arguments (the pinned CLI versions) and the base
//!   image's name. A changed input is a new tag, so the next run builds anew; an unchanged one
//!   finds the image and reuses it (no build, no network).
//! - **Base**: [`DEFAULT_BASE`] (or `AIRLOCK_IMAGE_BASE`), used when the engine has it, else
//!   pulled. Where it cannot be pulled (no registry reachable) and the base is a
//!   `debian:bookworm-slim`, airlock makes it: `debootstrap --variant=minbase bookworm` from the
//!   host's Debian mirror into a temporary directory, imported as
//!   `localhost/airlock-default-base:HASH` (kept as the image's parent, so a rebuild reuses it).
//!   debootstrap needs root: as a user (rootless Podman) without a registry, the error says to
//!   build as root and `podman save | podman load` the image. Neither: an error naming the
//!   image, the engine and the ways out (`--image`, debootstrap, the registry).
//! - **Build**: through the engine's CLI (`podman build` / `docker build`), not the Engine API:
//!   the debootstrap base is a directory of a few hundred MB that `podman import` / `docker
//!   import` take as a file, where the API wants the whole body in one request; the build's
//!   progress is the CLI's own step lines; and the CLI reaches the
//!   same image store whether or not a Podman API service runs (airlock starts a private one
//!   per session only when none does). The build has the host's network (`--network host`: apt
//!   and npm need it); sessions on the image stay `--network none`.
//! - **Nothing half-built**: the engine tags only a finished build, intermediate containers
//!   are removed on failure (`--force-rm`), no intermediate images are kept (`--layers=false`
//!   on Podman), a base airlock imported for a build that failed is removed, and the build's
//!   directories (under `~/.cache/airlock/image-build`, one build at a time by a lock) are
//!   removed when it ends, or by the next build when airlock was killed midway.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::engine::EngineKind;
use crate::error::ContainerError;

/// The Containerfile the default image is built from.
pub const CONTAINERFILE: &str = include_str!("../image/Containerfile");
/// The repository of the default image; its tag is the hash of its inputs.
pub const REPOSITORY: &str = "localhost/airlock-default";
/// Where a base airlock made with debootstrap is imported (tag: the same hash).
pub const BASE_REPOSITORY: &str = "localhost/airlock-default-base";
/// The base image, from a registry where one can be reached.
pub const DEFAULT_BASE: &str = "docker.io/library/debian:bookworm-slim";
/// The variable naming another base (a registry mirror's copy, say): one of the hashed inputs.
pub const BASE_ENV: &str = "AIRLOCK_IMAGE_BASE";
/// The Debian release the base is (and debootstrap makes).
pub const SUITE: &str = "bookworm";
/// Claude Code's version in the image (npm `@anthropic-ai/claude-code`), as scripts/test.sh pins.
pub const CLAUDE_CODE_VERSION: &str = "2.1.112";
/// Codex's version in the image (npm `@openai/codex`), as scripts/test.sh pins.
pub const CODEX_VERSION: &str = "0.171.0";
/// The label carrying the hash on the built image (and its base).
pub const RECIPE_LABEL: &str = "airlock.image.recipe";
/// Debian's own mirror, when the host names none for [`SUITE`].
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// How many lines of a failed step's output the error quotes.
const TAIL_LINES: usize = 25;

/// Everything the default image is built from; [`Recipe::tag`] is its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The base image's name (`FROM`).
    pub base: String,
    /// The Containerfile's text.
    pub containerfile: String,
    /// Build arguments, in order.
    pub args: Vec<(String, String)>,
}

impl Recipe {
    /// The embedded recipe, with the base from `AIRLOCK_IMAGE_BASE` when set.
    pub fn from_env() -> Recipe {
        let base = std::env::var(BASE_ENV)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BASE.to_string());
        Recipe {
            base,
            containerfile: CONTAINERFILE.to_string(),
            args: vec![
                (
                    "CLAUDE_CODE_VERSION".to_string(),
                    CLAUDE_CODE_VERSION.to_string(),
                ),
                ("CODEX_VERSION".to_string(), CODEX_VERSION.to_string()),
            ],
        }
    }

    /// The hash of every input: 16 hex digits of SHA-256 over the base, each argument and the
    /// Containerfile, each length-prefixed (so no two recipes share an encoding).
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field("airlock-default-image/1");
        field(&self.base);
        for (k, v) in &self.args {
            field(k);
            field(v);
        }
        field(&self.containerfile);
        let digest = hex::encode(h.finalize());
        digest[..16].to_string()
    }

    /// `localhost/airlock-default:HASH`.
    pub fn tag(&self) -> String {
        format!("{REPOSITORY}:{}", self.hash())
    }

    /// The name a debootstrapped base gets: `localhost/airlock-default-base:HASH`.
    fn base_tag(&self) -> String {
        format!("{BASE_REPOSITORY}:{}", self.hash())
    }

    /// Whether debootstrap can stand in for the base: a `debian:bookworm-slim` of any registry.
    pub fn debootstrap_can_make_base(&self) -> bool {
        let name = self.base.rsplit('/').next().unwrap_or(&self.base);
        name == format!("debian:{SUITE}-slim")
    }
}

/// Whether the default image exists in an engine, for `airlock image status` and `doctor`.
#[derive(Debug, Clone)]
pub struct Status {
    /// The engine's CLI (`podman`, `docker`).
    pub engine: &'static str,
    /// The tag the current recipe builds.
    pub tag: String,
    /// Whether the engine has it.
    pub present: bool,
    /// The base image named by the recipe.
    pub base: String,
    /// Other `localhost/airlock-default` tags in the engine (older recipes).
    pub stale: Vec<String>,
}

/// Where build progress goes: one line per step (airlock prints them on stderr).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// The engine's CLI as a command, run from `/` with no standard input.
fn cli(kind: EngineKind) -> Command {
    let mut c = Command::new(kind.name());
    c.current_dir("/").stdin(Stdio::null());
    c
}

fn cli_missing(kind: EngineKind, e: &std::io::Error) -> ContainerError {
    ContainerError::NoEngine {
        engine: kind.name(),
        tried: format!("running `{}`: {e}", kind.name()),
        hint: format!(
            "install {} or pass --image with an image the engine has",
            kind.name()
        ),
    }
}

/// Whether the engine's store has `image` (`image inspect` succeeds).
///
/// # Errors
/// The engine's CLI cannot be run.
pub fn exists(kind: EngineKind, image: &str) -> Result<bool, ContainerError> {
    let st = cli(kind)
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| cli_missing(kind, &e))?;
    Ok(st.success())
}

/// The default image's state in `kind`'s engine.
///
/// # Errors
/// The engine's CLI cannot be run.
pub fn status(kind: EngineKind, recipe: &Recipe) -> Result<Status, ContainerError> {
    let tag = recipe.tag();
    let present = exists(kind, &tag)?;
    let out = cli(kind)
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| cli_missing(kind, &e))?;
    let stale = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(REPOSITORY) && *l != tag)
        .map(str::to_string)
        .collect();
    Ok(Status {
        engine: kind.name(),
        tag,
        present,
        base: recipe.base.clone(),
        stale,
    })
}

/// The default image's tag, built first when the engine lacks it (see the module doc).
///
/// # Errors
/// As [`build`].
pub fn ensure(
    kind: EngineKind,
    recipe: &Recipe,
    progress: Progress<'_>,
) -> Result<String, ContainerError> {
    let tag = recipe.tag();
    if exists(kind, &tag)? {
        return Ok(tag);
    }
    progress(&format!(
        "building the default image {tag} with {} (once: later runs reuse it; several minutes; \
         `airlock image build` does it ahead, `--image` runs your own)",
        kind.name()
    ));
    build(kind, recipe, progress)
}

/// Builds the default image (even when it exists: the engine's build is the same either way)
/// and returns its tag.
///
/// # Errors
/// No base (not in the engine, not pullable, and debootstrap absent or failing): an error naming
/// the base, the engine and the ways out. The build failing or interrupted: its last lines.
/// Either way nothing is tagged and nothing temporary is left.
pub fn build(
    kind: EngineKind,
    recipe: &Recipe,
    progress: Progress<'_>,
) -> Result<String, ContainerError> {
    let shop = Workshop::open(progress)?;
    let (base, made_base) = resolve_base(kind, recipe, progress, &shop)?;
    let built = build_on(kind, recipe, &base, progress, &shop);
    if built.is_err() && made_base {
        // A base made for a build that failed is not left behind.
        let _ = cli(kind)
            .args(["rmi", "-f", &base])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    built
}

/// The base to build on, and whether airlock made it now: the engine's copy, else a pull, else
/// debootstrap (for a `debian:bookworm-slim`), else the error with the ways out.
fn resolve_base(
    kind: EngineKind,
    recipe: &Recipe,
    progress: Progress<'_>,
    shop: &Workshop,
) -> Result<(String, bool), ContainerError> {
    if exists(kind, &recipe.base)? {
        return Ok((recipe.base.clone(), false));
    }
    let made = recipe.base_tag();
    if exists(kind, &made)? {
        progress(&format!("base: {made} (made with debootstrap before)"));
        return Ok((made, false));
    }
    progress(&format!("base: pulling {}", recipe.base));
    let pulled = cli(kind)
        .args(["pull", "-q", &recipe.base])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| cli_missing(kind, &e))?;
    if pulled.status.success() {
        return Ok((recipe.base.clone(), false));
    }
    let why = first_line(&String::from_utf8_lossy(&pulled.stderr));
    let debootstrap = debootstrap_path();
    if !nix::unistd::geteuid().is_root() {
        return Err(rootless_no_base(kind, recipe, &why));
    }
    match (recipe.debootstrap_can_make_base(), debootstrap) {
        (true, Some(debootstrap)) => {
            let mirror = host_mirror();
            progress(&format!(
                "base: cannot pull {} ({why}); making it with debootstrap --variant=minbase \
                 {SUITE} from {mirror}",
                recipe.base
            ));
            debootstrap_base(kind, recipe, &debootstrap, &mirror, progress, shop)?;
            Ok((made, true))
        }
        (can, found) => Err(no_base(kind, recipe, &why, can, found.is_some())),
    }
}

/// The error when a user's (rootless) engine can pull no base: debootstrap needs root, so the
/// ways out are `--image`, the registry, or root's build copied into the user's store.
fn rootless_no_base(kind: EngineKind, recipe: &Recipe, why: &str) -> ContainerError {
    let engine = kind.name();
    let tag = recipe.tag();
    ContainerError::Unsupported(format!(
        "image {} is not in {engine}'s store and cannot be pulled ({why}); it is the base of \
         airlock's default image {tag}, which airlock makes without a registry with \
         debootstrap, and debootstrap needs root: run your own image with --image IMAGE, or \
         let {engine} reach the registry, or build it as root and copy it into your store: \
         `sudo airlock image build --backend {engine}` then `sudo {engine} save {tag} | \
         {engine} load`",
        recipe.base
    ))
}

/// The error when no base can be had: the image, the engine and the ways out.
fn no_base(
    kind: EngineKind,
    recipe: &Recipe,
    why: &str,
    debootstrap_applies: bool,
    debootstrap_found: bool,
) -> ContainerError {
    let fallback = if !debootstrap_applies {
        format!(
            "debootstrap makes only {DEFAULT_BASE} (unset {BASE_ENV} to use it), so make {} \
             available to {}",
            recipe.base,
            kind.name()
        )
    } else if debootstrap_found {
        "debootstrap was found but is not used here".to_string()
    } else {
        format!(
            "or install debootstrap (apt-get install debootstrap) so airlock makes the base from \
             your Debian mirror, or let {} reach the registry, or `{} load` a copy",
            kind.name(),
            kind.name()
        )
    };
    ContainerError::Unsupported(format!(
        "image {} is not in {}'s store and cannot be pulled ({why}); it is the base of \
         airlock's default image {}: run your own image with --image IMAGE, {fallback}",
        recipe.base,
        kind.name(),
        recipe.tag()
    ))
}

/// Makes the base with debootstrap into a temporary directory and imports it as the recipe's
/// base tag. Root only: debootstrap makes device nodes and chroots to configure the packages,
/// which fail inside rootless Podman's user namespace (`podman unshare`: its mknod check and
/// its `arch-test -c` chroot both fail there).
fn debootstrap_base(
    kind: EngineKind,
    recipe: &Recipe,
    debootstrap: &Path,
    mirror: &str,
    progress: Progress<'_>,
    shop: &Workshop,
) -> Result<(), ContainerError> {
    let tmp = shop.temp("debootstrap")?;
    let rootfs = tmp.path().join("rootfs");
    let mut cmd = Command::new(debootstrap);
    cmd.current_dir("/").stdin(Stdio::null());
    cmd.args(["--variant=minbase", SUITE])
        .arg(&rootfs)
        .arg(mirror);
    run_streamed(cmd, "debootstrap", &debootstrap_step, progress)?;
    write_sources(&rootfs, mirror).map_err(|e| {
        ContainerError::io(format!("write apt sources into {}", rootfs.display()), e)
    })?;
    let tar = tmp.path().join("rootfs.tar");
    let mut pack = Command::new("tar");
    pack.current_dir("/").stdin(Stdio::null());
    pack.args(["--numeric-owner", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".");
    run_streamed(pack, "tar", &|_| None, progress)?;
    progress(&format!("base: importing it as {}", recipe.base_tag()));
    let mut import = cli(kind);
    import
        .args([
            "import",
            "--change",
            &format!("LABEL {RECIPE_LABEL}={}", recipe.hash()),
            "--change",
            "CMD [\"bash\"]",
        ])
        .arg(&tar)
        .arg(recipe.base_tag());
    run_streamed(import, "import", &|_| None, progress)?;
    Ok(())
}

/// The apt sources of the debootstrapped base, as Debian's image has them: the release, its
/// updates and its security updates.
fn write_sources(rootfs: &Path, mirror: &str) -> std::io::Result<()> {
    let dir = rootfs.join("etc/apt/sources.list.d");
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(rootfs.join("etc/apt/sources.list"));
    let security = host_uri_for(&format!("{SUITE}-security"))
        .unwrap_or_else(|| "http://deb.debian.org/debian-security".to_string());
    std::fs::write(
        dir.join("debian.sources"),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
}

/// The host's Debian mirror for [`SUITE`] (from `/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.{list,sources}`), else `DEBIAN_MIRROR`.
pub fn host_mirror() -> String {
    host_uri_for(SUITE).unwrap_or_else(|| DEBIAN_MIRROR.to_string())
}

/// The first URI the host's apt sources give for `suite` (one-line and deb822 formats).
fn host_uri_for(suite: &str) -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| uri_in_sources(&text, suite))
}

/// The URI `text` (an apt sources file, either format) gives for a `deb` entry of `suite`.
fn uri_in_sources(text: &str, suite: &str) -> Option<String> {
    // One-line format: `deb [options] URI SUITE COMPONENTS...`.
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(s)) = (words.next(), words.next()) {
            if s == suite {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    // deb822: paragraphs of `Key: value` with Types, URIs, Suites.
    for para in text.split("\n\n") {
        let field = |key: &str| {
            para.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let has_suite = field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
        if enabled && deb && has_suite {
            if let Some(uri) = field("URIs").and_then(|u| u.split_whitespace().next()) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// Builds the image on `base` from a temporary context holding the Containerfile.
fn build_on(
    kind: EngineKind,
    recipe: &Recipe,
    base: &str,
    progress: Progress<'_>,
    shop: &Workshop,
) -> Result<String, ContainerError> {
    let tag = recipe.tag();
    let ctx = shop.temp("context")?;
    let file = ctx.path().join("Containerfile");
    std::fs::write(&file, &recipe.containerfile)
        .map_err(|e| ContainerError::io(format!("write {}", file.display()), e))?;
    let ca = ctx.path().join("host-ca.crt");
    std::fs::write(&ca, host_ca_bundle())
        .map_err(|e| ContainerError::io(format!("write {}", ca.display()), e))?;
    let mut cmd = cli(kind);
    cmd.args(["build", "--network", "host", "--force-rm"]);
    if kind == EngineKind::Podman {
        cmd.args(["--layers=false", "--format", "docker"]);
    } else {
        // The classic builder: newer CLIs hand `docker build` to BuildKit's buildx plugin,
        // which Debian's docker.io lacks, and its `Step N/M` lines are the progress shown.
        cmd.env("DOCKER_BUILDKIT", "0");
    }
    cmd.args(["--build-arg", &format!("BASE={base}")]);
    for (k, v) in &recipe.args {
        cmd.args(["--build-arg", &format!("{k}={v}")]);
    }
    cmd.args([
        "--label",
        &format!("{RECIPE_LABEL}={}", recipe.hash()),
        "-t",
        &tag,
        "-f",
    ])
    .arg(&file)
    .arg(ctx.path());
    run_streamed(cmd, "build", &build_step, progress)?;
    progress(&format!("built {tag}"));
    Ok(tag)
}

/// The host's CA bundle (`SSL_CERT_FILE`, else Debian's, Fedora's or Alpine's bundle), for the
/// build's apt and npm downloads behind a TLS-intercepting network; empty when there is none.
/// Not one of the hashed inputs: it changes how the build downloads, not what it installs.
fn host_ca_bundle() -> Vec<u8> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find_map(|p| std::fs::read(p).ok().filter(|b| !b.is_empty()))
        .unwrap_or_default()
}

/// A build's step line (`STEP 2/9: RUN ...` from Podman, `Step 2/9 : ...` from Docker's classic
/// builder, `#5 [2/4] RUN ...` from BuildKit), shortened.
fn build_step(line: &str) -> Option<String> {
    let l = line.trim();
    let is_step = l.starts_with("STEP ")
        || l.starts_with("Step ")
        || (l.starts_with('#')
            && l.split_whitespace()
                .nth(1)
                .is_some_and(|w| w.starts_with('[')));
    is_step.then(|| shorten(l))
}

/// debootstrap's stage lines (`I: Installing core packages...`, `I: Configuring the base
/// system...`), without its per-package ones (`I: Extracting bash...`, `I: Retrieving libc6`).
fn debootstrap_step(line: &str) -> Option<String> {
    let l = line.trim().strip_prefix("I: ")?;
    let per_package = ["Retrieving ", "Validating ", "Extracting "]
        .iter()
        .any(|p| l.starts_with(p))
        || (["Unpacking ", "Configuring "]
            .iter()
            .any(|p| l.starts_with(p))
            && !(l.contains(" packages") || l.contains(" system")));
    (!per_package).then(|| format!("debootstrap: {}", shorten(l)))
}

fn shorten(l: &str) -> String {
    const MAX: usize = 120;
    match l.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &l[..i]),
        None => l.to_string(),
    }
}

/// The line of a command's error output that says what failed: the last `Error:` line (Podman
/// prints retries as warnings first), else the first non-empty one.
fn first_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    shorten(
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with("Error"))
            .or(lines.first())
            .copied()
            .unwrap_or("no output"),
    )
}

/// Runs `cmd` with its output read line by line: step lines (by `step`) go to `progress`, the
/// last lines are kept for the error.
fn run_streamed(
    mut cmd: Command,
    what: &str,
    step: &dyn Fn(&str) -> Option<String>,
    progress: Progress<'_>,
) -> Result<(), ContainerError> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ContainerError::io(format!("run {shown}"), e))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ];
    for s in streams.into_iter().flatten() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut tail = std::collections::VecDeque::with_capacity(TAIL_LINES);
    for line in rx {
        if let Some(s) = step(&line) {
            progress(&s);
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| ContainerError::io(format!("wait for {shown}"), e))?;
    if status.success() {
        return Ok(());
    }
    let lines: Vec<String> = tail.into_iter().collect();
    Err(ContainerError::Unsupported(format!(
        "the default image's {what} failed ({status}): {shown}; its last lines:\n{}\nnothing \
         was tagged; fix the cause and run again, or pass --image IMAGE",
        lines.join("\n")
    )))
}

/// The directory a build works in: `$XDG_CACHE_HOME/airlock/image-build` (or
/// `~/.cache/...`), private to the user; its lock serialises builds of one user, and each build's
/// own `PID-*` directory is removed when the build ends, or by the next build when airlock was
/// killed in the middle (its pid is gone).
#[derive(Debug)]
struct Workshop {
    dir: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Workshop {
    fn open(progress: Progress<'_>) -> Result<Workshop, ContainerError> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or_else(|| {
                ContainerError::Unsupported(
                    "neither XDG_CACHE_HOME nor HOME is set: airlock needs one to build its \
                     default image in; set HOME or pass --image IMAGE"
                        .into(),
                )
            })?;
        let dir = cache.join("airlock").join("image-build");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ContainerError::io(format!("create {}", dir.display()), e))?;
        let lock_path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ContainerError::io(format!("open {}", lock_path.display()), e))?;
        let lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            Ok(l) => l,
            Err((file, _)) => {
                progress("waiting for another airlock that is building the default image");
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
                    |(_, e)| ContainerError::io(format!("lock {}", lock_path.display()), e.into()),
                )?
            }
        };
        let shop = Workshop { dir, _lock: lock };
        shop.sweep();
        Ok(shop)
    }

    /// A new directory for this build, removed when dropped.
    fn temp(&self, what: &str) -> Result<Scratch, ContainerError> {
        tempfile::Builder::new()
            .prefix(&format!("{}-{what}-", std::process::id()))
            .tempdir_in(&self.dir)
            .map(|t| Scratch(t.keep()))
            .map_err(|e| {
                ContainerError::io(format!("create a directory in {}", self.dir.display()), e)
            })
    }

    /// Removes what builds killed midway left (their pid is gone; the lock says none runs).
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                remove_tree(&e.path());
            }
        }
    }
}

/// A build's directory, removed (with [`remove_tree`]) when dropped.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

/// Removes `dir`; files debootstrap made in rootless Podman's user namespace belong to ids
/// only that namespace's root can remove.
fn remove_tree(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_err() {
        let _ = Command::new("podman")
            .current_dir("/")
            .args(["unshare", "rm", "-rf"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The variable naming the debootstrap to use (a wrapper, say); empty: never use one.
pub const DEBOOTSTRAP_ENV: &str = "AIRLOCK_DEBOOTSTRAP";

/// The debootstrap airlock would use: `AIRLOCK_DEBOOTSTRAP` when set (empty: none), else
/// `debootstrap` in `PATH`, /usr/sbin or /sbin.
pub fn debootstrap_path() -> Option<PathBuf> {
    match std::env::var_os(DEBOOTSTRAP_ENV) {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => find_in_path("debootstrap"),
    }
}

/// `name` in `$PATH` (debootstrap lives in /usr/sbin, which a user's PATH may lack: that is
/// searched too).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_changes_the_tag() {
        let r = Recipe::from_env();
        let tag = r.tag();
        assert!(tag.starts_with("localhost/airlock-default:"), "{tag}");
        assert_eq!(tag, Recipe::from_env().tag(), "stable");
        let mut b = r.clone();
        b.base = "registry.example/debian:bookworm-slim".into();
        let mut c = r.clone();
        c.containerfile.push_str("\nRUN true\n");
        let mut v = r.clone();
        v.args[0].1 = "9.9.9".into();
        let mut k = r.clone();
        k.args[1].0 = "OTHER".into();
        let tags = [b.tag(), c.tag(), v.tag(), k.tag()];
        for (i, t) in tags.iter().enumerate() {
            assert_ne!(*t, tag, "variant {i}");
        }
        // Moving bytes from one field to the next is another recipe (length-prefixed fields).
        let mut m1 = r.clone();
        m1.args = vec![("AB".into(), "C".into())];
        let mut m2 = r.clone();
        m2.args = vec![("A".into(), "BC".into())];
        assert_ne!(m1.tag(), m2.tag());
    }

    #[test]
    fn the_containerfile_pins_what_the_recipe_passes() {
        for (k, _) in &Recipe::from_env().args {
            assert!(CONTAINERFILE.contains(&format!("ARG {k}")), "{k}");
        }
        assert!(CONTAINERFILE.contains(&format!("ARG BASE={DEFAULT_BASE}")));
    }

    /// The image's CLIs are the ones the agents tests run (scripts/test.sh pins them).
    #[test]
    fn pins_match_the_agents_tests() {
        let script = include_str!("../../../scripts/test.sh");
        for line in [
            format!("CLAUDE_CODE_VERSION={CLAUDE_CODE_VERSION}"),
            format!("CODEX_VERSION={CODEX_VERSION}"),
        ] {
            assert!(
                script.lines().any(|l| l.trim() == line),
                "{line} not in scripts/test.sh"
            );
        }
    }

    #[test]
    fn debootstrap_stands_in_only_for_debian_slim() {
        let mut r = Recipe::from_env();
        for (base, ok) in [
            (DEFAULT_BASE, true),
            ("mirror.example:5000/library/debian:bookworm-slim", true),
            ("debian:bookworm-slim", true),
            ("docker.io/library/debian:trixie-slim", false),
            ("docker.io/library/ubuntu:24.04", false),
            ("localhost/evil-debian:bookworm-slim", false),
        ] {
            r.base = base.into();
            assert_eq!(r.debootstrap_can_make_base(), ok, "{base}");
        }
    }

    #[test]
    fn mirrors_from_both_source_formats() {
        let one = "# c\ndeb [signed-by=/k.gpg arch=amd64] http://m.example/debian/ bookworm main\n\
                   deb http://s.example/debian-security bookworm-security main\n";
        assert_eq!(
            uri_in_sources(one, "bookworm").as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            uri_in_sources(one, "bookworm-security").as_deref(),
            Some("http://s.example/debian-security")
        );
        let deb822 = "Types: deb\n# http://snapshot\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb-src\nURIs: http://src.example\nSuites: trixie\n\n\
                      Types: deb\nEnabled: no\nURIs: http://off.example\nSuites: trixie\n";
        assert_eq!(
            uri_in_sources(deb822, "bookworm").as_deref(),
            Some("http://a.example/debian")
        );
        assert_eq!(uri_in_sources(deb822, "trixie"), None);
        assert_eq!(
            uri_in_sources("deb-src http://x bookworm main", "bookworm"),
            None
        );
    }

    #[test]
    fn progress_names_the_steps() {
        assert_eq!(
            build_step("STEP 3/8: RUN apt-get update").as_deref(),
            Some("STEP 3/8: RUN apt-get update")
        );
        assert!(build_step("Step 2/9 : FROM x").is_some());
        assert!(build_step("#5 [2/4] RUN npm install").is_some());
        assert!(build_step("Get:1 http://deb.debian.org bookworm InRelease").is_none());
        for shown in [
            "I: Installing core packages...",
            "I: Unpacking required packages...",
            "I: Configuring the base system...",
            "I: Base system installed successfully.",
        ] {
            assert!(debootstrap_step(shown).is_some(), "{shown}");
        }
        for hidden in [
            "I: Retrieving libc6 2.36",
            "I: Validating bash 5.2",
            "I: Extracting bash...",
            "I: Unpacking mawk...",
            "I: Configuring libc-bin...",
            "W: something",
        ] {
            assert!(debootstrap_step(hidden).is_none(), "{hidden}");
        }
    }
}
