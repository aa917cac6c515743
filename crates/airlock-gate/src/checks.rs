//! Predicates for rules (`check = "…"`) about where a command reaches beyond the workspace:
//! git fetching from a URL nobody configured, cargo config values that run programs, and
//! container runs that mount host paths or share host namespaces.

use crate::git::url_owner;
use crate::ir::Invocation;
use crate::ir::{FileContent, Word, DYN};
use crate::matchers::{Match, MatchCtx};
use crate::pathname::is_scratch;
use crate::pathname::lexical;

/// Remote names whose URLs say which owner the project belongs to.
const PROJECT_REMOTES: &[&str] = &["origin", "upstream"];

/// The host of a URL (`https://u@h:1/x` → `h`, `git@h:o/r` → `h`), lowercased.
fn url_host(url: &str) -> Option<String> {
    let rest = match url.split_once("://") {
        Some((_, r)) => r.split('/').next()?,
        None => url.split_once(':')?.0,
    };
    let host = rest.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether `r` names a repository by URL or path rather than by remote name.
fn url_like(r: &str) -> bool {
    r.contains("://") || r.contains(':') || r.starts_with(['/', '.', '~'])
}

/// The repository argument of a fetching git command: `git fetch|pull|ls-remote|clone|
/// fetch-pack REPO`, `git submodule add REPO`, `git remote add NAME REPO` is left to
/// `git-remote-tamper`.
fn fetched_repo(inv: &Invocation) -> Option<&Word> {
    match inv.subcommand.as_deref()? {
        "fetch" | "pull" | "ls-remote" | "clone" | "fetch-pack" => inv.positionals.first(),
        "submodule" => {
            let at = inv.positionals.iter().position(|w| w.text == "add")?;
            inv.positionals.get(at + 1)
        }
        _ => None,
    }
}

/// `git fetch/pull/ls-remote/clone URL` (and `submodule add URL`) of a repository that is not a
/// configured remote and not owned by the owner of the project's remotes (`origin`,
/// `upstream`) nor by the agent's identity (`git_owners`): code from anywhere. A path inside
/// the workspace is fine.
pub fn git_fetch_url(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    if inv.program != "git" {
        return Match::No;
    }
    let Some(repo) = fetched_repo(inv) else {
        return Match::No;
    };
    if repo.is_dynamic() {
        return Match::Possible;
    }
    let r = repo.text.as_str();
    if !url_like(r) || ctx.git.remote_url(r).is_some() {
        return Match::No;
    }
    if !r.contains("://") && (r.starts_with(['/', '.', '~']) || !r.contains('@')) {
        // A local path (`../lib`, `/srv/repo.git`): fine inside the workspace.
        let abs = if r.starts_with('/') {
            lexical(r)
        } else if let Some(rest) = r.strip_prefix('~') {
            lexical(&format!("{}{rest}", ctx.home))
        } else {
            lexical(&format!("{}/{r}", inv.cwd.as_deref().unwrap_or("/")))
        };
        let inside = ctx.workspace.is_some_and(|ws| {
            abs == ws || abs.starts_with(&format!("{}/", ws.trim_end_matches('/')))
        });
        if inside && !r.contains(':') {
            return Match::No;
        }
        if !r.contains(':') {
            return Match::Yes;
        }
    }
    if r.starts_with("ext::") || r.starts_with("fd::") {
        return Match::Yes;
    }
    let (Some(host), Some(owner)) = (url_host(r), url_owner(r)) else {
        return Match::Yes;
    };
    if ctx.owners.iter().any(|o| o.eq_ignore_ascii_case(&owner)) {
        return Match::No;
    }
    let same_project = PROJECT_REMOTES.iter().any(|name| {
        ctx.git.remote_url(name).is_some_and(|u| {
            url_host(&u).as_deref() == Some(host.as_str())
                && url_owner(&u).as_deref() == Some(owner.as_str())
        })
    });
    Match::from_bool_pub(!same_project)
}

/// cargo config keys (globs, lowercased) whose value runs a program, changes what is built
/// with or where code comes from (The Cargo Book, "Configuration").
const CARGO_CODE_KEYS: &[&str] = &[
    "alias.*",
    "target.*",
    "host.*",
    "build.rustc",
    "build.rustc-*",
    "build.rustdoc",
    "build.rustflags",
    "build.rustdocflags",
    "env.*",
    "credential-provider",
    "registry.*",
    "registries.*",
    "source.*",
    "patch.*",
    "paths",
    "http.proxy",
    "http.cainfo",
    "http.check-revoke",
    "net.git-fetch-with-cli",
    "doc.browser",
    "unstable.*",
];

/// `cargo --config KEY=VALUE` with a key that runs code (`CARGO_CODE_KEYS`); `--config FILE`
/// (a file airlock has not read): possible.
pub fn cargo_config_code(inv: &Invocation) -> Match {
    if inv.program != "cargo" {
        return Match::No;
    }
    let mut m = Match::No;
    let mut words = inv.words.iter();
    while let Some(w) = words.next() {
        let value = if w.text == "--config" {
            match words.next() {
                Some(v) => v.clone(),
                None => continue,
            }
        } else if let Some(v) = w.text.strip_prefix("--config=") {
            Word {
                text: v.to_string(),
                ..w.clone()
            }
        } else {
            continue;
        };
        if value.is_dynamic() {
            m = m.max(Match::Possible);
            continue;
        }
        let Some((key, _)) = value.text.split_once('=') else {
            m = m.max(Match::Possible);
            continue;
        };
        let key: String = key
            .chars()
            .filter(|c| !matches!(c, '"' | '\'' | ' ' | '\t'))
            .collect::<String>()
            .to_ascii_lowercase();
        let code_key = CARGO_CODE_KEYS.iter().any(|g| match g.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == *g,
        });
        if code_key {
            return Match::Yes;
        }
    }
    m
}

