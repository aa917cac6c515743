//! Task runners whose tasks are shell commands in a project file: `poe` (pyproject.toml
//! `[tool.poe.tasks]`), `tox` (tox.ini `commands`), `task` (Taskfile.yml `cmds`), and the
//! `//go:generate` lines `go generate` runs. The commands of the tasks run are judged like `sh -c`; a file that exists but cannot be read, or a task
//! form airlock does not follow, is code airlock cannot see (ask); no file: nothing runs.

use std::collections::HashSet;

use super::runfiles::{absolute, parents};
use super::{Analysis, Normalizer};
use crate::files::{read_text, written_paths, FileText};
use crate::ir::{CodeFrom, Env, Invocation, SimpleCmd, Word};

/// Most tasks followed through references and dependencies.
const MAX_TASKS: usize = 256;
/// Most directories `go generate` is read in (`./...` walks the tree below).
const MAX_GO_DIRS: usize = 512;
/// Most `.go` files read for `//go:generate` lines.
const MAX_GO_FILES: usize = 4096;
/// Most `//go:generate` lines judged.
const MAX_GO_GENERATE: usize = 256;
/// Most bytes of `.go` files read for one `go generate` (past it: code airlock cannot see).
const MAX_GO_BYTES: usize = 8 * 1024 * 1024;

/// The directories a `go generate` package pattern names (`./...`: the tree below, without
/// `vendor`, `testdata` and names starting with `.` or `_`, as go(1) skips them); `None` when
/// the pattern is not a directory here (an import path) or the walk is too large.
fn go_dirs(cwd: &str, pattern: &str, home: &str) -> Option<Vec<String>> {
    let (base, recursive) = match pattern.strip_suffix("/...") {
        Some(b) => (b, true),
        None if pattern == "..." => (".", true),
        None => (pattern, false),
    };
    if !(base.starts_with('.') || base.starts_with('/')) {
        return None;
    }
    let base = absolute(base, Some(cwd), home)?;
    let mut dirs = vec![base.clone()];
    if !recursive {
        return Some(dirs);
    }
    let mut i = 0;
    while i < dirs.len() {
        let Ok(rd) = std::fs::read_dir(&dirs[i]) else {
            if i == 0 {
                return Some(Vec::new());
            }
            return None;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let skip =
                name.starts_with(['.', '_']) || matches!(name.as_str(), "vendor" | "testdata");
            if !skip && e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(format!("{}/{name}", dirs[i].trim_end_matches('/')));
                if dirs.len() > MAX_GO_DIRS {
                    return None;
                }
            }
        }
        i += 1;
    }
    Some(dirs)
}

/// The `//go:generate` commands of the `.go` files in `dirs` (go(1) "go generate": a line
/// starting exactly with `//go:generate `), with `$GOFILE`-style variables left for the shell
/// parser to treat as unknown; `None` when a file cannot be read or a limit is passed.
fn go_generate_lines(dirs: &[String]) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    let mut files = 0usize;
    let mut bytes = 0usize;
    let written = written_paths();
    for d in dirs {
        let d = d.trim_end_matches('/');
        // Files the same tool call wrote here, which may not exist yet.
        let mut names: Vec<String> = written
            .iter()
            .filter_map(|p| p.strip_prefix(d)?.strip_prefix('/'))
            .filter(|n| !n.contains('/'))
            .map(str::to_string)
            .collect();
        if let Ok(rd) = std::fs::read_dir(d) {
            names.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        names.sort();
        names.dedup();
        for name in names {
            if !name.ends_with(".go") || name.starts_with(['.', '_']) {
                continue;
            }
            files += 1;
            if files > MAX_GO_FILES {
                return None;
            }
            let text = match read_text(&format!("{}/{name}", d.trim_end_matches('/'))) {
                FileText::Text(t) => t,
                FileText::Missing => continue,
                _ => return None,
            };
            bytes += text.len();
            if bytes > MAX_GO_BYTES {
                return None;
            }
            for l in text.lines() {
                if let Some(c) = l.strip_prefix("//go:generate ") {
                    // `-command NAME CMD…` defines an alias; its command is judged too.
                    let c = c.trim_start();
                    let c = match c.strip_prefix("-command ") {
                        Some(rest) => rest.trim_start().split_once(' ').map_or("", |(_, r)| r),
                        None => c,
                    };
                    lines.push(c.to_string());
                    if lines.len() > MAX_GO_GENERATE {
                        return None;
                    }
                }
            }
        }
    }
    Some(lines)
}

