//! Code a command runs from files, found where the hook runs (it can read the workspace): a
//! shell script run by path or through a shell (`./x.sh`, `bash x.sh`, `. x.sh`), the recipes
//! of the Makefile targets `make` builds, the `package.json` scripts `npm run X` runs (with
//! their `pre`/`post` scripts), the recipes of a `justfile`; and packages that runners such as
//! `npx` or `uvx` fetch from a registry.
//!
//! The content is parsed and judged like `sh -c`. A file that exists but cannot be read, is not
//! UTF-8 text or is larger than [`MAX_FILE_BYTES`] is code airlock cannot see (ask); a file that
//! does not exist runs nothing (the command fails), except in a slot whose value is code
//! ([`Normalizer::code_value`]): there a program named by a path that cannot be read is code
//! airlock cannot see.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::{Analysis, Normalizer};
use crate::files::{read_text, written, FileText};
use crate::ir::{CodeFrom, Env, FileContent, Invocation, SimpleCmd, Stdin, Word, DYN};
use crate::pathname::{basename, lexical};
use crate::schema::WrapperSpec;

/// Most Makefile targets followed through prerequisites.
const MAX_TARGETS: usize = 256;
/// Most rounds of `$(VAR)` expansion in one Makefile or justfile line.
const MAX_EXPANSIONS: usize = 8;
/// Longest Makefile recipe text after `$(VAR)` expansion (bytes): past it the recipes are code
/// airlock cannot see (a variable that doubles at every level grows exponentially).
const MAX_EXPANDED: usize = 64 * 1024;
/// Most files a Makefile `include`s (transitively).
const MAX_INCLUDES: usize = 8;
/// Most parent directories searched for `package.json` or a justfile.
const MAX_PARENTS: usize = 32;

/// `p` made absolute against `cwd`; `None` when `p` is relative and the directory unknown.
pub(super) fn absolute(p: &str, cwd: Option<&str>, home: &str) -> Option<String> {
    if p.starts_with('/') {
        Some(lexical(p))
    } else if p == "~" || p.starts_with("~/") {
        Some(lexical(&format!("{home}{}", &p[1..])))
    } else {
        cwd.map(|c| lexical(&format!("{c}/{p}")))
    }
}

/// Whether a script's first line says a POSIX-like shell runs it (or it has no `#!` line, so a
/// shell does).
fn is_shell_text(text: &str) -> bool {
    let Some(first) = text.lines().next() else {
        return true;
    };
    let Some(interp) = first.strip_prefix("#!") else {
        return true;
    };
    interp.split_whitespace().take(2).any(|w| {
        matches!(
            basename(w).as_str(),
            "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "yash" | "posh"
        )
    })
}

/// Directories from `start` up to `/` (at most [`MAX_PARENTS`]).
pub(super) fn parents(start: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = start.to_string();
    for _ in 0..MAX_PARENTS {
        out.push(cur.clone());
        if cur == "/" || cur.is_empty() {
            break;
        }
        cur = match cur.rsplit_once('/') {
            Some(("", _)) => "/".to_string(),
            Some((p, _)) => p.to_string(),
            None => break,
        };
    }
    out
}

impl Normalizer {
    /// Whether `name` is an environment variable whose value runs as a command (`exec_env`,
    /// globs such as `CARGO_TARGET_*_RUNNER`).
    pub(super) fn is_exec_env(&self, name: &str) -> bool {
        self.exec_env.iter().any(|g| g.matches(name))
    }

    /// A value that is code (`VAR=CMD` of `exec_env`, a code-valued option, a git config key
    /// that runs): like `sh -c VALUE`, and when it names a program by path (`RUSTC_WRAPPER=
    /// /tmp/x`, `make SHELL=./sh.sh`), that program must be a file airlock can read (a script,
    /// judged by its content, or a compiled program) or a system program: a missing or
    /// unreadable one is code airlock cannot see.
    pub(super) fn code_value(
        &self,
        w: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if let Some(t) = w.as_static() {
            let head = t.split_whitespace().next().unwrap_or("");
            let system = [
                "/bin/",
                "/usr/bin/",
                "/sbin/",
                "/usr/sbin/",
                "/usr/local/bin/",
            ]
            .iter()
            .any(|d| head.starts_with(d));
            if head.contains('/') && !system {
                let abs = absolute(head, cmd.cwd.as_deref(), &env.home);
                // A program the workspace builds (`target/release/app`) may not exist yet; one
                // elsewhere (`/tmp/x`, `~/x`) is a file airlock should have been able to read.
                let in_workspace = abs.as_deref().is_some_and(|a| {
                    let ws = env.cwd.trim_end_matches('/');
                    !head.starts_with(['/', '~']) && a.starts_with(&format!("{ws}/"))
                });
                match abs.as_deref().map(read_text) {
                    None | Some(FileText::Unreadable(_)) => return CodeFrom::Unseen,
                    Some(FileText::Missing) if !in_workspace => return CodeFrom::Unseen,
                    _ => {}
                }
            }
        }
        self.code_word(w, origin, cmd, env, out)
    }

    /// `NAME=VALUE` of an `exec_env` variable (`GIT_SSH_COMMAND=…`, `RUSTC_WRAPPER=…`): the
    /// value is judged as code; when airlock cannot see it, an invocation of the pseudo-program
    /// `(env-command)` with unseen code stands for it (asked about).
    pub(super) fn exec_env_value(
        &self,
        name: &str,
        value: &Word,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) {
        if self.code_value(value, &format!("{name}="), cmd, env, out) == CodeFrom::Unseen {
            let shown = Word {
                text: format!("{name}={}", value.text),
                ..value.clone()
            };
            let mut inv = self.invocation(cmd, "(env-command)", false, &[], env);
            inv.positionals = vec![shown.clone()];
            inv.words = vec![shown];
            inv.code_from = CodeFrom::Unseen;
            out.invocations.push(inv);
        }
    }

    /// The content of the script file `script` (a path as written) as code: `Some` when it
    /// exists (text judged like `sh -c`; a compiled program: not code; unreadable: unseen).
    pub(super) fn script_file(
        &self,
        cmd: &SimpleCmd,
        script: &Word,
        env: &Env,
        out: &mut Analysis,
    ) -> Option<CodeFrom> {
        if script.is_dynamic() {
            return None;
        }
        let Some(path) = absolute(&script.text, cmd.cwd.as_deref(), &env.home) else {
            // A relative path in a directory only known at run time.
            return Some(CodeFrom::Unseen);
        };
        match read_text(&path) {
            FileText::Missing => None,
            FileText::Binary => Some(CodeFrom::NotCode),
            FileText::Unreadable(_) => Some(CodeFrom::Unseen),
            FileText::Text(text) if is_shell_text(&text) => {
                let origin = format!("script {}", basename(&script.text));
                Some(self.code_word(&Word::lit(&text), &origin, cmd, env, out))
            }
            // Another language: judged by its interpreter's rules, not here.
            FileText::Text(_) => Some(CodeFrom::NotCode),
        }
    }