/// Container subcommands that start a container.
const RUN_SUBCOMMANDS: &[&str] = &["run", "create", "container", "compose", "service"];
/// Namespaces a container can share with the host (`--pid host`).
const HOST_NAMESPACES: &[&str] = &[
    "--pid",
    "--net",
    "--network",
    "--ipc",
    "--uts",
    "--userns",
    "--cgroupns",
];

/// `docker|podman run` mounting a host path outside the workspace (`-v /:/h`, `-v $HOME:/h`,
/// `--mount type=bind,src=/etc,…`) or sharing a host namespace (`--network host`). The
/// workspace (`$(pwd)`, `$PWD`, `.`) and scratch directories may be mounted.
pub fn container_host_mount(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    if !inv
        .subcommand
        .as_deref()
        .is_some_and(|s| RUN_SUBCOMMANDS.contains(&s))
    {
        return Match::No;
    }
    let mut m = Match::No;
    let words = &inv.words;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let t = w.text.as_str();
        let (opt, attached) = match t.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v)),
            _ => (t, None),
        };
        let value = |i: usize| -> Option<Word> {
            match attached {
                Some(v) => Some(Word {
                    text: v.to_string(),
                    ..w.clone()
                }),
                None => words.get(i + 1).cloned(),
            }
        };
        if HOST_NAMESPACES.contains(&opt) {
            if let Some(v) = value(i) {
                if v.text == "host" {
                    return Match::Yes;
                }
            }
        }
        let source = match opt {
            "-v" | "--volume" => value(i).map(|v| volume_source(&v)),
            "--mount" => value(i).map(|v| mount_source(&v)),
            _ if t.starts_with("-v") && t.len() > 2 && !t.starts_with("--") => {
                let v = Word {
                    text: t[2..].to_string(),
                    ..w.clone()
                };
                Some(volume_source(&v))
            }
            _ => None,
        };
        if let Some(Some(src)) = source {
            m = m.max(judge_host_path(&src, inv.cwd.as_deref(), ctx));
        }
        i += 1;
    }
    m
}

/// The host side of `-v SRC:DST[:OPTS]`; `None` for a named or anonymous volume.
fn volume_source(v: &Word) -> Option<Word> {
    let t = v.text.as_str();
    let (src, _) = t.split_once(':')?;
    host_source(v, src)
}