/// The first of `names` found in `cwd` or a parent directory.
fn find_up(cwd: &str, names: &[&str]) -> FileText {
    for d in parents(cwd) {
        for n in names {
            let t = read_text(&format!("{}/{n}", d.trim_end_matches('/')));
            if t != FileText::Missing {
                return t;
            }
        }
    }
    FileText::Missing
}

impl Normalizer {
    /// `go generate [PATTERNS]`: the `//go:generate` lines of the packages named, judged like
    /// `sh -c` (stricter than go's own word splitting); `-n` prints them without running. A
    /// package that is not a directory here, a file that cannot be read or a tree past the
    /// limits is code airlock cannot see.
    pub(super) fn go_generate(
        &self,
        cmd: &SimpleCmd,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let Some(cwd) = cmd.cwd.as_deref() else {
            return CodeFrom::Unseen;
        };
        // go's flags are single-dash words (`-run REGEX`, `-skip REGEX`, `-n`, `-x`, `-v`).
        let words = &inv.words;
        let start = words
            .iter()
            .position(|w| w.text == "generate")
            .map_or(0, |i| i + 1);
        let mut patterns: Vec<&Word> = Vec::new();
        let mut i = start;
        while i < words.len() {
            let t = words[i].text.as_str();
            match t {
                "-n" | "--n" => return CodeFrom::NotCode,
                // Another directory: not followed.
                "-C" | "--C" => return CodeFrom::Unseen,
                "-run" | "--run" | "-skip" | "--skip" | "-tags" | "--tags" | "-mod" | "--mod" => {
                    i += 1
                }
                _ if t.starts_with('-') => {}
                _ => patterns.push(&words[i]),
            }
            i += 1;
        }
        let mut dirs = Vec::new();
        if patterns.is_empty() {
            dirs.push(cwd.to_string());
        }
        for p in patterns {
            let Some(t) = p.as_static() else {
                return CodeFrom::Unseen;
            };
            if t.ends_with(".go") {
                // Files named: their directory.
                let Some(f) = absolute(t, Some(cwd), &env.home) else {
                    return CodeFrom::Unseen;
                };
                dirs.push(f.rsplit_once('/').map_or("/", |(d, _)| d).to_string());
                continue;
            }
            match go_dirs(cwd, t, &env.home) {
                Some(d) => dirs.extend(d),
                None => return CodeFrom::Unseen,
            }
        }
        let Some(lines) = go_generate_lines(&dirs) else {
            return CodeFrom::Unseen;
        };
        if lines.is_empty() {
            return CodeFrom::NotCode;
        }
        self.code_word(&Word::lit(&lines.join("\n")), "go generate", cmd, env, out)
    }

