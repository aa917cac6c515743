//! One simple command's words → an [`Invocation`]: the program, canonical flags (the
//! `programs` table), positionals, the paths read and written, and `git -c` values.

use std::collections::HashSet;

use crate::glob::Glob;
use crate::ir::{CodeFrom, Env, Invocation, RedirKind, SimpleCmd, Stdin, Word, DYN};
use crate::pathname::looks_like_path;
use crate::schema::FlagSpec;

use super::{Analysis, Flags, Normalizer, MAX_GLOB_PATHS};

impl Normalizer {
    /// Builds the invocation for `program` with `args`, using its flag spec: the subcommand and
    /// canonical flags, then the paths it reads and writes.
    pub(super) fn invocation(
        &self,
        cmd: &SimpleCmd,
        program: &str,
        glob: bool,
        args: &[Word],
        _env: &Env,
    ) -> Invocation {
        let split = self.split_command(program, args);
        let default_spec = FlagSpec::default();
        let spec = split.spec.unwrap_or(&default_spec);
        let mut paths = PathArgs::default();
        paths.redirects(cmd);
        paths.positionals(program, spec, &split.positionals);
        paths.in_place(&split.flags, &split.positionals);
        paths.flag_values(spec, &split.flags);
        if spec.single_dash_long {
            paths.operands(&split.positionals);
        }
        let network = spec.network
            || split.spec.is_none() && self.tables.programs.get(program).is_some_and(|s| s.network);
        for v in [&mut paths.reads, &mut paths.writes, &mut paths.path_args] {
            bound_paths(v);
        }
        let mut raw: Vec<String> = args.iter().map(|w| w.raw.clone()).collect();
        raw.extend(cmd.assigns.iter().map(|(_, w)| w.raw.clone()));
        Invocation {
            program: program.to_string(),
            program_glob: glob,
            subcommand: split.subcommand,
            flags: split.flags,
            positionals: split.positionals,
            words: args.to_vec(),
            assigns: cmd.assigns.clone(),
            reads: paths.reads,
            writes: paths.writes,
            path_args: paths.path_args,
            raw,
            cwd: cmd.cwd.clone(),
            origin: cmd.origin.clone(),
            code_from: CodeFrom::NotCode,
            inline: Vec::new(),
            git_config: split.git_config,
            network,
            unparsed: None,
            downstream: cmd.downstream.clone(),
            downstream_argv: cmd.downstream_argv.clone(),
            unknown_program: false,
            speculative: None,
            written: cmd.files.clone(),
        }
    }

    /// Splits `args` by `program`'s flag spec: for a program with subcommands, its global
    /// options (and `git -c`/`--config-env` values), the subcommand and the subcommand's own
    /// spec; then the options and positionals that follow.
    fn split_command(&self, program: &str, args: &[Word]) -> SplitCommand<'_> {
        let mut spec = self.tables.programs.get(program);
        let mut subcommand = None;
        let mut flags = Vec::new();
        let mut git_config = Vec::new();
        let mut rest: &[Word] = args;
        if let Some(s) = spec.filter(|s| s.subcommands) {
            // Global options, then the subcommand, then its own options.
            let (f, _, stop) = split_flags(rest, s, true);
            if program == "git" {
                git_config = git_config_flags(&f);
            }
            flags = f;
            if let Some(sub) = rest.get(stop) {
                subcommand = Some(sub.text.clone());
                rest = &rest[stop + 1..];
                spec = self.tables.programs.get(&format!("{program} {}", sub.text));
            } else {
                rest = &[];
            }
        }
        let default_spec = FlagSpec::default();
        let (f2, positionals, _) = split_flags(rest, spec.unwrap_or(&default_spec), false);
        flags.extend(f2);
        SplitCommand {
            spec,
            subcommand,
            flags,
            positionals,
            git_config,
        }
    }

    /// The first positional argument (a subcommand or runner verb) and its index, skipping the
    /// program's global options (with their values) and toolchain selectors.
    pub(super) fn first_positional(&self, prog: &str, args: &[Word]) -> Option<(String, usize)> {
        let default_spec = FlagSpec::default();
        let spec = self.tables.programs.get(prog).unwrap_or(&default_spec);
        let (_, _, stop) = split_flags(args, spec, true);
        let w = args.get(stop)?;
        w.as_static().map(|s| (s.to_string(), stop))
    }

    pub(super) fn git(&self, cmd: &SimpleCmd, inv: &mut Invocation, env: &Env, out: &mut Analysis) {
        // `git -c core.pager=… log`: a config value that is a command runs.
        let keys = &self.tables.git_exec_keys;
        let is_exec_key = |k: &str| keys.iter().any(|p| Glob::new(p).matches(k));
        for (k, v) in inv.git_config.clone() {
            if is_exec_key(&k) {
                if v.contains(DYN) {
                    // `git --config-env=core.pager=VAR`: the value is in the environment.
                    inv.code_from = CodeFrom::Unseen;
                    continue;
                }
                let code = v.strip_prefix('!').unwrap_or(&v);
                if !code.is_empty() {
                    let from =
                        self.code_value(&Word::lit(code), &format!("git -c {k}"), cmd, env, out);
                    if from == CodeFrom::Unseen {
                        inv.code_from = CodeFrom::Unseen;
                    }
                }
            }
        }
    }
}

