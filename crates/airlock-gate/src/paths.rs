//! Paths as the file system resolves them. The hook runs where the agent's files are, so it can
//! `lstat` them: a path is judged as written and as it resolves through symbolic links (for a
//! path that does not exist yet, through its longest existing prefix; a dangling link through
//! its target text), and the stricter decision wins. `ws/readme.md` that is a link to
//! `~/.bashrc` is a write to `~/.bashrc`.

use std::collections::VecDeque;
use std::path::Path;

use crate::ir::Invocation;
use crate::ir::Word;
use crate::matchers::Context;
use crate::pathname::lexical;
use crate::pathname::{resolve, PathRef};

/// Most symbolic links followed for one path (as the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Resolves symbolic links in the absolute path `p`, component by component: links are
/// followed (relative targets from the link's directory), `..` after a link applies to where
/// it led, and components past the first one that does not exist are appended as written.
/// `None` when more than 40 links are met (a loop), as the kernel's `MAXSYMLINKS`.
pub fn resolve_links(p: &str) -> Option<String> {
    let mut rest: VecDeque<String> = components(p).collect();
    let mut done = String::from("/");
    let mut links = 0usize;
    let mut missing = false;
    while let Some(c) = rest.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done = parent(&done);
                continue;
            }
            _ => {}
        }
        let next = join(&done, &c);
        if missing {
            done = next;
            continue;
        }
        if per_process(&next) {
            // What these name depends on the process that opens them (the command, not this
            // hook): taken as written.
            done = next;
            continue;
        }
        match std::fs::symlink_metadata(Path::new(&next)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = std::fs::read_link(Path::new(&next)).ok()?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done = String::from("/");
                }
                for t in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    rest.push_front(t);
                }
            }
            Ok(_) => done = next,
            Err(_) => {
                missing = true;
                done = next;
            }
        }
    }
    Some(lexical(&done))
}

/// Links whose target is the opening process's own (proc(5): `/proc/self`, `/proc/thread-self`,
/// `/proc/PID/fd/N`; `/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/dev/fd`): resolving them in
/// the hook would describe the hook's descriptors, not the command's.
fn per_process(p: &str) -> bool {
    p.starts_with("/proc/")
        || matches!(p, "/dev/stdin" | "/dev/stdout" | "/dev/stderr" | "/dev/fd")
        || p.starts_with("/dev/fd/")
}

fn components(p: &str) -> impl Iterator<Item = String> + '_ {
    p.split('/').filter(|s| !s.is_empty()).map(str::to_string)
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => p[..i].to_string(),
    }
}

/// `abs` resolved, expressed under the context's workspace and home when it lies under where
/// those resolve (a workspace reached through a link stays "the workspace").
pub fn resolve_for(abs: &str, ctx: &Context<'_>) -> Option<String> {
    let real = resolve_links(abs)?;
    if real == abs {
        return Some(real);
    }
    let mut roots: Vec<&str> = Vec::with_capacity(2);
    if let Some(ws) = ctx.workspace.as_deref() {
        roots.push(ws);
    }
    roots.push(&ctx.home);
    for root in roots {
        let Some(real_root) = resolve_links(root) else {
            continue;
        };
        if real_root != root && real_root != "/" {
            if real == real_root {
                return Some(root.to_string());
            }
            if let Some(tail) = real.strip_prefix(&real_root) {
                if tail.starts_with('/') {
                    return Some(format!("{root}{tail}"));
                }
            }
        }
    }
    Some(real)
}

/// `p` with invisible characters removed and look-alike letters replaced by the ASCII ones they
/// imitate (`.clаude` with a Cyrillic `а`, `settings\u{200b}.json`), or `None` when it has
/// neither. A file so named is another file, but the name was written to pass for a protected
/// one: it is judged as that one too. (A small table of the confusables of Unicode TR 39 that
/// imitate the letters of protected names, not the whole list.)
pub fn fold_lookalikes(p: &str) -> Option<String> {
    if p.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if is_invisible(c) {
            continue;
        }
        out.push(ascii_lookalike(c).unwrap_or(c));
    }
    (out != p).then_some(out)
}