    /// `poe`, `tox`, `task`: the commands of the tasks run (see the module docs).
    pub(super) fn task_runner(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let Some(cwd) = cmd.cwd.as_deref() else {
            return CodeFrom::Unseen;
        };
        let wanted: Vec<String> = inv
            .subcommand
            .iter()
            .cloned()
            .chain(inv.positionals.iter().map(|w| w.text.clone()))
            .collect();
        let flag = |names: &[&str]| {
            inv.flags
                .iter()
                .find(|(n, _)| names.contains(&n.as_str()))
                .and_then(|(_, v)| v.as_ref())
                .and_then(|v| v.as_static().map(String::from))
        };
        let dir = match flag(&["C", "directory", "root", "d", "dir"]) {
            Some(d) => match absolute(&d, Some(cwd), &env.home) {
                Some(d) => d,
                None => return CodeFrom::Unseen,
            },
            None => cwd.to_string(),
        };
        let script = match prog {
            "poe" => match find_up(&dir, &["pyproject.toml", "poe_tasks.toml"]) {
                FileText::Text(t) => poe_script(&t, &wanted),
                FileText::Missing => return CodeFrom::NotCode,
                _ => None,
            },
            "tox" => match find_up(&dir, &["tox.ini"]) {
                FileText::Text(t) => Some(tox_script(&t)),
                FileText::Missing => return CodeFrom::NotCode,
                _ => None,
            },
            "task" | "go-task" => {
                match find_up(
                    &dir,
                    &[
                        "Taskfile.yml",
                        "Taskfile.yaml",
                        "taskfile.yml",
                        "taskfile.yaml",
                    ],
                ) {
                    FileText::Text(t) => taskfile_script(&t, &wanted),
                    FileText::Missing => return CodeFrom::NotCode,
                    _ => None,
                }
            }
            _ => return CodeFrom::NotCode,
        };
        match script {
            None => CodeFrom::Unseen,
            Some(s) if s.trim().is_empty() => CodeFrom::Seen,
            Some(s) => self.code_word(&Word::lit(&s), &format!("{prog} task"), cmd, env, out),
        }
    }
}

/// The commands `poe TASK` runs from `[tool.poe.tasks]` (or a `poe_tasks.toml`'s `[tasks]`):
/// `cmd` and `shell` tasks (a string task is a `cmd`), `sequence`s and `ref`s followed, `deps`
/// too; `expr` tasks and another `interpreter` are code airlock cannot see; `script` tasks
/// call a Python function of the project (judged like `python file.py`: not here).
fn poe_script(text: &str, wanted: &[String]) -> Option<String> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let tasks = doc
        .get("tool")
        .and_then(|t| t.get("poe"))
        .and_then(|p| p.get("tasks"))
        .or_else(|| doc.get("tasks"))
        .and_then(|t| t.as_table());
    let Some(tasks) = tasks else {
        return Some(String::new());
    };
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    let mut todo: Vec<toml::Value> = wanted
        .first()
        .map(|w| toml::Value::String(format!("@ref:{w}")))
        .into_iter()
        .collect();
    while let Some(task) = todo.pop() {
        if seen.len() > MAX_TASKS {
            return None;
        }
        match task {
            toml::Value::String(s) => match s.strip_prefix("@ref:") {
                Some(name) => {
                    if seen.insert(name.to_string()) {
                        if let Some(t) = tasks.get(name) {
                            todo.push(t.clone());
                        }
                    }
                }
                // A string item of a sequence names a task, else it is a command.
                None if tasks.contains_key(&s) => {
                    todo.push(toml::Value::String(format!("@ref:{s}")))
                }
                None => lines.push(s),
            },
            toml::Value::Array(items) => todo.extend(items),
            toml::Value::Table(t) => {
                if t.contains_key("expr") || t.contains_key("switch") {
                    return None;
                }
                if let Some(i) = t.get("interpreter") {
                    let ok = |v: &toml::Value| {
                        v.as_str()
                            .is_some_and(|s| matches!(s, "sh" | "bash" | "posix"))
                    };
                    let fine = ok(i) || i.as_array().is_some_and(|a| a.iter().all(ok));
                    if !fine {
                        return None;
                    }
                }
                for key in ["cmd", "shell"] {
                    match t.get(key) {
                        Some(toml::Value::String(s)) => lines.push(s.clone()),
                        Some(toml::Value::Array(a)) => lines.push(
                            a.iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(" "),
                        ),
                        Some(_) => return None,
                        None => {}
                    }
                }
                if let Some(r) = t.get("ref").and_then(|r| r.as_str()) {
                    let name = r.split_whitespace().next().unwrap_or("");
                    todo.push(toml::Value::String(format!("@ref:{name}")));
                }
                if let Some(seq) = t.get("sequence") {
                    todo.push(seq.clone());
                }
                for key in ["deps", "uses"] {
                    match t.get(key) {
                        Some(toml::Value::Array(a)) => todo.extend(
                            a.iter()
                                .filter_map(|v| v.as_str())
                                .map(|n| toml::Value::String(format!("@ref:{n}"))),
                        ),
                        Some(toml::Value::Table(m)) => todo.extend(
                            m.values()
                                .filter_map(|v| v.as_str())
                                .map(|n| toml::Value::String(format!("@ref:{n}"))),
                        ),
                        _ => {}
                    }
                }
            }
            _ => return None,
        }
    }
    Some(lines.join("\n"))
}