/// Splits options from positionals. With `stop_at_positional`, stops at the first positional
/// and returns its index (for subcommand programs).
pub(super) fn split_flags(
    args: &[Word],
    spec: &FlagSpec,
    stop_at_positional: bool,
) -> (Flags, Vec<Word>, usize) {
    let mut flags = Vec::new();
    let mut pos = Vec::new();
    let mut i = 0;
    let mut only_pos = false;
    while i < args.len() {
        let a = &args[i];
        let t = a.text.as_str();
        if spec.selectors && !only_pos && t.len() > 1 && t.starts_with('+') && !a.is_dynamic() {
            flags.push((t.to_string(), None));
            i += 1;
            continue;
        }
        if only_pos || a.is_dynamic() && !t.starts_with('-') || t == "-" || !t.starts_with('-') {
            if stop_at_positional {
                return (flags, pos, i);
            }
            pos.push(a.clone());
            i += 1;
            continue;
        }
        if t == "--" {
            only_pos = true;
            i += 1;
            if stop_at_positional {
                return (flags, pos, i);
            }
            continue;
        }
        let long = t.strip_prefix("--").or_else(|| {
            if spec.single_dash_long {
                t.strip_prefix('-')
            } else {
                None
            }
        });
        i += match long {
            Some(long) => long_option(spec, long, args, i, &mut flags),
            None => short_bundle(spec, &t[1..], args, i, &mut flags),
        };
    }
    let n = args.len();
    (flags, pos, n)
}

/// `--name[=value]` at `args[i]` (`long` without its dashes), by its canonical name; a value
/// the spec expects and the word does not hold is the next word. Returns the words used.
fn long_option(spec: &FlagSpec, long: &str, args: &[Word], i: usize, flags: &mut Flags) -> usize {
    let canon_long = |n: &str| spec.long.get(n).cloned().unwrap_or_else(|| n.to_string());
    let (name, val) = match long.split_once('=') {
        Some((n, v)) => (
            canon_long(n),
            Some(Word {
                text: v.to_string(),
                ..args[i].clone()
            }),
        ),
        None => (canon_long(long), None),
    };
    if val.is_none() && spec.values.contains(&name) {
        flags.push((name, args.get(i + 1).cloned()));
        return 2;
    }
    flags.push((name, val));
    1
}

/// A bundle of short options at `args[i]` (`body` without its dash): each letter by its
/// canonical name, until one that takes a value (the rest of the bundle, or the next word).
/// Returns the words used.
fn short_bundle(spec: &FlagSpec, body: &str, args: &[Word], i: usize, flags: &mut Flags) -> usize {
    for (k, c) in body.char_indices() {
        let letter = c.to_string();
        let name = spec.short.get(&letter).cloned().unwrap_or(letter);
        if spec.values.contains(&name) {
            let rest = &body[k + c.len_utf8()..];
            if rest.is_empty() {
                flags.push((name, args.get(i + 1).cloned()));
                return 2;
            }
            let val = Word {
                text: rest.to_string(),
                ..args[i].clone()
            };
            flags.push((name, Some(val)));
            return 1;
        }
        flags.push((name, None));
    }
    1
}

/// Whether `w` is a chmod(1) mode: octal digits, or `[ugoa]*[-+=][rwxXst]*` clauses.
pub(super) fn is_chmod_mode(w: &Word) -> bool {
    let t = w.text.as_str();
    if w.is_dynamic() || t.starts_with("--reference") {
        return true;
    }
    if !t.is_empty() && t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return true;
    }
    t.split(',').all(|clause| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        ops.starts_with(['+', '-', '=']) && ops.chars().all(|c| "+-=rwxXstugo".contains(c))
    })
}

/// Drops repeated paths, and keeps at most [`MAX_GLOB_PATHS`] glob paths (each is judged by
/// every path it can name, which costs): past that, one path only known at run time stands for
/// the rest (ask).
pub(super) fn bound_paths(v: &mut Vec<Word>) {
    let mut seen = HashSet::new();
    v.retain(|w| seen.insert((w.text.clone(), w.glob)));
    let globs = v.iter().filter(|w| w.glob).count();
    if globs > MAX_GLOB_PATHS {
        let mut kept = 0usize;
        v.retain(|w| {
            if !w.glob {
                return true;
            }
            kept += 1;
            kept <= MAX_GLOB_PATHS
        });
        v.push(Word::dynamic("(more glob paths)"));
    }
}