    /// Files a build or task runner reads its commands from: `make` (Makefile recipes),
    /// `npm`/`pnpm`/`yarn`/`bun` scripts (package.json), `just` (justfile).
    pub(super) fn task_files(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) {
        let from = match prog {
            "make" | "gmake" if make_shell_override(inv) => CodeFrom::Unseen,
            "make" | "gmake" => self.make_recipes(cmd, inv, env, out),
            "npm" | "pnpm" | "yarn" | "bun" => {
                self.install_sources(cmd, prog, inv, env, out);
                self.package_scripts(cmd, prog, inv, env, out)
            }
            "pip" | "pip3" | "uv" => self.install_sources(cmd, prog, inv, env, out),
            "just" => self.just_recipes(cmd, inv, env, out),
            "poe" | "tox" | "task" | "go-task" => self.task_runner(cmd, prog, inv, env, out),
            "go" if inv.subcommand.as_deref() == Some("generate") => {
                self.go_generate(cmd, inv, env, out)
            }
            "sqlite3" | "sqlite" => match stdin_text(&cmd.stdin) {
                Some(t) => self.sqlite_text(&t, "sqlite3 <<…", cmd, env, out),
                None => CodeFrom::NotCode,
            },
            _ => CodeFrom::NotCode,
        };
        if from == CodeFrom::Unseen || inv.code_from == CodeFrom::NotCode {
            inv.code_from = from;
        }
    }

    /// Package sources named in files an install reads: `pip install -r FILE` (and `-c`,
    /// nested `-r`) lines that fetch from a URL, a VCS or another index; package.json
    /// dependencies that are URLs or repositories (`npm install` without names). Each found
    /// adds an invocation of the pseudo-program `(package-source)` (the `package-source-file`
    /// rule asks); a file that cannot be read is code airlock cannot see.
    fn install_sources(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let Some(cwd) = cmd.cwd.as_deref() else {
            return CodeFrom::NotCode;
        };
        let installs = inv.words.iter().any(|w| {
            matches!(
                w.text.as_str(),
                "install" | "i" | "ci" | "add" | "sync" | "download" | "wheel"
            )
        });
        let bare_yarn = prog == "yarn" && inv.subcommand.is_none();
        if !installs && !bare_yarn {
            return CodeFrom::NotCode;
        }
        let pip = matches!(prog, "pip" | "pip3" | "uv");
        let (found, mut unseen) = if pip {
            requirement_sources(requirement_files(&inv.words), cwd, &env.home)
        } else if !inv.positionals.iter().any(|p| {
            !p.text.starts_with('-') && !matches!(p.text.as_str(), "install" | "i" | "ci" | "add")
        }) {
            // `npm install` without package names: the dependencies of package.json.
            package_json_sources(cwd)
        } else {
            (Vec::new(), false)
        };
        if pip && self.written_build_files(cmd, inv, env, out) == CodeFrom::Unseen {
            unseen = true;
        }
        for f in found.into_iter().take(MAX_TARGETS) {
            let w = Word::lit(&f);
            let mut pseudo = self.invocation(cmd, "(package-source)", false, &[], env);
            pseudo.subcommand = Some(prog.to_string());
            pseudo.positionals = vec![w.clone()];
            pseudo.words = vec![w];
            out.invocations.push(pseudo);
        }
        if !unseen {
            return CodeFrom::NotCode;
        }
        let mut pseudo = self.invocation(cmd, "(package-source)", false, &[], env);
        pseudo.subcommand = Some(prog.to_string());
        pseudo.code_from = CodeFrom::Unseen;
        out.invocations.push(pseudo);
        CodeFrom::Unseen
    }

    /// `pip install DIR` of a project whose build files (`setup.py`, `pyproject.toml`,
    /// `setup.cfg`) the same tool call wrote: the install runs them, so their text is judged
    /// like inline Python (a pseudo `python3` invocation); written with content airlock cannot
    /// see: unseen.
    fn written_build_files(
        &self,
        cmd: &SimpleCmd,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let Some(cwd) = cmd.cwd.as_deref() else {
            return CodeFrom::NotCode;
        };
        let mut from = CodeFrom::NotCode;
        for p in inv.positionals.iter().filter(|p| {
            p.text == "." || p.text.starts_with("./") || p.text.starts_with('/') || p.text == ".."
        }) {
            let Some(dir) = p
                .as_static()
                .and_then(|t| absolute(t, Some(cwd), &env.home))
            else {
                continue;
            };
            for name in ["setup.py", "pyproject.toml", "setup.cfg"] {
                let path = format!("{}/{name}", dir.trim_end_matches('/'));
                match written(&path) {
                    None => {}
                    Some(FileText::Text(text)) => {
                        let mut pseudo = self.invocation(cmd, "python3", false, &[], env);
                        pseudo.code_from = CodeFrom::Seen;
                        self.scan_code(
                            &text,
                            &format!("pip install {name}"),
                            cmd,
                            &mut pseudo,
                            env,
                            out,
                        );
                        out.invocations.push(pseudo);
                    }
                    Some(_) => from = CodeFrom::Unseen,
                }
            }
        }
        from
    }

    /// `make --eval TEXT`: every recipe and `$(shell …)` of TEXT is shell code.
    pub(super) fn makefile_text(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let Some(text) = value.as_static() else {
            return CodeFrom::Unseen;
        };
        // `--eval='all: ; CMD'` and `--eval` with newlines: both are makefile lines.
        let dir = cmd.cwd.clone().unwrap_or_else(|| env.cwd.clone());
        let mk = Makefile::parse(text, &dir, &env.home, BTreeMap::new());
        let targets: Vec<String> = mk.rules.iter().flat_map(|r| r.targets.clone()).collect();
        let Some(script) = mk.script(&targets, &dir, &env.home) else {
            return CodeFrom::Unseen;
        };
        if script.trim().is_empty() {
            return CodeFrom::Seen;
        }
        self.code_word(&Word::lit(&script), origin, cmd, env, out)
    }

    /// sqlite3 input given as an option or argument (see [`sqlite_code`]).
    pub(super) fn sqlite_value(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let Some(text) = value.as_static() else {
            return CodeFrom::Unseen;
        };
        self.sqlite_text(text, origin, cmd, env, out)
    }

    fn sqlite_text(
        &self,
        text: &str,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let (code, unseen) = sqlite_code(text);
        let mut from = if unseen {
            CodeFrom::Unseen
        } else {
            CodeFrom::NotCode
        };
        for c in code {
            let f = self.code_value(&Word::lit(&c), origin, cmd, env, out);
            if f == CodeFrom::Unseen || from == CodeFrom::NotCode {
                from = f;
            }
        }
        from
    }