/// The host side of `--mount type=bind,src=…,dst=…`; `None` for other mount types.
fn mount_source(v: &Word) -> Option<Word> {
    let mut kind = None;
    let mut src = None;
    for kv in v.text.split(',') {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => kind = Some(val),
            "source" | "src" => src = Some(val),
            _ => {}
        }
    }
    let src = src?;
    if kind.is_some_and(|k| k != "bind") && !src.starts_with('/') {
        return None;
    }
    host_source(v, src)
}

fn host_source(v: &Word, src: &str) -> Option<Word> {
    if !(src.starts_with(['/', '.', '~']) || src.starts_with(DYN)) {
        return None;
    }
    Some(Word {
        text: src.to_string(),
        ..v.clone()
    })
}

/// A host path mounted into a container: inside the workspace or a scratch directory is fine;
/// anything else leaves the box. `$(pwd)`/`$PWD` stand for the working directory.
fn judge_host_path(src: &Word, cwd: Option<&str>, ctx: &MatchCtx<'_>) -> Match {
    let mut text = src.text.clone();
    if text.starts_with(DYN) {
        let raw = src.raw.to_ascii_lowercase();
        let pwd = ["$(pwd)", "${pwd}", "$pwd", "`pwd`", "$(pwd -p)"]
            .iter()
            .any(|p| raw.contains(p));
        let home = raw.contains("$home") || raw.contains("${home}");
        let rest = text.trim_start_matches(DYN).to_string();
        if rest.contains(DYN) {
            return Match::Possible;
        }
        text = match (pwd, home, cwd) {
            (true, _, Some(c)) => format!("{c}{rest}"),
            (_, true, _) => format!("{}{rest}", ctx.home),
            _ => return Match::Possible,
        };
    }
    let abs = if let Some(rest) = text.strip_prefix('~') {
        lexical(&format!("{}{rest}", ctx.home))
    } else if text.starts_with('/') {
        lexical(&text)
    } else {
        match cwd {
            Some(c) => lexical(&format!("{c}/{text}")),
            None => return Match::Possible,
        }
    };
    let under = |dir: &str| {
        let d = dir.trim_end_matches('/');
        abs == d || abs.starts_with(&format!("{d}/"))
    };
    if ctx.workspace.is_some_and(under) {
        return Match::No;
    }
    // A directory holding the workspace (`../..`) is wider than it, wherever it is.
    if ctx.workspace.is_some_and(|w| {
        let w = w.trim_end_matches('/');
        w.starts_with(&format!("{}/", abs.trim_end_matches('/'))) || abs == "/"
    }) {
        return Match::Yes;
    }
    // Scratch directories are fine, unless the home directory itself lives there: then the
    // home (its keys included) is what the mount names. (Not /dev/shm: the host's shared
    // memory segments are no scratch space for a container.)
    if is_scratch(&abs, ctx.home, MOUNT_SCRATCH_DIRS, true) {
        return Match::No;
    }
    Match::Yes
}

/// Host directories a container may mount as scratch space (see [`is_scratch`]).
const MOUNT_SCRATCH_DIRS: &[&str] = &["/tmp", "/var/tmp"];