pub(super) fn is_assignment(t: &str) -> bool {
    match t.split_once('=') {
        Some((n, _)) => {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

pub(super) fn is_harmless_device(p: &str) -> bool {
    matches!(
        p,
        "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty" | "/dev/zero"
    ) || p.starts_with("/dev/fd/")
}

/// A command's words split by its flag spec.
#[derive(Debug)]
struct SplitCommand<'a> {
    /// The spec of the subcommand (or of the program), if airlock has one.
    spec: Option<&'a FlagSpec>,
    subcommand: Option<String>,
    /// Canonical flag names with their values: global ones first.
    flags: Vec<(String, Option<Word>)>,
    positionals: Vec<Word>,
    /// `git -c KEY=VALUE` (key lowercased); `--config-env=KEY=VAR` gives a value only known at
    /// run time.
    git_config: Vec<(String, String)>,
}

/// The configuration git's global options set (`-c KEY[=VALUE]`, `--config-env=KEY=VAR`).
fn git_config_flags(flags: &[(String, Option<Word>)]) -> Vec<(String, String)> {
    let mut git_config = Vec::new();
    for (n, v) in flags {
        if n == "config-env" {
            // `--config-env=KEY=VAR`: KEY's value comes from the environment.
            if let Some((k, var)) = v.as_ref().and_then(|v| v.text.split_once('=')) {
                git_config.push((k.to_ascii_lowercase(), format!("{DYN}{var}")));
            }
        }
        if n == "c" {
            if let Some(v) = v {
                if let Some((k, val)) = v.text.split_once('=') {
                    git_config.push((k.to_ascii_lowercase(), val.to_string()));
                } else {
                    git_config.push((v.text.to_ascii_lowercase(), String::new()));
                }
            }
        }
    }
    git_config
}

/// The paths one invocation reads and writes, and its path arguments, in the order found.
#[derive(Debug, Default)]
struct PathArgs {
    reads: Vec<Word>,
    writes: Vec<Word>,
    path_args: Vec<Word>,
}

impl PathArgs {
    /// File redirections (not harmless devices such as `/dev/null`) and `< file` input.
    fn redirects(&mut self, cmd: &SimpleCmd) {
        for r in &cmd.redirects {
            let t = &r.target;
            if is_harmless_device(&t.text) {
                continue;
            }
            match r.kind {
                RedirKind::Read => self.reads.push(t.clone()),
                RedirKind::Write => self.writes.push(t.clone()),
            }
        }
        if let Stdin::File(w) = &cmd.stdin {
            if !self.reads.contains(w) {
                self.reads.push(w.clone());
            }
        }
    }

    /// Positionals that are paths (all of them for a `path_args` program, else those that look
    /// like paths), after the spec's `skip_args`: written (`writes_args`, or the last of several
    /// with `writes_last`) or read.
    fn positionals(&mut self, program: &str, spec: &FlagSpec, positionals: &[Word]) {
        // `chmod -x FILE`: the mode was written as an option, so there is no MODE positional.
        let skip = if program == "chmod" && !positionals.first().is_some_and(is_chmod_mode) {
            0
        } else {
            spec.skip_args
        };
        let file_positionals: Vec<&Word> = positionals.iter().skip(skip).collect();
        for (i, p) in file_positionals.iter().enumerate() {
            let is_path = spec.path_args || looks_like_path(p);
            if !is_path {
                continue;
            }
            if spec.path_args || !p.is_dynamic() {
                self.path_args.push((*p).clone());
            }
            let written = spec.writes_args
                || (spec.writes_last
                    && i + 1 == file_positionals.len()
                    && file_positionals.len() > 1);
            if written {
                self.writes.push((*p).clone());
            } else if !p.is_dynamic() || looks_like_path(p) {
                self.reads.push((*p).clone());
            }
        }
    }

    /// `sed -i SCRIPT FILE…` (the script is the first positional unless given with `-e`),
    /// `perl -i -pe CODE FILE…`: the files are edited.
    fn in_place(&mut self, flags: &[(String, Option<Word>)], positionals: &[Word]) {
        if !flags.iter().any(|(n, _)| n == "in-place") {
            return;
        }
        let script_given = flags
            .iter()
            .any(|(n, _)| matches!(n.as_str(), "expression" | "e" | "E" | "file"));
        let skip = usize::from(!script_given);
        for p in positionals.iter().skip(skip) {
            if !self.writes.contains(p) {
                self.writes.push(p.clone());
            }
        }
    }

    /// Option values (`@file` as `file`): written for the spec's `write_values`, read when
    /// they look like paths.
    fn flag_values(&mut self, spec: &FlagSpec, flags: &[(String, Option<Word>)]) {
        for (name, val) in flags {
            let Some(v) = val else { continue };
            let v = match v.text.strip_prefix('@') {
                Some(rest) => Word {
                    text: rest.to_string(),
                    ..v.clone()
                },
                None => v.clone(),
            };
            if spec.write_values.contains(name) {
                if !is_harmless_device(&v.text) && v.text != "-" {
                    self.writes.push(v.clone());
                    self.path_args.push(v);
                }
            } else if looks_like_path(&v) {
                self.reads.push(v);
            }
        }
    }

    /// `dd of=…` / `if=…` style operands.
    fn operands(&mut self, positionals: &[Word]) {
        for p in positionals {
            if let Some(v) = p.text.strip_prefix("of=") {
                self.writes.push(Word {
                    text: v.to_string(),
                    ..p.clone()
                });
            } else if let Some(v) = p.text.strip_prefix("if=") {
                self.reads.push(Word {
                    text: v.to_string(),
                    ..p.clone()
                });
            }
        }
    }
}