    /// An option naming a file of shell code (`bash --rcfile FILE`): `<(…)` is judged like
    /// `sh -c`, a file by its content; missing or unreadable: code airlock cannot see.
    pub(super) fn script_file_value(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if let Some(src) = &value.procsub {
            return self.upstream_code(src, cmd, origin, env, out);
        }
        if matches!(value.text.as_str(), "/dev/null") {
            return CodeFrom::NotCode;
        }
        // Written earlier in this command (`echo … > rc && bash --rcfile rc`).
        let path = absolute(&value.text, cmd.cwd.as_deref(), &env.home);
        if let Some((_, content)) = cmd.files.iter().find(|(p, _)| Some(p) == path.as_ref()) {
            return match content {
                FileContent::Text(t) => self.code_word(&Word::lit(t), origin, cmd, env, out),
                FileContent::Network => CodeFrom::Network,
                FileContent::Unknown => CodeFrom::Unseen,
            };
        }
        match self.script_file(cmd, value, env, out) {
            Some(from) => from,
            None => CodeFrom::Unseen,
        }
    }

    /// `make [-C DIR] [-f FILE] [VAR=value…] [TARGET…]`: the recipes of the targets built (the
    /// first target by default) and their prerequisites, every `$(shell …)`, and a `SHELL`
    /// that is not a standard shell.
    fn make_recipes(
        &self,
        cmd: &SimpleCmd,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if inv.flags.iter().any(|(n, _)| {
            matches!(
                n.as_str(),
                "n" | "just-print" | "dry-run" | "q" | "question" | "p" | "print-data-base"
            )
        }) {
            return CodeFrom::NotCode;
        }
        let (dir, text) = match makefile(cmd, inv, &env.home) {
            Ok(found) => found,
            Err(from) => return from,
        };
        let Some((overrides, targets)) = make_arguments(&inv.positionals) else {
            return CodeFrom::Unseen;
        };
        let mk = Makefile::parse(&text, &dir, &env.home, overrides);
        // (`make SHELL=…` without a Makefile is judged by the `[[code_option]]` row.)
        let Some(script) = mk.script(&targets, &dir, &env.home) else {
            return CodeFrom::Unseen;
        };
        if script.trim().is_empty() {
            return CodeFrom::Seen;
        }
        let origin = format!(
            "make {}",
            targets.first().map_or("(default)", |t| t.as_str())
        );
        self.code_word(&Word::lit(&script), &origin, cmd, env, out)
    }

    /// `npm run X` / `npm test` / `npm install` / `yarn X` / `pnpm X` / `bun run X`: the
    /// package.json scripts they run (`preX`, `X`, `postX`; the install lifecycle for an
    /// install without package names).
    fn package_scripts(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let Some(names) = script_names(prog, inv) else {
            return CodeFrom::NotCode;
        };
        if names.iter().any(|n| n.contains(DYN)) {
            return CodeFrom::Unseen;
        }
        let Some(cwd) = cmd.cwd.as_deref() else {
            return CodeFrom::Unseen;
        };
        let Some(text) = parents(cwd)
            .into_iter()
            .map(|d| read_text(&format!("{}/package.json", d.trim_end_matches('/'))))
            .find(|t| *t != FileText::Missing)
        else {
            return CodeFrom::NotCode;
        };
        let text = match text {
            FileText::Text(t) => t,
            FileText::Missing => return CodeFrom::NotCode,
            _ => return CodeFrom::Unseen,
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            return CodeFrom::Unseen;
        };
        let Some(scripts) = json.get("scripts").and_then(|s| s.as_object()) else {
            return CodeFrom::NotCode;
        };
        let mut from = CodeFrom::NotCode;
        for name in names {
            let Some(body) = scripts.get(&name) else {
                continue;
            };
            let Some(code) = body.as_str() else {
                return CodeFrom::Unseen;
            };
            let f = self.code_word(
                &Word::lit(code),
                &format!("{prog} script {name}"),
                cmd,
                env,
                out,
            );
            if f == CodeFrom::Unseen || from == CodeFrom::NotCode {
                from = f;
            }
        }
        from
    }

    /// `just [RECIPE [ARGS…]]…`: the recipes run and their dependencies.
    fn just_recipes(
        &self,
        cmd: &SimpleCmd,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if inv.flags.iter().any(|(n, _)| {
            matches!(
                n.as_str(),
                "l" | "list"
                    | "summary"
                    | "show"
                    | "dry-run"
                    | "n"
                    | "evaluate"
                    | "dump"
                    | "fmt"
                    | "help"
                    | "version"
                    | "choose"
                    | "edit"
                    | "init"
            )
        }) {
            return CodeFrom::NotCode;
        }
        let Some(cwd) = cmd.cwd.as_deref() else {
            return CodeFrom::Unseen;
        };
        let file = inv
            .flags
            .iter()
            .find(|(n, _)| n == "f" || n == "justfile")
            .and_then(|(_, v)| v.clone());
        let text = match file {
            Some(f) if f.is_dynamic() => return CodeFrom::Unseen,
            Some(f) => match absolute(&f.text, Some(cwd), &env.home) {
                Some(p) => read_text(&p),
                None => return CodeFrom::Unseen,
            },
            None => parents(cwd)
                .into_iter()
                .flat_map(|d| {
                    let d = d.trim_end_matches('/').to_string();
                    ["justfile", "Justfile", ".justfile"].map(move |n| format!("{d}/{n}"))
                })
                .map(|p| read_text(&p))
                .find(|t| *t != FileText::Missing)
                .unwrap_or(FileText::Missing),
        };
        let text = match text {
            FileText::Missing => return CodeFrom::NotCode,
            FileText::Text(t) => t,
            _ => return CodeFrom::Unseen,
        };
        let wanted: Vec<String> = inv.positionals.iter().map(|w| w.text.clone()).collect();
        match just_script(&text, &wanted) {
            Some(s) if s.trim().is_empty() => CodeFrom::Seen,
            Some(s) => self.code_word(&Word::lit(&s), "just", cmd, env, out),
            None => CodeFrom::Unseen,
        }
    }

    /// A runner that fetches a package from a registry (`npx cowsay`, `uvx x`, `pnpm dlx x`):
    /// when the package is neither a well-known development tool (`registry_tools`) nor
    /// installed in the workspace (`node_modules/.bin`), an invocation of the pseudo-program
    /// `(registry-package)` is added (the `registry-run` rule asks about it).
    pub(super) fn registry_package(
        &self,
        cmd: &SimpleCmd,
        runner: &str,
        spec: &WrapperSpec,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
    ) {
        if !self.tables.registry_runners.iter().any(|r| r == runner) {
            return;
        }
        let Some(packages) = runner_packages(spec, args) else {
            return;
        };
        for p in packages {
            let name = package_name(&p.text);
            let known = !p.is_dynamic()
                && (self.tables.registry_tools.contains(&name)
                    || (!name.contains('/')
                        && !name.is_empty()
                        && installed_locally(cmd.cwd.as_deref(), &name)));
            if known {
                continue;
            }
            let mut inv = self.invocation(cmd, "(registry-package)", false, &[], env);
            inv.subcommand = Some(runner.to_string());
            inv.positionals = vec![p.clone()];
            inv.words = vec![p];
            out.invocations.push(inv);
        }
    }
}