/// Every `commands`, `commands_pre` and `commands_post` line of tox.ini's test environments
/// (`{posargs}` and other substitutions as a placeholder word; a leading `-` ignores failure).
fn tox_script(text: &str) -> String {
    let mut lines = Vec::new();
    let mut in_env = false;
    let mut in_commands = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_env = t.starts_with("[testenv");
            in_commands = false;
            continue;
        }
        if !in_env || t.starts_with(['#', ';']) {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if !indented {
            in_commands = false;
            if let Some((k, v)) = t.split_once('=') {
                if matches!(k.trim(), "commands" | "commands_pre" | "commands_post") {
                    in_commands = true;
                    if !v.trim().is_empty() {
                        lines.push(v.trim().to_string());
                    }
                }
            }
            continue;
        }
        if in_commands && !t.is_empty() {
            lines.push(t.to_string());
        }
    }
    lines
        .iter()
        .map(|l| {
            let l = l.trim_start_matches('-').trim_start();
            substitute_braces(l)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `{posargs}`, `{toxinidir}`, `{{.CLI_ARGS}}`: a placeholder word.
fn substitute_braces(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("arg");
                }
                depth += 1;
            }
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The commands `task NAME…` runs from a Taskfile (the `default` task when none is named):
/// each task's `cmds` (a string item, or `cmd:`), `deps` and `- task:` references followed.
/// Only the block layout Taskfiles use is read: `tasks:`, two-space task names, `cmds:`/`deps:`
/// lists; anything else under a task (`cmds: |` blocks, flow lists) is code airlock cannot see.
fn taskfile_script(text: &str, wanted: &[String]) -> Option<String> {
    #[derive(Default)]
    struct Task {
        cmds: Vec<String>,
        deps: Vec<String>,
    }
    let mut tasks: Vec<(String, Task)> = Vec::new();
    let mut in_tasks = false;
    let mut task_indent = None;
    let mut list: Option<&'static str> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 0 {
            in_tasks = t == "tasks:";
            task_indent = None;
            list = None;
            continue;
        }
        if !in_tasks {
            continue;
        }
        let ti = *task_indent.get_or_insert(indent);
        if indent == ti {
            let name = t.strip_suffix(':')?.trim_matches(['"', '\'']);
            tasks.push((name.to_string(), Task::default()));
            list = None;
            continue;
        }
        let (_, task) = tasks.last_mut()?;
        if let Some(key) = t.strip_suffix(':') {
            list = match key {
                "cmds" => Some("cmds"),
                "deps" => Some("deps"),
                _ => None,
            };
            continue;
        }
        if let Some((key, value)) = t.split_once(": ").filter(|_| !t.starts_with("- ")) {
            let value = value.trim();
            let flow = value
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .map(|v| {
                    v.split(',')
                        .map(|i| i.trim().trim_matches(['"', '\'']).to_string())
                        .filter(|i| !i.is_empty())
                        .collect::<Vec<_>>()
                });
            match (key, flow) {
                ("deps", Some(items)) => task.deps.extend(items),
                ("cmds", Some(items)) if items.iter().all(|i| !i.contains([':', '{'])) => {
                    task.cmds.extend(items)
                }
                ("cmd", None) if !matches!(value, "|" | ">" | "|-" | ">-") => {
                    task.cmds.push(value.trim_matches(['"', '\'']).to_string())
                }
                // `cmds: |`, a flow list of tables: not read.
                ("cmds" | "deps" | "cmd", _) => return None,
                _ => {}
            }
            list = None;
            continue;
        }
        let Some(item) = t.strip_prefix("- ") else {
            continue;
        };
        let item = item.trim();
        match list {
            Some("cmds") => {
                if let Some(v) = item.strip_prefix("cmd:") {
                    let v = v.trim();
                    if v == "|" || v == ">" {
                        return None;
                    }
                    task.cmds.push(v.trim_matches(['"', '\'']).to_string());
                } else if let Some(v) = item.strip_prefix("task:") {
                    task.deps
                        .push(v.trim().trim_matches(['"', '\'']).to_string());
                } else if item.contains(": ") && !item.starts_with(['"', '\'']) {
                    return None;
                } else {
                    task.cmds.push(item.trim_matches(['"', '\'']).to_string());
                }
            }
            Some("deps") => task.deps.push(
                item.trim_start_matches("task:")
                    .trim()
                    .trim_matches(['"', '\''])
                    .to_string(),
            ),
            _ => {}
        }
    }
    let mut todo: Vec<String> = wanted
        .iter()
        .filter(|w| !w.starts_with('-') && !w.contains('='))
        .cloned()
        .collect();
    if todo.is_empty() {
        todo.push("default".into());
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    while let Some(n) = todo.pop() {
        if seen.len() > MAX_TASKS {
            return None;
        }
        if !seen.insert(n.clone()) {
            continue;
        }
        for (_, t) in tasks.iter().filter(|(name, _)| *name == n) {
            todo.extend(t.deps.iter().cloned());
            lines.extend(t.cmds.iter().map(|c| substitute_braces(c)));
        }
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poe_tasks() {
        let text = "[tool.poe.tasks]\ntest = \"pytest -q\"\nlint = { cmd = \"ruff check .\" }\nall = [\"lint\", \"test\", \"sudo id\"]\nsh = { shell = \"rm -rf ~\" }\npy = { shell = \"x\", interpreter = \"python\" }\ne = { expr = \"1\" }\n";
        assert_eq!(
            poe_script(text, &["test".into()]).as_deref(),
            Some("pytest -q")
        );
        let all = poe_script(text, &["all".into()]).unwrap_or_default();
        assert!(
            all.contains("sudo id") && all.contains("ruff check") && all.contains("pytest"),
            "{all}"
        );
        assert_eq!(
            poe_script(text, &["sh".into()]).as_deref(),
            Some("rm -rf ~")
        );
        assert!(poe_script(text, &["py".into()]).is_none());
        assert!(poe_script(text, &["e".into()]).is_none());
    }

    #[test]
    fn tox_commands() {
        let text = "[tox]\nenvlist = py311\n\n[testenv]\ndeps = pytest\ncommands =\n    pytest {posargs}\n    - sudo id\n\n[flake8]\nmax-line-length = 100\n";
        let s = tox_script(text);
        assert!(s.contains("pytest arg") && s.contains("sudo id"), "{s}");
        assert!(!s.contains("max-line"), "{s}");
    }

    #[test]
    fn taskfile_tasks() {
        let text = "version: '3'\n\ntasks:\n  default:\n    deps: [build]\n  build:\n    cmds:\n      - go build ./...\n      - task: gen\n  gen:\n    cmds:\n      - cmd: sudo id\n  deploy:\n    cmds:\n      - rm -rf ~\n";
        let s = taskfile_script(text, &[]).unwrap_or_default();
        assert!(s.contains("go build") && s.contains("sudo id"), "{s}");
        assert!(taskfile_script("tasks:\n  x:\n    cmds: |\n      id\n", &[]).is_none());
        let s = taskfile_script(text, &["build".into()]).unwrap_or_default();
        assert!(
            s.contains("go build") && s.contains("sudo id") && !s.contains("rm -rf"),
            "{s}"
        );
        let s = taskfile_script(text, &["deploy".into()]).unwrap_or_default();
        assert!(s.contains("rm -rf ~"), "{s}");
    }
}