/// Zero-width and other default-ignorable characters (Unicode `Default_Ignorable_Code_Point`,
/// the ones met in practice).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The ASCII character `c` imitates: fullwidth forms, and Cyrillic, Greek and other letters
/// that look like Latin ones (TR 39 `confusables.txt`).
fn ascii_lookalike(c: char) -> Option<char> {
    let u = c as u32;
    if (0xFF01..=0xFF5E).contains(&u) {
        // Fullwidth ASCII.
        return char::from_u32(u - 0xFEE0);
    }
    Some(match c {
        'а' | 'ɑ' | 'α' => 'a',
        'Ь' | 'Ƅ' => 'b',
        'с' | 'ϲ' | 'ⅽ' => 'c',
        'ԁ' | 'ⅾ' => 'd',
        'е' | 'ҽ' | 'ℯ' => 'e',
        'ɡ' | 'ց' => 'g',
        'һ' | 'հ' => 'h',
        'і' | 'ι' | 'ı' | 'ⅰ' | 'ɩ' => 'i',
        'ј' | 'ϳ' => 'j',
        'κ' | 'к' => 'k',
        'ӏ' | 'ⅼ' | 'ǀ' | '│' => 'l',
        'ո' | 'п' => 'n',
        'о' | 'ο' | 'օ' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' | 'ꜱ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ս' => 'u',
        'ν' | 'ѵ' | 'ⅴ' => 'v',
        'ԝ' | 'ѡ' => 'w',
        'х' | 'χ' | 'ⅹ' => 'x',
        'у' | 'γ' => 'y',
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'С' | 'Ϲ' => 'C',
        'Е' | 'Ε' => 'E',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' => 'I',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'Ү' | 'Υ' => 'Y',
        'Ζ' => 'Z',
        '․' | '。' | '﹒' => '.',
        '∕' | '⁄' | '⧸' | '╱' => '/',
        '‐' | '‑' | '‒' | '–' | '−' | '﹣' => '-',
        '＿' => '_',
        _ => return None,
    })
}

/// A copy of `inv` with the resolved form of each static path it reads, writes or names added
/// next to the written one, or `None` when no path resolves elsewhere.
pub fn with_resolved_paths(inv: &Invocation, ctx: &Context<'_>) -> Option<Invocation> {
    let cwd = inv.cwd.as_deref();
    let extra = |ws: &[Word]| -> Vec<Word> {
        let mut out: Vec<Word> = ws
            .iter()
            .filter(|w| !w.glob && !w.is_dynamic())
            .filter_map(|w| match resolve(w, cwd, &ctx.home) {
                PathRef::Exact(p) => resolve_for(&p, ctx).filter(|r| *r != p),
                _ => None,
            })
            .map(|r| Word::lit(&r))
            .collect();
        // Look-alike names (`.clаude/settings.json`): judged as the name they imitate.
        out.extend(ws.iter().filter_map(|w| {
            fold_lookalikes(&w.text).map(|t| Word {
                text: t,
                ..w.clone()
            })
        }));
        out
    };
    let implied = implied_writes(inv);
    let mut w = extra(&inv.writes);
    w.extend(extra(&implied));
    w.extend(implied);
    let (mut r, p) = (extra(&inv.reads), extra(&inv.path_args));
    // `grep -r token up` where `up` is a link to the home directory: a plain word that names
    // a symbolic link is read where it leads, though it does not look like a path.
    r.extend(extra(&linked_words(inv)));
    if r.is_empty() && w.is_empty() && p.is_empty() {
        return None;
    }
    let mut out = inv.clone();
    out.reads.extend(r);
    out.writes.extend(w);
    out.path_args.extend(p);
    Some(out)
}