/// Where a requirements line or a package.json dependency fetches from, when that is not
/// the registry: a URL, a VCS (`git+…`, `github:…`, `user/repo`) or another index.
fn remote_source(spec: &str) -> bool {
    let s = spec.trim();
    let flag = s.split([' ', '=']).next().unwrap_or("");
    matches!(
        flag,
        "-i" | "--index-url" | "--extra-index-url" | "-f" | "--find-links" | "--trusted-host"
    ) || s.contains("://")
        || [
            "git+",
            "hg+",
            "svn+",
            "bzr+",
            "github:",
            "gitlab:",
            "bitbucket:",
            "gist:",
            "git@",
        ]
        .iter()
        .any(|p| s.starts_with(p) || s.contains(&format!(" {p}")))
}

/// A package.json dependency version that is a repository shorthand (`user/repo#ref`).
fn repo_shorthand(version: &str) -> bool {
    let v = version.trim();
    v.contains('/')
        && !v.starts_with(['.', '/', '~', '@'])
        && !["file:", "link:", "workspace:", "npm:", "portal:", "patch:"]
            .iter()
            .any(|p| v.starts_with(p))
}

/// `make SHELL=…` (or `.SHELLFLAGS=…`, `MAKESHELL=…`) naming anything but a standard shell:
/// every recipe runs through it.
fn make_shell_override(inv: &Invocation) -> bool {
    inv.positionals.iter().any(|w| {
        let t = w.text.as_str();
        let Some((k, v)) = t.split_once('=') else {
            return false;
        };
        let k = k.trim_end_matches([':', '+', '?']);
        match k {
            "SHELL" | "MAKESHELL" => !STANDARD_SHELLS.contains(&v.trim()),
            ".SHELLFLAGS" => !matches!(v.trim(), "-c" | "-ec" | "-euc" | "-eu -o pipefail -c"),
            _ => false,
        }
    })
}

/// Shells a Makefile's `SHELL` may name without its recipes being code airlock cannot see.
const STANDARD_SHELLS: &[&str] = &[
    "/bin/sh",
    "/bin/bash",
    "sh",
    "bash",
    "/usr/bin/bash",
    "/usr/bin/sh",
    "/usr/bin/env bash",
];

/// A registry package name without its version (`cowsay@1.2` → `cowsay`, `@scope/x@2` →
/// `@scope/x`, `ruff==0.4` → `ruff`, `black[jupyter]` → `black`).
fn package_name(spec: &str) -> String {
    let (scope, rest) = match spec.strip_prefix('@') {
        Some(r) => ("@", r),
        None => ("", spec),
    };
    let end = rest
        .find(['@', '=', '<', '>', '~', '!', '[', ' ', ';'])
        .unwrap_or(rest.len());
    format!("{scope}{}", &rest[..end])
}

/// The package.json scripts a package-manager command runs, in order; `None` when it runs none.
fn script_names(prog: &str, inv: &Invocation) -> Option<Vec<String>> {
    // Programs without a subcommand table (`bun`): the first positional is the verb.
    let (sub, first) = match inv.subcommand.as_deref() {
        Some(s) => (Some(s), inv.positionals.first()),
        None => (
            inv.positionals.first().map(|w| w.text.as_str()),
            inv.positionals.get(1),
        ),
    };
    let first = first.map(|w| w.text.clone());
    let lifecycle = |n: &str| vec![format!("pre{n}"), n.to_string(), format!("post{n}")];
    let install = || {
        [
            "preinstall",
            "install",
            "postinstall",
            "prepublish",
            "preprepare",
            "prepare",
            "postprepare",
        ]
        .map(String::from)
        .to_vec()
    };
    let run_verbs = ["run", "run-script", "rum", "urn"];
    match (prog, sub) {
        (_, Some(s)) if run_verbs.contains(&s) => first.map(|n| lifecycle(&n)),
        ("npm" | "pnpm" | "yarn" | "bun", Some("test" | "t" | "tst")) => Some(lifecycle("test")),
        ("npm" | "pnpm" | "yarn" | "bun", Some(s @ ("start" | "stop" | "restart"))) => {
            Some(lifecycle(s))
        }
        ("npm" | "pnpm" | "yarn" | "bun", Some("install" | "i" | "ci" | "add" | "isntall")) => {
            // Installing named packages also runs the root's lifecycle in npm ≥ 7; judged
            // the same either way.
            Some(install())
        }
        ("yarn", None) => Some(install()),
        // `yarn build`, `pnpm lint`: a name that is not a built-in command runs the script.
        ("yarn" | "pnpm", Some(s)) if !PM_BUILTINS.contains(&s) => Some(lifecycle(s)),
        _ => None,
    }
}

/// Built-in commands of yarn and pnpm (anything else names a script).
const PM_BUILTINS: &[&str] = &[
    "add",
    "audit",
    "autoclean",
    "bin",
    "cache",
    "check",
    "config",
    "create",
    "dedupe",
    "deploy",
    "dlx",
    "doctor",
    "env",
    "exec",
    "fetch",
    "generate-lock-entry",
    "global",
    "help",
    "import",
    "info",
    "init",
    "install",
    "i",
    "licenses",
    "link",
    "list",
    "ls",
    "login",
    "logout",
    "outdated",
    "owner",
    "pack",
    "patch",
    "patch-commit",
    "prune",
    "publish",
    "rebuild",
    "remove",
    "rm",
    "root",
    "run",
    "server",
    "setup",
    "store",
    "tag",
    "team",
    "unlink",
    "unplug",
    "up",
    "update",
    "upgrade",
    "upgrade-interactive",
    "version",
    "versions",
    "why",
    "workspace",
    "workspaces",
    "plugin",
    "policies",
    "constraints",
    "explain",
    "npm",
    "node",
    "search",
    "set",
    "sdk",
    "stage",
    "recursive",
    "-r",
    "test",
    "t",
    "start",
    "stop",
    "restart",
    "ci",
];

/// A parsed Makefile: variables, rules (targets → prerequisites and recipe lines), and the
/// `$(shell …)` commands run while it is read.
#[derive(Debug, Default)]
struct Makefile {
    vars: BTreeMap<String, String>,
    rules: Vec<MakeRule>,
    /// Commands of `$(shell …)` outside recipes (they run whatever target is built).
    parse_time: Vec<String>,
    /// Syntax this reader does not follow (conditionals around recipes are followed as if
    /// every branch were taken).
    unreadable: bool,
}

#[derive(Debug, Default)]
struct MakeRule {
    targets: Vec<String>,
    prereqs: Vec<String>,
    recipe: Vec<String>,
}