/// Compose verbs that start containers.
const COMPOSE_START: &[&str] = &["up", "run", "create", "start", "restart", "watch"];
/// Compose files looked for when none is given (compose-spec "Compose file").
const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// `docker compose up` (and `run`, `create`, `start`; `docker-compose`, `podman-compose`) of a
/// compose file that mounts a host path outside the workspace, shares a host namespace, runs
/// privileged or reaches the engine socket (the file is read where the hook runs: the agent
/// may have written it). A file that cannot be read: possible.
pub fn compose_host_access(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    let words: Vec<&str> = inv.words.iter().map(|w| w.text.as_str()).collect();
    let compose = match inv.program.as_str() {
        "docker" | "podman" | "nerdctl" | "finch" => inv.subcommand.as_deref() == Some("compose"),
        "docker-compose" | "podman-compose" => true,
        _ => false,
    };
    if !compose || !words.iter().any(|w| COMPOSE_START.contains(w)) {
        return Match::No;
    }
    let Some(cwd) = inv.cwd.as_deref() else {
        return Match::Possible;
    };
    let mut files = Vec::new();
    for (i, w) in inv.words.iter().enumerate() {
        let value = match w.text.as_str() {
            "-f" | "--file" => inv.words.get(i + 1).cloned(),
            t => t.strip_prefix("--file=").map(Word::lit),
        };
        if let Some(v) = value {
            match v.as_static() {
                Some(p) if p.starts_with('/') => files.push(lexical(p)),
                Some(p) => files.push(lexical(&format!("{cwd}/{p}"))),
                None => return Match::Possible,
            }
        }
    }
    let written = |p: &str| inv.written.iter().find(|(w, _)| w == p).map(|(_, c)| c);
    if files.is_empty() {
        files.extend(
            COMPOSE_FILES
                .iter()
                .map(|n| format!("{cwd}/{n}"))
                .find(|p| written(p).is_some() || std::path::Path::new(p).exists()),
        );
    }
    let mut m = Match::No;
    for f in files {
        // Written earlier in the same tool call: judged as written (unseen content: possible).
        let text = match written(&f) {
            Some(FileContent::Text(t)) => t.clone(),
            Some(_) => return Match::Possible,
            None => match crate::files::read_text(&f) {
                crate::files::FileText::Text(t) => t,
                crate::files::FileText::Missing => continue,
                _ => return Match::Possible,
            },
        };
        let dir = f.rsplit_once('/').map_or("/", |(d, _)| d).to_string();
        m = m.max(compose_text(&text, &dir, ctx));
        if m == Match::Yes {
            break;
        }
    }
    m
}

/// What a compose file's text grants: see [`compose_host_access`]. Read line by line (no YAML
/// parser): `privileged: true`, `network_mode`/`pid`/`ipc`/`userns_mode: host`, the engine
/// socket, `cap_add`, and the host side of short (`- SRC:DST`) and long (`source: SRC`)
/// volume syntax.
fn compose_text(text: &str, dir: &str, ctx: &MatchCtx<'_>) -> Match {
    let mut m = Match::No;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let unquote = |s: &str| s.trim().trim_matches(['"', '\'']).to_string();
        if let Some((k, v)) = t.split_once(':') {
            let (k, v) = (k.trim().trim_start_matches("- "), unquote(v));
            match k {
                "privileged" if v == "true" => return Match::Yes,
                "network_mode" | "pid" | "ipc" | "userns_mode" | "uts" | "cgroup"
                    if v == "host" =>
                {
                    return Match::Yes
                }
                "cap_add" | "devices" | "security_opt" => m = m.max(Match::Possible),
                "source" => {
                    let src = host_path_text(&v, dir, ctx);
                    m = m.max(src);
                }
                _ => {}
            }
        }
        if t.contains("docker.sock") || t.contains("podman.sock") {
            return Match::Yes;
        }
        if let Some(item) = t.strip_prefix("- ") {
            let item = unquote(item);
            if let Some((src, _)) = item.split_once(':') {
                if src.starts_with(['/', '~', '.', '$']) {
                    m = m.max(host_path_text(src, dir, ctx));
                }
            }
        }
        if m == Match::Yes {
            break;
        }
    }
    m
}

/// A compose host path (`./data`, `${HOME}/x`, `$PWD`, `/`) judged like a `-v` source.
fn host_path_text(src: &str, dir: &str, ctx: &MatchCtx<'_>) -> Match {
    if !src.starts_with(['/', '~', '.', '$']) {
        return Match::No;
    }
    let mut s = src.to_string();
    for (var, value) in [
        ("${HOME}", ctx.home),
        ("$HOME", ctx.home),
        ("${PWD}", dir),
        ("$PWD", dir),
    ] {
        if let Some(rest) = s.strip_prefix(var) {
            s = format!("{value}{rest}");
        }
    }
    if s.starts_with('$') {
        return Match::Possible;
    }
    judge_host_path(&Word::lit(&s), Some(dir), ctx)
}