/// Most arguments of one command checked for being symbolic links.
const MAX_LINK_PROBES: usize = 32;

/// Static positionals that name an existing symbolic link (relative to the command's working
/// directory) and are not already among its paths.
fn linked_words(inv: &Invocation) -> Vec<Word> {
    let Some(cwd) = inv.cwd.as_deref() else {
        return Vec::new();
    };
    inv.positionals
        .iter()
        .take(MAX_LINK_PROBES)
        .filter(|w| !w.glob && !w.is_dynamic() && !w.text.is_empty())
        .filter(|w| !w.text.contains([' ', '\n', '=']) && !w.text.starts_with('-'))
        .filter(|w| {
            !inv.reads
                .iter()
                .chain(&inv.writes)
                .chain(&inv.path_args)
                .any(|p| p.text == w.text)
        })
        .filter(|w| {
            let abs = if w.text.starts_with('/') {
                w.text.clone()
            } else {
                format!("{cwd}/{}", w.text)
            };
            std::fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_symlink())
        })
        .cloned()
        .collect()
}

/// Largest patch file read for the paths it changes.
const MAX_PATCH: u64 = 4 * 1024 * 1024;

/// Files a command writes that its arguments do not name: `cp -r evil/.claude .` writes
/// `./.claude` (a copy or move into a directory keeps the source's name), and `git apply
/// x.patch`, `git am`, `patch -i x.patch`/`patch < x.patch` write the files the patch names
/// (read here: the hook runs where the workspace is; `+++`/`---`, `diff --git`, `rename to`
/// and `copy to` lines, with and without their first directory, as `-p1` would strip).
pub fn implied_writes(inv: &Invocation) -> Vec<Word> {
    let cwd = inv.cwd.as_deref().unwrap_or("/");
    match inv.program.as_str() {
        "cp" | "mv" | "install" | "ln" | "rsync" => {
            let statics: Vec<&str> = inv
                .positionals
                .iter()
                .filter_map(|w| w.as_static())
                .collect();
            if statics.len() < 2 || statics.len() != inv.positionals.len() {
                return Vec::new();
            }
            let (dest, srcs) = statics
                .split_last()
                .map(|(d, s)| (*d, s))
                .unwrap_or(("", &[]));
            srcs.iter()
                .filter(|s| !(inv.program == "rsync" && s.ends_with('/')))
                .filter_map(|s| s.trim_end_matches('/').rsplit('/').next())
                .filter(|b| !b.is_empty() && *b != "." && *b != "..")
                .map(|b| Word::lit(&format!("{}/{b}", dest.trim_end_matches('/'))))
                .collect()
        }
        "patch" | "git" => {
            let sub = inv.subcommand.as_deref();
            let files: Vec<&Word> = if inv.program == "git" {
                if !matches!(sub, Some("apply" | "am")) {
                    return Vec::new();
                }
                inv.positionals.iter().collect()
            } else {
                inv.reads
                    .iter()
                    .chain(inv.positionals.iter())
                    .chain(
                        inv.flags
                            .iter()
                            .filter(|(n, _)| n == "i" || n == "input")
                            .filter_map(|(_, v)| v.as_ref()),
                    )
                    .collect()
            };
            let mut out = Vec::new();
            for f in files {
                let Some(t) = f.as_static() else { continue };
                let path = if t.starts_with('/') {
                    t.to_string()
                } else {
                    format!("{cwd}/{t}")
                };
                out.extend(patch_targets(&path).into_iter().map(|p| Word::lit(&p)));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The paths a unified or git diff at `path` changes (empty when it cannot be read).
fn patch_targets(path: &str) -> Vec<String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    if !meta.is_file() || meta.len() > MAX_PATCH {
        return Vec::new();
    }
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for line in text.lines() {
        let names: Vec<&str> = if let Some(r) = line.strip_prefix("diff --git ") {
            r.split(' ').collect()
        } else if let Some(r) = line
            .strip_prefix("+++ ")
            .or_else(|| line.strip_prefix("--- "))
            .or_else(|| line.strip_prefix("rename to "))
            .or_else(|| line.strip_prefix("copy to "))
        {
            vec![r.split('\t').next().unwrap_or(r).trim()]
        } else {
            continue;
        };
        for n in names {
            if n.is_empty() || n == "/dev/null" {
                continue;
            }
            out.push(n.to_string());
            if let Some((_, rest)) = n.split_once('/') {
                out.push(rest.to_string());
            }
        }
        if out.len() > 4096 {
            break;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Keys of `tool_input` whose values are file content, patterns or prose, never paths.
const NOT_PATH_KEYS: &[&str] = &[
    "content",
    "old_string",
    "new_string",
    "new_source",
    "edits",
    "replace_all",
    "cell_id",
    "cell_type",
    "edit_mode",
    "offset",
    "limit",
    "output_mode",
    "type",
    "-i",
    "-n",
    "-A",
    "-B",
    "-C",
    "multiline",
    "head_limit",
    "description",
    "prompt",
];

/// The paths a file tool's input names besides its documented path field: every other
/// top-level string that looks like a path (`/…`, `~…`, `./…`, `../…`, or a relative path with
/// a `/` and no spaces), and for Glob the directory its `pattern` starts in and for Grep the
/// directory of its `glob` (`~/.ssh/*` → `~/.ssh`, under `path` when relative). The key
/// `judged` (the documented field, already decided by the caller) is left out.
pub fn tool_input_paths(
    tool: &str,
    input: &serde_json::Value,
    cwd: &str,
    judged: &str,
) -> Vec<String> {
    let Some(obj) = input.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let base = obj.get("path").and_then(|v| v.as_str()).unwrap_or(cwd);
    for (k, v) in obj {
        if k == judged {
            continue;
        }
        let Some(t) = v.as_str() else { continue };
        let pattern_key = (tool == "Glob" && k == "pattern") || (tool == "Grep" && k == "glob");
        if pattern_key {
            if let Some(dir) = pattern_dir(t, base) {
                out.push(dir);
            }
            continue;
        }
        if NOT_PATH_KEYS.contains(&k.as_str()) || (tool == "Grep" && k == "pattern") {
            continue;
        }
        let path_key = matches!(k.as_str(), "file_path" | "notebook_path" | "path");
        if (path_key && !t.is_empty()) || looks_like_path_value(t) {
            out.push(t.to_string());
        }
    }
    out
}

fn looks_like_path_value(t: &str) -> bool {
    !t.is_empty()
        && !t.contains('\n')
        && !t.contains("://")
        && (t.starts_with(['/', '~'])
            || t.starts_with("./")
            || t.starts_with("../")
            || (t.starts_with('.') && !t.contains(' '))
            || (t.contains('/') && !t.contains(' ')))
}

/// The directory a glob pattern starts in: its components before the first one with a
/// wildcard, under `base` when relative (`~/.ssh/*` → `~/.ssh`; `src/**/*.rs` → `base/src`).
fn pattern_dir(pattern: &str, base: &str) -> Option<String> {
    let mut fixed: Vec<&str> = Vec::new();
    for c in pattern.split('/') {
        if c.contains(['*', '?', '[', '{']) {
            break;
        }
        fixed.push(c);
    }
    let dir = fixed.join("/");
    if dir.is_empty() && !pattern.starts_with('/') {
        return None;
    }
    if pattern.starts_with('/') || dir.starts_with('~') {
        Some(if dir.is_empty() { "/".into() } else { dir })
    } else {
        Some(format!("{}/{dir}", base.trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/stderr` and `/proc/self/...` name the command's own descriptors: the hook's (a
    /// pipe, a terminal) must not leak into the decision.
    #[test]
    fn per_process_links_are_taken_as_written() {
        for p in [
            "/dev/stderr",
            "/dev/stdout",
            "/dev/stdin",
            "/dev/fd/2",
            "/proc/self/fd/1",
            "/proc/self/environ",
            "/proc/thread-self/fd/0",
        ] {
            assert_eq!(resolve_links(p).as_deref(), Some(p), "{p}");
        }
    }

    #[test]
    fn follows_links_prefixes_and_dangling_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = resolve_links(&dir.path().to_string_lossy()).expect("root");
        let home = format!("{root}/home");
        let ws = format!("{home}/ws");
        std::fs::create_dir_all(format!("{home}/.ssh")).expect("mkdir");
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::os::unix::fs::symlink(format!("{home}/.bashrc"), format!("{ws}/readme.md"))
            .expect("link");
        std::os::unix::fs::symlink("../.ssh", format!("{ws}/keys")).expect("link");
        std::os::unix::fs::symlink("loop", format!("{ws}/loop")).expect("link");
        // A dangling link: through its target text.
        assert_eq!(
            resolve_links(&format!("{ws}/readme.md")).as_deref(),
            Some(format!("{home}/.bashrc").as_str())
        );
        // The longest existing prefix of a new file.
        assert_eq!(
            resolve_links(&format!("{ws}/keys/new/id_rsa")).as_deref(),
            Some(format!("{home}/.ssh/new/id_rsa").as_str())
        );
        // `..` after a link applies where the link led.
        assert_eq!(
            resolve_links(&format!("{ws}/keys/../.bashrc")).as_deref(),
            Some(format!("{home}/.bashrc").as_str())
        );
        assert_eq!(resolve_links(&format!("{ws}/loop/x")), None);
        assert_eq!(
            resolve_links("/no/such/path").as_deref(),
            Some("/no/such/path")
        );
    }

    #[test]
    fn lookalikes_fold_to_what_they_imitate() {
        assert_eq!(
            fold_lookalikes(".clаude/settings.json").as_deref(),
            Some(".claude/settings.json")
        );
        assert_eq!(
            fold_lookalikes(".claude/settings\u{200b}.json").as_deref(),
            Some(".claude/settings.json")
        );
        assert_eq!(
            fold_lookalikes("～/.ѕѕh/id_rsa").as_deref(),
            Some("~/.ssh/id_rsa")
        );
        assert_eq!(
            fold_lookalikes(".bash\u{00ad}rc").as_deref(),
            Some(".bashrc")
        );
        assert_eq!(fold_lookalikes("src/main.rs"), None);
        assert_eq!(fold_lookalikes("docs/café.md"), None);
    }

    #[test]
    fn tool_input_paths_and_patterns() {
        let j = serde_json::json!({
            "notebook_path": "a.ipynb",
            "file_path": ".git/hooks/pre-commit",
            "new_source": "/etc/passwd",
            "extra": "~/.ssh/id_rsa",
        });
        let got = tool_input_paths("NotebookEdit", &j, "/w", "notebook_path");
        assert!(
            got.contains(&".git/hooks/pre-commit".to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"~/.ssh/id_rsa".to_string()), "{got:?}");
        assert!(!got.contains(&"/etc/passwd".to_string()), "{got:?}");
        let g = tool_input_paths(
            "Glob",
            &serde_json::json!({"pattern": "~/.ssh/*"}),
            "/w",
            "path",
        );
        assert_eq!(g, vec!["~/.ssh".to_string()]);
        let g = tool_input_paths(
            "Glob",
            &serde_json::json!({"pattern": "src/**/*.rs"}),
            "/w",
            "path",
        );
        assert_eq!(g, vec!["/w/src".to_string()]);
        let g = tool_input_paths(
            "Glob",
            &serde_json::json!({"pattern": "**/*.rs"}),
            "/w",
            "path",
        );
        assert!(g.is_empty(), "{g:?}");
    }
}