/// Make's built-in variables used in recipes (make(1) "Implicit Variables").
const MAKE_DEFAULTS: &[(&str, &str)] = &[
    ("CC", "cc"),
    ("CXX", "g++"),
    ("CPP", "cc -E"),
    ("FC", "f77"),
    ("AR", "ar"),
    ("AS", "as"),
    ("LD", "ld"),
    ("RM", "rm -f"),
    ("MAKE", "make"),
    ("SHELL", "/bin/sh"),
    ("INSTALL", "install"),
    ("LEX", "lex"),
    ("YACC", "yacc"),
    ("GO", "go"),
    ("CARGO", "cargo"),
    ("PYTHON", "python3"),
    ("NPM", "npm"),
    ("DOCKER", "docker"),
];

impl Makefile {
    fn parse(text: &str, dir: &str, home: &str, overrides: BTreeMap<String, String>) -> Makefile {
        let mut mk = Makefile::default();
        let mut texts = vec![text.to_string()];
        let mut included = 0usize;
        while let Some(t) = texts.pop() {
            for inc in mk.read(&t) {
                included += 1;
                if included > MAX_INCLUDES {
                    mk.unreadable = true;
                    break;
                }
                match absolute(&inc, Some(dir), home).map(|p| read_text(&p)) {
                    Some(FileText::Text(t)) => texts.push(t),
                    Some(FileText::Missing) => {}
                    _ => mk.unreadable = true,
                }
            }
        }
        mk.vars.extend(overrides);
        mk
    }

    /// Reads one file's text; returns the files it `include`s.
    fn read(&mut self, text: &str) -> Vec<String> {
        let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
        let mut includes = Vec::new();
        let mut define: Option<(String, Vec<String>)> = None;
        let mut in_rule = false;
        for line in joined.lines() {
            if let Some((name, body)) = &mut define {
                if line.trim() == "endef" {
                    let v = body.join("\n");
                    self.vars.insert(name.clone(), v);
                    define = None;
                } else {
                    body.push(line.to_string());
                }
                continue;
            }
            if let Some(recipe) = line.strip_prefix('\t') {
                if in_rule {
                    if let Some(r) = self.rules.last_mut() {
                        r.recipe.push(recipe.to_string());
                    }
                } else {
                    self.shell_calls(recipe);
                }
                continue;
            }
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            self.shell_calls(trimmed);
            let word = trimmed.split_whitespace().next().unwrap_or("");
            match word {
                "define" => {
                    let name = trimmed[6..]
                        .trim()
                        .trim_end_matches(['=', ':', ' '])
                        .to_string();
                    define = Some((name, Vec::new()));
                    in_rule = false;
                    continue;
                }
                "include" => {
                    includes.extend(trimmed[7..].split_whitespace().map(String::from));
                    in_rule = false;
                    continue;
                }
                "-include" | "sinclude" | "ifeq" | "ifneq" | "ifdef" | "ifndef" | "else"
                | "endif" | "vpath" | "unexport" => continue,
                _ => {}
            }
            let body = trimmed
                .strip_prefix("export ")
                .or_else(|| trimmed.strip_prefix("override "))
                .unwrap_or(trimmed);
            if let Some((name, value)) = assignment(body) {
                self.vars.insert(name, value);
                in_rule = false;
                continue;
            }
            if let Some((targets, rest)) = split_rule(body) {
                let (prereqs, inline) = match rest.split_once(';') {
                    Some((p, r)) => (p, Some(r.trim().to_string())),
                    None => (rest, None),
                };
                // `target: VAR = value` (target-specific variable): no recipe of its own.
                if assignment(prereqs.trim()).is_some() {
                    in_rule = false;
                    continue;
                }
                self.rules.push(MakeRule {
                    targets: targets.split_whitespace().map(String::from).collect(),
                    prereqs: prereqs
                        .split_whitespace()
                        .filter(|p| *p != "|")
                        .map(String::from)
                        .collect(),
                    recipe: inline.into_iter().collect(),
                });
                in_rule = true;
                continue;
            }
            // A line this reader does not know (a function call at top level, `$(eval …)`).
            if trimmed.contains("$(eval") || trimmed.contains("${eval") {
                self.unreadable = true;
            }
        }
        includes
    }

    fn shell_calls(&mut self, line: &str) {
        for c in shell_calls(line) {
            self.parse_time.push(c);
        }
    }

    /// The shell code run to build `targets` (the default target when empty); `None` when it
    /// cannot be told.
    fn script(&self, targets: &[String], dir: &str, home: &str) -> Option<String> {
        if self.unreadable {
            return None;
        }
        let shell = self.expand(
            self.vars.get("SHELL").map_or("/bin/sh", |s| s.as_str()),
            dir,
            home,
        )?;
        if !STANDARD_SHELLS.contains(&shell.trim()) {
            return None;
        }
        let mut todo: Vec<String> = targets.to_vec();
        if todo.is_empty() {
            todo.extend(self.default_goal());
        }
        let lines = self.recipe_lines(todo)?;
        self.expand_recipes(lines, dir, home)
    }

    /// The target `make` builds without one named: `.DEFAULT_GOAL`, else the first rule's
    /// first target that is not special (`.PHONY`) or a pattern.
    fn default_goal(&self) -> Option<String> {
        self.vars.get(".DEFAULT_GOAL").cloned().or_else(|| {
            self.rules
                .iter()
                .flat_map(|r| r.targets.iter())
                .find(|t| !t.starts_with('.') && !t.contains('%'))
                .cloned()
        })
    }

    /// The recipe lines (as written) of `todo` and their prerequisites, after the lines run
    /// while the makefile is read; a target no rule names brings in every pattern rule's
    /// recipe. `None` past [`MAX_TARGETS`].
    fn recipe_lines(&self, mut todo: Vec<String>) -> Option<Vec<String>> {
        let mut seen = HashSet::new();
        let mut lines: Vec<String> = self.parse_time.clone();
        let mut patterns_added = false;
        while let Some(t) = todo.pop() {
            if seen.len() >= MAX_TARGETS {
                return None;
            }
            if !seen.insert(t.clone()) {
                continue;
            }
            let mut matched = false;
            for r in self.rules.iter().filter(|r| r.targets.contains(&t)) {
                matched = true;
                todo.extend(r.prereqs.iter().cloned());
                lines.extend(r.recipe.iter().cloned());
            }
            if !matched && !patterns_added {
                // Built by a pattern rule, if at all: judge every pattern rule's recipe.
                patterns_added = true;
                for r in self
                    .rules
                    .iter()
                    .filter(|r| r.targets.iter().any(|x| x.contains('%')))
                {
                    lines.extend(r.recipe.iter().cloned());
                }
            }
        }
        Some(lines)
    }