/// A git command run in a repository outside the workspace (`git -C DIR`, `--git-dir`,
/// `--work-tree`, or a working directory outside it) whose config sets a key whose value runs
/// a program (`core.fsmonitor`, `core.pager`, `alias.*`, … the `git_exec_keys`) or that has
/// hooks: the agent may have written that repository (files written then run). A config that
/// cannot be read: possible.
pub fn git_foreign_repo(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    if inv.program != "git" {
        return Match::No;
    }
    let flag = |name: &str| {
        inv.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    };
    let cwd = inv.cwd.as_deref();
    let abs = |w: &Word, base: Option<&str>| -> Option<String> {
        let t = w.as_static()?;
        if t.starts_with('/') {
            Some(lexical(t))
        } else if let Some(rest) = t.strip_prefix('~') {
            Some(lexical(&format!("{}{rest}", ctx.home)))
        } else {
            base.map(|b| lexical(&format!("{b}/{t}")))
        }
    };
    let mut dir = cwd.map(str::to_string);
    if let Some(c) = flag("C") {
        match abs(&c, cwd) {
            Some(d) => dir = Some(d),
            None => return Match::Possible,
        }
    }
    let git_dir = match flag("git-dir") {
        Some(g) => match abs(&g, dir.as_deref()) {
            Some(d) => Some(d),
            None => return Match::Possible,
        },
        None => None,
    };
    let inside = |p: &str| {
        ctx.workspace.is_some_and(|ws| {
            let ws = ws.trim_end_matches('/');
            p == ws || p.starts_with(&format!("{ws}/"))
        })
    };
    let git_dir = match (git_dir, dir) {
        (Some(g), _) => g,
        (None, Some(d)) => {
            if inside(&d) {
                return Match::No;
            }
            // The repository around `d`: its nearest `.git`.
            match crate::git::find_git_dir(std::path::Path::new(&d)) {
                Some((_, gd)) => gd.to_string_lossy().into_owned(),
                None => return Match::No,
            }
        }
        (None, None) => return Match::Possible,
    };
    if inside(&git_dir) {
        return Match::No;
    }
    let config = match crate::files::read_text(&format!("{git_dir}/config")) {
        crate::files::FileText::Text(t) => t,
        crate::files::FileText::Missing => String::new(),
        _ => return Match::Possible,
    };
    if config_has_exec_key(&config, ctx) {
        return Match::Yes;
    }
    let hooks = std::fs::read_dir(format!("{git_dir}/hooks"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| !e.file_name().to_string_lossy().ends_with(".sample"))
        })
        .unwrap_or(false);
    Match::from_bool_pub(hooks)
}

/// Whether git config text sets one of the `git_exec_keys` (sections as `[section]` and
/// `[section "sub"]`; keys lowercased).
fn config_has_exec_key(text: &str, ctx: &MatchCtx<'_>) -> bool {
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with(['#', ';']) || t.is_empty() {
            continue;
        }
        if let Some(h) = t.strip_prefix('[') {
            let h = h.split(']').next().unwrap_or("");
            section = match h.split_once(char::is_whitespace) {
                Some((s, sub)) => format!(
                    "{}.{}",
                    s.to_ascii_lowercase(),
                    sub.trim().trim_matches('"')
                ),
                None => h.to_ascii_lowercase(),
            };
            continue;
        }
        let key = t
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let full = format!("{section}.{key}");
        if ctx.git_exec_keys.iter().any(|g| g.matches(&full)) {
            return true;
        }
    }
    false
}

/// `mv SRC… DEST` (`mv -t DIR SRC…`, `rsync --remove-source-files`) whose source is the workspace itself or its `.git`
/// (`ancestor` false), or a directory that contains the workspace (`ancestor` true: `mv ~
/// /tmp/x`): the workspace is gone from where the user keeps it, as if deleted.
pub fn moves_workspace(inv: &Invocation, ctx: &MatchCtx<'_>, ancestor: bool) -> Match {
    // `rsync --remove-source-files SRC DEST` moves too (rsync(1)).
    let moves = match inv.program.as_str() {
        "mv" | "gmv" => true,
        "rsync" => inv.flags.iter().any(|(n, _)| n == "remove-source-files"),
        _ => false,
    };
    if !moves {
        return Match::No;
    }
    let Some(ws) = ctx.workspace.map(|w| w.trim_end_matches('/').to_string()) else {
        return Match::No;
    };
    let target_dir = inv
        .flags
        .iter()
        .any(|(n, _)| n == "t" || n == "target-directory");
    let sources = if target_dir {
        &inv.positionals[..]
    } else {
        &inv.positionals[..inv.positionals.len().saturating_sub(1)]
    };
    let mut m = Match::No;
    for w in sources {
        let Some(t) = w.as_static() else {
            continue;
        };
        let abs = if t.starts_with('/') {
            lexical(t)
        } else if t == "~" || t.starts_with("~/") {
            lexical(&format!("{}{}", ctx.home, &t[1..]))
        } else {
            match inv.cwd.as_deref() {
                Some(c) => lexical(&format!("{c}/{t}")),
                None => continue,
            }
        };
        let abs = abs.trim_end_matches('/');
        let abs = if abs.is_empty() { "/" } else { abs };
        let hit = if ancestor {
            abs != ws && (abs == "/" || ws.starts_with(&format!("{abs}/")))
        } else {
            abs == ws || abs == format!("{ws}/.git")
        };
        if hit {
            m = Match::Yes;
        }
    }
    m
}

/// A static file server started without a directory argument (`python3 -m http.server`, `php
/// -S`, `http-server`, `miniserve`…) serves its working directory: matches when that is the
/// home directory or the root of the disk (`cd ~ && python3 -m http.server`). A directory
/// given as an argument is left to the `serve-home` rule's paths.
pub fn serves_home_cwd(inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    let names_dir = |w: &Word| {
        let t = w.text.as_str();
        !t.is_empty() && !t.bytes().all(|b| b.is_ascii_digit()) && !t.contains(':')
    };
    let dir_flag = inv.flags.iter().any(|(n, _)| {
        matches!(
            n.as_str(),
            "directory" | "d" | "t" | "root" | "docroot" | "path" | "p" | "dir"
        )
    });
    let serves_cwd = match inv.program.as_str() {
        "http.server" | "SimpleHTTPServer" => !dir_flag,
        "php" => {
            inv.flags.iter().any(|(n, _)| n == "S") && !inv.flags.iter().any(|(n, _)| n == "t")
        }
        "http-server" | "serve" | "live-server" | "miniserve" | "darkhttpd" => {
            !inv.positionals.iter().any(names_dir)
        }
        _ => false,
    };
    if !serves_cwd {
        return Match::No;
    }
    match inv.cwd.as_deref().map(|c| c.trim_end_matches('/')) {
        None => Match::No,
        Some(c) => Match::from_bool(
            c.is_empty()
                || c == ctx.home.trim_end_matches('/')
                || matches!(c, "/home" | "/root" | "/Users"),
        ),
    }
}

/// Whether the command's output reaches the reader: not when its only consumer prints just a
/// count or a status (`| wc -l`, `| grep -c X`, `| grep -q X`), so `env | grep -c PATH` shows no
/// value. Anything else (another consumer, a word only known at run time) is shown.
pub fn output_shown(inv: &Invocation) -> Match {
    let [only] = inv.downstream_argv.as_slice() else {
        return Match::Yes;
    };
    if inv.downstream.len() != 1 {
        return Match::Yes;
    }
    let mut words = only.split_whitespace();
    let prog = words.next().unwrap_or("");
    let prog = prog.rsplit('/').next().unwrap_or(prog);
    let rest: Vec<&str> = words.collect();
    let counted = match prog {
        "wc" => true,
        "grep" | "egrep" | "fgrep" | "rg" => rest.iter().any(|w| {
            matches!(*w, "--count" | "--quiet" | "--silent")
                || (w.starts_with('-')
                    && !w.starts_with("--")
                    && w[1..].chars().all(|c| c.is_ascii_alphabetic())
                    && w[1..].contains(['c', 'q']))
        }),
        _ => false,
    };
    Match::from_bool(!counted)
}