    /// Recipe lines with their variables expanded and their `@`, `-`, `+` prefixes removed,
    /// one shell line each; `None` when an expansion is unknown or the text passes
    /// [`MAX_EXPANDED`] bytes.
    fn expand_recipes(&self, lines: Vec<String>, dir: &str, home: &str) -> Option<String> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for l in lines {
            let l = self.expand(&l, dir, home)?;
            total += l.len();
            if total > MAX_EXPANDED {
                return None;
            }
            for part in l.lines() {
                let part = part
                    .trim_start()
                    .trim_start_matches(['@', '-', '+'])
                    .trim_start();
                if !part.is_empty() {
                    out.push(part.to_string());
                }
            }
        }
        Some(out.join("\n"))
    }

    /// Expands `$(VAR)`, `${VAR}`, automatic variables and functions in `line`; `$$` is `$`.
    /// `None` when the text grows past [`MAX_EXPANDED`].
    fn expand(&self, line: &str, dir: &str, home: &str) -> Option<String> {
        let mut cur = line.to_string();
        for _ in 0..MAX_EXPANSIONS {
            let next = self.expand_once(&cur, dir, home);
            if next.len() > MAX_EXPANDED {
                return None;
            }
            if next == cur {
                break;
            }
            cur = next;
        }
        Some(cur.replace('\u{1}', "$"))
    }

    fn expand_once(&self, line: &str, dir: &str, home: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            if out.len() > MAX_EXPANDED {
                // Too long already: the caller gives up on it.
                return out;
            }
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let Some(c) = after.chars().next() else {
                out.push('$');
                rest = after;
                break;
            };
            match c {
                '$' => {
                    // `$$` is a literal `$` for the shell: kept out of further expansion.
                    out.push('\u{1}');
                    rest = &after[1..];
                }
                '(' | '{' => {
                    let close = if c == '(' { ')' } else { '}' };
                    let Some(end) = matching(after, c, close) else {
                        out.push_str(&rest[i..]);
                        rest = "";
                        break;
                    };
                    let inner = &after[1..end];
                    out.push_str(&self.reference(inner, dir, home));
                    rest = &after[end + 1..];
                }
                '@' | '<' | '^' | '?' | '*' | '+' | '|' | '%' => {
                    out.push_str("file");
                    rest = &after[1..];
                }
                c => {
                    // `$X`: the one-letter variable X.
                    out.push_str(&self.reference(&c.to_string(), dir, home));
                    rest = &after[c.len_utf8()..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The value of `$(inner)`.
    fn reference(&self, inner: &str, dir: &str, home: &str) -> String {
        if let Some(cmd) = inner.strip_prefix("shell ") {
            // The command ran already (collected with the recipes); its output is a word.
            let _ = cmd;
            return "file".into();
        }
        if inner.contains([' ', ',']) || inner.contains(':') {
            // A function (`$(wildcard …)`, `$(patsubst …)`) or substitution reference.
            return "file".into();
        }
        if inner.starts_with(['@', '<', '^', '*', '?']) {
            return "file".into();
        }
        match inner {
            "CURDIR" => return dir.to_string(),
            "HOME" => return home.to_string(),
            _ => {}
        }
        if let Some(v) = self.vars.get(inner) {
            return v.clone();
        }
        MAKE_DEFAULTS
            .iter()
            .find(|(k, _)| *k == inner)
            .map_or_else(String::new, |(_, v)| v.to_string())
    }
}

/// The index in `s` (which starts with `open`) of the bracket closing it.
fn matching(s: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// The commands of every `$(shell …)` in `line`.
fn shell_calls(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("$(shell ") {
        let after = &rest[i + 1..];
        match matching(after, '(', ')') {
            Some(end) => {
                out.push(after[7..end].trim().replace("$$", "$"));
                rest = &after[end + 1..];
            }
            None => {
                out.push(after[7..].to_string());
                break;
            }
        }
    }
    out
}

/// `NAME = value`, `NAME := value`, `NAME ?= value`, `NAME += value`, `NAME != command`.
fn assignment(line: &str) -> Option<(String, String)> {
    let eq = line.find('=')?;
    let colon = line.find(':');
    if colon.is_some_and(|c| c < eq && !line[c..eq].trim_start_matches(':').is_empty()) {
        return None;
    }
    let name = line[..eq].trim_end_matches([':', '+', '?', '!', ' ', '\t']);
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains(['$', '(']) {
        return None;
    }
    Some((name.to_string(), line[eq + 1..].trim().to_string()))
}

/// `targets: rest` (not `:=`).
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let i = line.find(':')?;
    let rest = &line[i + 1..];
    if rest.starts_with('=') {
        return None;
    }
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    Some((&line[..i], rest))
}

/// The shell code `just` runs for `wanted` (recipe names and their arguments; the first recipe
/// when empty) and their dependencies; `None` when it cannot be told (another `shell`, a
/// shebang recipe in another language).
fn just_script(text: &str, wanted: &[String]) -> Option<String> {
    struct Recipe {
        name: String,
        deps: Vec<String>,
        body: Vec<String>,
    }
    let mut recipes: Vec<Recipe> = Vec::new();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut parse_time: Vec<String> = Vec::new();
    let mut in_recipe = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if in_recipe {
                if let Some(r) = recipes.last_mut() {
                    r.body.push(line.trim().to_string());
                }
            }
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
            continue;
        }
        in_recipe = false;
        if let Some(rest) = t.strip_prefix("set ") {
            if rest.trim_start().starts_with("shell")
                || rest.trim_start().starts_with("windows-shell")
            {
                return None;
            }
            continue;
        }
        if t.starts_with("import ") || t.starts_with("mod ") || t.starts_with("import? ") {
            return None;
        }
        let t = t.strip_prefix("export ").unwrap_or(t);
        if let Some((name, value)) = t.split_once(":=") {
            let value = value.trim().to_string();
            if let Some(code) = value.strip_prefix('`').and_then(|v| v.strip_suffix('`')) {
                parse_time.push(code.to_string());
            }
            vars.insert(
                name.trim().to_string(),
                value.trim_matches(['"', '\'']).to_string(),
            );
            continue;
        }
        if let Some((head, deps)) = t.split_once(':') {
            let name = head
                .trim_start_matches('@')
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            recipes.push(Recipe {
                name,
                deps: deps
                    .split_whitespace()
                    .filter(|d| !d.starts_with('&'))
                    .map(|d| d.trim_start_matches('(').to_string())
                    .collect(),
                body: Vec::new(),
            });
            in_recipe = true;
            continue;
        }
        return None;
    }
    let names: HashSet<&str> = recipes.iter().map(|r| r.name.as_str()).collect();
    let mut todo: Vec<String> = wanted
        .iter()
        .filter(|w| names.contains(w.as_str()))
        .cloned()
        .collect();
    if todo.is_empty() {
        todo.extend(
            recipes
                .iter()
                .find(|r| r.name == "default")
                .or_else(|| recipes.first())
                .map(|r| r.name.clone()),
        );
    }
    let mut seen = HashSet::new();
    let mut lines = parse_time;
    let mut total = 0usize;
    while let Some(n) = todo.pop() {
        if seen.len() >= MAX_TARGETS {
            return None;
        }
        if !seen.insert(n.clone()) {
            continue;
        }
        for r in recipes.iter().filter(|r| r.name == n) {
            todo.extend(r.deps.iter().cloned());
            if r.body
                .first()
                .is_some_and(|b| b.starts_with("#!") && !is_shell_text(b))
            {
                return None;
            }
            for b in &r.body {
                let b = b.trim_start_matches(['@', '-']);
                let b = expand_just(b, &vars)?;
                total += b.len();
                if total > MAX_EXPANDED {
                    return None;
                }
                lines.push(b);
            }
        }
    }
    Some(lines.join("\n"))
}

/// `{{name}}` → the variable's value (or a placeholder word for parameters and expressions).
fn expand_just(line: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("{{") {
        if out.len() > MAX_EXPANDED {
            return None;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return Some(out);
        };
        let inner = after[..end].trim();
        out.push_str(vars.get(inner).map_or("arg", |v| v.as_str()));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// Code a `sqlite3` dot-command runs (sqlite3(1) "Special commands"): `.shell CMD` / `.system
/// CMD` run CMD; `.once|.output|.read '|CMD'` pipe through CMD; `.load` loads a library and
/// `.read FILE` reads commands from a file (code airlock cannot see). Returns the shell code
/// found and whether there is code it cannot see.
pub(super) fn sqlite_code(text: &str) -> (Vec<String>, bool) {
    let mut code = Vec::new();
    let mut unseen = false;
    for line in text.lines() {
        let l = line.trim();
        let Some(dot) = l.strip_prefix('.') else {
            continue;
        };
        let (cmd, arg) = dot.split_once(char::is_whitespace).unwrap_or((dot, ""));
        let arg = arg.trim();
        let unquoted = arg.trim_matches(['\'', '"']);
        match cmd {
            "shell" | "system" => code.push(arg.to_string()),
            "once" | "output" | "read" | "import" if unquoted.starts_with('|') => {
                code.push(unquoted[1..].to_string());
            }
            "once" | "output" | "read" | "import"
                if arg
                    .split_whitespace()
                    .any(|w| w.trim_matches(['\'', '"']).starts_with('|')) =>
            {
                unseen = true;
            }
            "read" | "load" => unseen = true,
            _ => {}
        }
    }
    (code, unseen)
}

/// The text on a command's stdin when it is known (a here-document, a pipe from a command
/// whose output is static).
pub(super) fn stdin_text(stdin: &Stdin) -> Option<String> {
    match stdin {
        Stdin::Text(w) if !w.is_dynamic() => Some(w.text.clone()),
        Stdin::Pipe(up) => up.last().and_then(|u| u.output.clone()),
        _ => None,
    }
}

/// The requirement and constraint files a pip install names (`-r FILE`, `--requirement=FILE`,
/// `-rFILE`, `-c FILE`, `--constraint=FILE`).
fn requirement_files(words: &[Word]) -> Vec<Word> {
    let mut files: Vec<Word> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let t = w.text.as_str();
        let value = match t {
            "-r" | "--requirement" | "-c" | "--constraint" => words.get(i + 1).cloned(),
            _ => t
                .strip_prefix("--requirement=")
                .or_else(|| t.strip_prefix("--constraint="))
                .or_else(|| t.strip_prefix("-r").filter(|r| !r.is_empty()))
                .map(Word::lit),
        };
        files.extend(value);
    }
    files
}

/// The remote package sources (URLs, VCS, other indexes) in requirement files, following
/// nested `-r`/`-c` (at most [`MAX_INCLUDES`] files), and whether some file could not be
/// seen (a name only known at run time, unreadable, or too many).
fn requirement_sources(mut files: Vec<Word>, cwd: &str, home: &str) -> (Vec<String>, bool) {
    let mut found = Vec::new();
    let mut unseen = false;
    let mut seen = HashSet::new();
    while let Some(f) = files.pop() {
        if seen.len() >= MAX_INCLUDES {
            unseen = true;
            break;
        }
        let Some(path) = f.as_static().and_then(|p| absolute(p, Some(cwd), home)) else {
            unseen = true;
            continue;
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        let text = match read_text(&path) {
            FileText::Text(t) => t,
            FileText::Missing => continue,
            _ => {
                unseen = true;
                continue;
            }
        };
        let dir = path.rsplit_once('/').map_or("/", |(d, _)| d).to_string();
        requirement_lines(&text, &dir, &mut files, &mut found);
    }
    (found, unseen)
}

/// One requirements file's lines: nested files (relative to `dir`) go to `files`, remote
/// sources (also after `-e`) to `found`; comments are skipped.
fn requirement_lines(text: &str, dir: &str, files: &mut Vec<Word>, found: &mut Vec<String>) {
    for line in text.lines() {
        let l = line.split(" #").next().unwrap_or("").trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(rest) = ["-r ", "--requirement ", "-c ", "--constraint "]
            .iter()
            .find_map(|p| l.strip_prefix(p))
        {
            let p = rest.trim();
            files.push(Word::lit(&if p.starts_with('/') {
                p.to_string()
            } else {
                format!("{dir}/{p}")
            }));
        } else if remote_source(
            l.trim_start_matches("-e ")
                .trim_start_matches("--editable "),
        ) {
            found.push(l.to_string());
        }
    }
}

/// The dependencies of the nearest package.json above `cwd` that are URLs or repositories
/// (`name@spec`), and whether the file could not be read or parsed.
fn package_json_sources(cwd: &str) -> (Vec<String>, bool) {
    let text = parents(cwd)
        .into_iter()
        .map(|d| read_text(&format!("{}/package.json", d.trim_end_matches('/'))))
        .find(|t| *t != FileText::Missing);
    let json = match text {
        Some(FileText::Text(t)) => match serde_json::from_str::<serde_json::Value>(&t) {
            Ok(json) => json,
            Err(_) => return (Vec::new(), true),
        },
        Some(FileText::Missing) | None => return (Vec::new(), false),
        Some(_) => return (Vec::new(), true),
    };
    let mut found = Vec::new();
    for key in [
        "dependencies",
        "devDependencies",
        "optionalDependencies",
        "peerDependencies",
    ] {
        let Some(deps) = json.get(key).and_then(|d| d.as_object()) else {
            continue;
        };
        for (name, v) in deps {
            let v = v.as_str().unwrap_or("");
            if remote_source(v) || repo_shorthand(v) {
                found.push(format!("{name}@{v}"));
            }
        }
    }
    (found, false)
}

/// The packages a registry runner fetches: those named by `-p`/`--package`/`--from`/
/// `--spec`/`--with`, else the command it runs (after its own options and skipped words, or
/// after `--`). `None` for `npx -c 'CMD'`: no package named (the code is judged by the
/// wrapper).
fn runner_packages(spec: &WrapperSpec, args: &[Word]) -> Option<Vec<Word>> {
    let mut packages: Vec<Word> = Vec::new();
    let mut command: Option<Word> = None;
    let mut skip = spec.skip;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let t = a.text.as_str();
        if t == "--" {
            command = args.get(i + 1).cloned();
            break;
        }
        if let Some(opt) = t.strip_prefix('-').filter(|o| !o.is_empty()) {
            let opt = opt.trim_start_matches('-');
            let (name, attached) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            if spec.code_flags.iter().any(|v| v == name) {
                return None;
            }
            let takes = spec.values.iter().any(|v| v == name);
            let value = match (takes, attached) {
                (_, Some(v)) => Some(Word {
                    text: v.to_string(),
                    ..a.clone()
                }),
                (true, None) => {
                    i += 1;
                    args.get(i).cloned()
                }
                (false, None) => None,
            };
            if matches!(name, "p" | "package" | "from" | "spec" | "with") {
                packages.extend(value);
            }
            i += 1;
            continue;
        }
        if skip > 0 {
            skip -= 1;
            i += 1;
            continue;
        }
        command = Some(a.clone());
        break;
    }
    if packages.is_empty() {
        packages.extend(command);
    }
    Some(packages)
}

/// Whether `name` is installed in the workspace: a `node_modules/.bin/NAME` in `cwd` or a
/// directory above it.
fn installed_locally(cwd: Option<&str>, name: &str) -> bool {
    cwd.is_some_and(|c| {
        parents(c).iter().any(|d| {
            Path::new(&format!(
                "{}/node_modules/.bin/{name}",
                d.trim_end_matches('/')
            ))
            .exists()
        })
    })
}

/// The directory make runs in (`-C DIR`) and the text of the makefile it reads (`-f FILE`,
/// else `GNUmakefile`, `makefile` or `Makefile` there). `Err` with the verdict when there is
/// none to read: nothing runs (no makefile, or `-f -`: the `[[code_option]]` row judges the
/// makefile on stdin), or airlock cannot see it.
fn makefile(cmd: &SimpleCmd, inv: &Invocation, home: &str) -> Result<(String, String), CodeFrom> {
    let flag = |names: &[&str]| {
        inv.flags
            .iter()
            .rev()
            .find(|(n, _)| names.contains(&n.as_str()))
            .and_then(|(_, v)| v.clone())
    };
    let mut dir = cmd.cwd.clone();
    if let Some(c) = flag(&["C", "directory"]) {
        if c.is_dynamic() {
            return Err(CodeFrom::Unseen);
        }
        dir = absolute(&c.text, dir.as_deref(), home);
    }
    let Some(dir) = dir else {
        return Err(CodeFrom::Unseen);
    };
    let file = match flag(&["f", "file", "makefile"]) {
        Some(f) if f.is_dynamic() => return Err(CodeFrom::Unseen),
        Some(f) if matches!(f.text.as_str(), "-" | "/dev/stdin" | "/dev/fd/0") => {
            return Err(CodeFrom::NotCode)
        }
        Some(f) => match absolute(&f.text, Some(&dir), home) {
            Some(p) => read_text(&p),
            None => return Err(CodeFrom::Unseen),
        },
        None => ["GNUmakefile", "makefile", "Makefile"]
            .iter()
            .map(|n| read_text(&format!("{dir}/{n}")))
            .find(|t| *t != FileText::Missing)
            .unwrap_or(FileText::Missing),
    };
    match file {
        FileText::Missing => Err(CodeFrom::NotCode),
        FileText::Binary | FileText::Unreadable(_) => Err(CodeFrom::Unseen),
        FileText::Text(t) => Ok((dir, t)),
    }
}

/// make's positionals: `VAR=value` overrides (also `VAR:=`, `VAR+=`, `VAR?=`) and targets;
/// `None` when one is only known at run time.
fn make_arguments(positionals: &[Word]) -> Option<(BTreeMap<String, String>, Vec<String>)> {
    let mut overrides = BTreeMap::new();
    let mut targets = Vec::new();
    for p in positionals {
        let t = p.as_static()?;
        match t.split_once('=') {
            Some((k, v)) => {
                overrides.insert(
                    k.trim_end_matches([':', '+', '?']).to_string(),
                    v.to_string(),
                );
            }
            None => targets.push(t.to_string()),
        }
    }
    Some((overrides, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makefile_targets_and_variables() {
        let text = "CC = gcc\nRM := rm -rf\nall: build\n\nbuild: main.o\n\t$(CC) -o app $^\n\nclean:\n\t@$(RM) /\n\n%.o: %.c\n\t$(CC) -c $< -o $@\n";
        let mk = Makefile::parse(text, "/w", "/h", BTreeMap::new());
        let s = mk.script(&[], "/w", "/h").expect("readable");
        assert!(s.contains("gcc -o app file"), "{s}");
        assert!(
            !s.contains("rm -rf /"),
            "clean is not built by default: {s}"
        );
        let s = mk.script(&["clean".into()], "/w", "/h").expect("readable");
        assert!(s.contains("rm -rf /"), "{s}");
    }

    #[test]
    fn makefile_shell_and_overrides() {
        let text = "X := $(shell sudo id)\nall:\n\techo hi\n";
        let mk = Makefile::parse(text, "/w", "/h", BTreeMap::new());
        let s = mk.script(&["all".into()], "/w", "/h").expect("readable");
        assert!(s.contains("sudo id"), "{s}");
        let mut o = BTreeMap::new();
        o.insert("SHELL".to_string(), "/tmp/x.sh".to_string());
        let mk = Makefile::parse("all:\n\techo hi\n", "/w", "/h", o);
        assert!(
            mk.script(&[], "/w", "/h").is_none(),
            "another SHELL is unseen code"
        );
        assert_eq!(
            Makefile::parse("all:\n\techo $$HOME\n", "/w", "/h", BTreeMap::new())
                .script(&[], "/w", "/h")
                .as_deref(),
            Some("echo $HOME")
        );
    }

    #[test]
    fn just_recipes() {
        let text = "set dotenv-load\nroot := \"/\"\n\ndefault: test\n\ntest:\n    cargo test\n\nnuke:\n    rm -rf {{root}}\n";
        assert_eq!(just_script(text, &[]).as_deref(), Some("cargo test"));
        assert!(just_script(text, &["nuke".into()])
            .unwrap_or_default()
            .contains("rm -rf /"));
        assert!(just_script("set shell := [\"python3\", \"-c\"]\nx:\n  y\n", &[]).is_none());
    }

    #[test]
    fn sqlite_dot_commands() {
        let (c, u) = sqlite_code(".shell sudo id\nselect 1;\n.once '|sh -c id'\n");
        assert_eq!(c, vec!["sudo id".to_string(), "sh -c id".to_string()]);
        assert!(!u);
        assert!(sqlite_code(".load ./evil").1);
        assert!(sqlite_code("select 1 != 2;").0.is_empty());
    }

    #[test]
    fn package_names() {
        assert_eq!(package_name("cowsay@1.2"), "cowsay");
        assert_eq!(package_name("@scope/x@2"), "@scope/x");
        assert_eq!(package_name("ruff==0.4"), "ruff");
        assert_eq!(package_name("black[jupyter]"), "black");
    }
}
