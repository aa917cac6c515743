//! Simple commands → invocations: the program's base name, canonical flags (`-rf` = `-r -f` =
//! `--recursive --force`), positionals, the paths read and written, and every command hiding
//! inside another (wrappers such as `sudo`/`env`/`xargs`, `sh -c`, `eval`, `find -exec`,
//! `git -c`, code given inline to interpreters, shells fed by pipes and here-documents).
//!
//! The tables that say how each program spells its options are data (`rules/default.toml`).

use std::collections::HashSet;

use crate::files::WrittenFiles;
use crate::glob::Glob;
use crate::ir::{CodeFrom, Env, Invocation, SimpleCmd, Stdin, Word, DYN};
use crate::parse::{self, ParseError};
use crate::pathname::basename;
use crate::schema::{FlagSpec, Tables, WrapperSpec};

mod code_options;
mod interpreters;
mod invocation;
mod pipes;
mod runfiles;
mod speculate;
mod taskrunners;
mod webfetch;
mod wrappers;

use interpreters::FloorBoundary;
use invocation::split_flags;

pub use interpreters::string_literals;

// Kept at their old paths for callers outside the crate.
pub use crate::files::MAX_FILE_BYTES;
pub use crate::pathname::lexical;

/// Everything found in one input.
#[derive(Debug, Default)]
pub struct Analysis {
    pub invocations: Vec<Invocation>,
    /// Parse failures of nested code that must not be trusted (top-level failures are errors).
    pub errors: Vec<(String, ParseError)>,
    /// Words looked at so far, over every nested command (bounds the work of hostile input:
    /// `find . -exec find . -exec …` revisits the rest of the words at every level).
    pub work: usize,
}

/// Compiled tables, ready to normalise many commands.
#[derive(Debug)]
pub struct Normalizer {
    tables: Tables,
    interp_globs: Vec<(Glob, String)>,
    known_programs: KnownPrograms,
    fetchers: HashSet<String>,
    decoders: HashSet<String>,
    inert: HashSet<String>,
    speculate: HashSet<String>,
    code_option_names: Vec<Glob>,
    /// Compiled when WebFetch is first judged.
    webfetch_docs: std::sync::OnceLock<Vec<Glob>>,
    exec_env: Vec<Glob>,
}

/// The program names airlock knows (a table, a rule or an interpreter names them), sorted and
/// without duplicates: see [`known_programs`].
#[derive(Debug)]
pub(crate) enum KnownPrograms {
    /// The built-in rules' and tables' list, made when airlock is built (`build.rs`): the
    /// hook's case, with no rules of the user's.
    Builtin(&'static [&'static str]),
    /// Built when the rules are loaded.
    Loaded(Vec<String>),
}

impl KnownPrograms {
    fn contains(&self, prog: &str) -> bool {
        match self {
            KnownPrograms::Builtin(v) => v.binary_search(&prog).is_ok(),
            KnownPrograms::Loaded(v) => v.binary_search_by(|p| p.as_str().cmp(prog)).is_ok(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            KnownPrograms::Builtin(v) => Box::new(v.iter().copied()),
            KnownPrograms::Loaded(v) => Box::new(v.iter().map(String::as_str)),
        }
    }
}

/// The program names `tables` and the rules' static program names (`extra_programs`) know:
/// the keys of `programs` (without the `"git push"` ones) and `wrappers`, and the literal
/// `programs` of `interpreters`; sorted, without duplicates or empty names. `build.rs` makes
/// the same list for the built-in data.
pub(crate) fn known_programs(
    tables: &Tables,
    extra_programs: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut known: HashSet<String> = extra_programs.into_iter().collect();
    known.extend(
        tables
            .programs
            .keys()
            .filter(|k| !k.contains(' '))
            .map(str::to_string),
    );
    known.extend(tables.wrappers.keys().map(str::to_string));
    for spec in tables.interpreters.values() {
        known.extend(spec.programs.iter().filter(|p| !p.contains('*')).cloned());
    }
    let mut known_programs: Vec<String> = known.into_iter().filter(|k| !k.is_empty()).collect();
    known_programs.sort();
    known_programs
}

const SHELL_CODE_ORIGIN_LIMIT: usize = 64;
/// Most programs a globbed program word is evaluated as.
const MAX_GLOB_CANDIDATES: usize = 8;
/// Most words looked at over all nested commands of one input (see [`Analysis::work`]).
const MAX_WORK: usize = 20_000;
/// Most glob paths of one command judged by what they can name.
const MAX_GLOB_PATHS: usize = 64;
/// Most words a command guessed in an unknown program's arguments is judged on.
const SPECULATION_WORDS: usize = 64;
/// What one parse of nested code counts for in [`Analysis::work`].
const NESTED_PARSE_WORK: usize = 64;
/// Most arguments of one command taken as code each (`hyperfine A B …`, `tmux send-keys …`).
const MAX_EACH_ARG: usize = 16;

/// Most lines of standard input read as values of a `stdin` code row (`ed <<< '!CMD'`).
const MAX_STDIN_LINES: usize = 256;
/// Shells, for [`Normalizer::shell_in_option`].
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "fish", "csh", "tcsh", "busybox",
];
/// Hop count from which globbed program words are no longer expanded.
const GLOB_HOPS: usize = 8;

impl Normalizer {
    /// Compiles `tables`; `extra_programs` are names rules mention (candidates for globbed
    /// program words).
    pub fn new(tables: Tables, extra_programs: impl IntoIterator<Item = String>) -> Normalizer {
        let known = KnownPrograms::Loaded(known_programs(&tables, extra_programs));
        Normalizer::with_known(tables, known)
    }

    /// Compiles `tables`, with `known` the program names of the tables and the rules.
    pub(crate) fn with_known(mut tables: Tables, known: KnownPrograms) -> Normalizer {
        let mut interp_globs = Vec::new();
        for (name, spec) in &tables.interpreters {
            for p in &spec.programs {
                interp_globs.push((Glob::new(p), name.clone()));
            }
        }
        // Moved, not copied: nothing else reads these lists from the tables.
        let set = |v: &mut Vec<String>| std::mem::take(v).into_iter().collect::<HashSet<_>>();
        Normalizer {
            inert: set(&mut tables.inert),
            speculate: set(&mut tables.speculate),
            code_option_names: tables
                .code_option_names
                .iter()
                .map(|g| Glob::new(g))
                .collect(),
            webfetch_docs: std::sync::OnceLock::new(),
            exec_env: tables.exec_env.iter().map(|g| Glob::new(g)).collect(),
            fetchers: set(&mut tables.fetchers),
            decoders: set(&mut tables.decoders),
            interp_globs,
            known_programs: known,
            tables,
        }
    }

    /// The program names it knows.
    #[cfg(test)]
    pub(crate) fn known(&self) -> &KnownPrograms {
        &self.known_programs
    }

    /// Parses and normalises `src`. A top-level parse failure is an error; failures in nested
    /// code are recorded in [`Analysis::errors`].
    pub fn analyse(&self, src: &str, env: &Env) -> Result<Analysis, ParseError> {
        let cmds = parse::parse(src, env, "", 0)?;
        let mut out = Analysis::default();
        for c in &cmds {
            self.simple(c, env, &mut out);
        }
        Ok(out)
    }

    /// Shell code found inside `cmd` (`sh -c CODE`, `eval`, a code option): parsed one level
    /// deeper, in `cmd`'s directory, input and written files, and each of its commands
    /// analysed. False (with the error recorded) when it is nested too deep, over the work
    /// budget, or does not parse.
    fn nested_code(
        &self,
        code: &str,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> bool {
        if cmd.depth >= parse::MAX_DEPTH {
            out.errors.push((origin.to_string(), ParseError::TooDeep));
            return false;
        }
        // A parse costs more than a word: count it as many.
        out.work += NESTED_PARSE_WORK + code.len() / 8;
        if out.work > MAX_WORK {
            out.errors
                .push((origin.to_string(), ParseError::TooMuchNesting));
            return false;
        }
        let env2 = Env {
            home: env.home.clone(),
            cwd: cmd.cwd.clone().unwrap_or_else(|| env.cwd.clone()),
        };
        let origin = nested_origin(cmd, origin);
        match parse::parse_with(code, &env2, &origin, cmd.depth + 1, &cmd.vars) {
            Ok(cmds) => {
                for mut c in cmds {
                    inherit_outer(&mut c, cmd);
                    self.simple(&c, env, out);
                }
                true
            }
            Err(e) => {
                out.errors.push((origin, e));
                false
            }
        }
    }

    fn simple(&self, cmd: &SimpleCmd, env: &Env, out: &mut Analysis) {
        // Files the same tool call wrote before this command are read as written.
        let _written = WrittenFiles::enter(&cmd.files);
        // Assignments whose value is run as a command (GIT_SSH_COMMAND=…, PAGER=…).
        for (name, value) in &cmd.assigns {
            if self.is_exec_env(name) {
                self.exec_env_value(name, value, cmd, env, out);
            }
        }
        self.argv(cmd, &cmd.argv, env, out, 0);
    }

    fn code_word(
        &self,
        w: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if w.is_dynamic() {
            CodeFrom::Unseen
        } else if self.nested_code(&w.text, origin, cmd, env, out) {
            CodeFrom::Seen
        } else {
            CodeFrom::Unseen
        }
    }

    /// One command's argv (after wrappers, `hops` levels deep): an invocation for its program,
    /// plus everything hiding in it.
    fn argv(&self, cmd: &SimpleCmd, argv: &[Word], env: &Env, out: &mut Analysis, hops: usize) {
        if !within_budget(cmd, argv, out, hops) {
            return;
        }
        let Some(first) = argv.first() else {
            out.invocations
                .push(self.invocation(cmd, "", false, &[], env));
            return;
        };
        if first.is_dynamic() {
            let mut inv = self.invocation(cmd, &DYN.to_string(), false, &argv[1..], env);
            inv.raw.insert(0, first.raw.clone());
            out.invocations.push(inv);
            return;
        }
        let base = basename(&first.text);
        if first.glob {
            self.globbed_program(cmd, argv, &base, env, out, hops);
            return;
        }
        let args = &argv[1..];
        if let Some(w) = self.tables.wrappers.get(base.as_str()) {
            self.wrapped(cmd, &base, w, args, env, out, hops);
            return;
        }
        if self.runner_verb(cmd, &base, args, env, out, hops) {
            return;
        }
        self.program(cmd, first, &base, args, env, out, hops);
    }

    /// A program word that is a glob (`/bin/r?`): judged as each program airlock knows that it
    /// can name, or, naming none or too many, as a program only known at run time.
    fn globbed_program(
        &self,
        cmd: &SimpleCmd,
        argv: &[Word],
        base: &str,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let g = Glob::new(base);
        let candidates: Vec<&str> = self
            .known_programs
            .iter()
            .filter(|p| g.matches(p))
            .collect();
        // A glob naming many programs (`*`, `?*`) is as good as unknown; and a glob inside a
        // glob candidate's arguments is not expanded again (that multiplies).
        if candidates.is_empty() || candidates.len() > MAX_GLOB_CANDIDATES || hops >= GLOB_HOPS {
            let mut inv = self.invocation(cmd, &DYN.to_string(), true, &argv[1..], env);
            inv.raw.insert(0, argv[0].raw.clone());
            out.invocations.push(inv);
            return;
        }
        for c in candidates {
            let mut new_argv = argv.to_vec();
            new_argv[0] = Word::lit(c);
            let before = out.invocations.len();
            self.argv(cmd, &new_argv, env, out, hops.max(GLOB_HOPS) + 1);
            for inv in &mut out.invocations[before..] {
                inv.program_glob = true;
            }
        }
    }

    /// A wrapper (`sudo`, `env`, `npx`, …): judged itself, with its own options kept verbatim
    /// up to the wrapped command, and so is the command it runs.
    #[allow(clippy::too_many_arguments)]
    fn wrapped(
        &self,
        cmd: &SimpleCmd,
        base: &str,
        w: &WrapperSpec,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let mut inv = self.invocation(cmd, base, false, args, env);
        // The wrapper's own options end at the wrapped command: keep that verbatim.
        let own = FlagSpec {
            values: w
                .values
                .iter()
                .chain(w.code_flags.iter())
                .cloned()
                .collect(),
            ..FlagSpec::default()
        };
        let (flags, _, stop) = split_flags(args, &own, true);
        inv.flags = flags;
        inv.positionals = args[stop.min(args.len())..].to_vec();
        out.invocations.push(inv);
        self.registry_package(cmd, base, w, args, env, out);
        self.wrapper(cmd, base, w, args, env, out, hops);
    }

    /// `uv run CMD`, `mise exec -- CMD`: a runner whose verb is a wrapper (`wrappers` key
    /// `"uv run"`); the runner is judged (its own words up to the verb), and so is CMD. False
    /// when the program has no such verb here.
    fn runner_verb(
        &self,
        cmd: &SimpleCmd,
        base: &str,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) -> bool {
        let Some((sub, at)) = self.first_positional(base, args) else {
            return false;
        };
        let key = format!("{base} {sub}");
        let Some(w) = self.tables.wrappers.get(&key) else {
            return false;
        };
        let inv = self.invocation(cmd, base, false, &args[..=at], env);
        out.invocations.push(inv);
        self.registry_package(cmd, &key, w, &args[at + 1..], env, out);
        self.wrapper(cmd, &key, w, &args[at + 1..], env, out, hops);
        true
    }

    /// Any other program: its invocation, the commands hiding in its arguments (special
    /// forms, code-valued options, task files, guesses for a program airlock does not know),
    /// and the content of a script run by path.
    #[allow(clippy::too_many_arguments)]
    fn program(
        &self,
        cmd: &SimpleCmd,
        first: &Word,
        base: &str,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let mut inv = self.invocation(cmd, base, false, args, env);
        self.special(cmd, base, args, &mut inv, env, out, hops);
        self.code_options(cmd, &mut inv, args, env, out, hops);
        self.task_files(cmd, base, &mut inv, env, out);
        if self.is_unknown(base) {
            inv.unknown_program = true;
            if hops < GLOB_HOPS {
                self.speculate(cmd, base, args, env, out, hops);
            }
        }
        if first.text.contains('/') {
            // `./x.sh` where x.sh was written earlier in this command.
            if let Some(from) = self.written_script(cmd, first, env, out) {
                inv.code_from = from;
            } else if self.is_unknown(base) {
                // `./x.sh`: a script on disk (written by an earlier tool call), judged by content.
                if let Some(from) = self.script_file(cmd, first, env, out) {
                    inv.code_from = from;
                }
            }
        }
        out.invocations.push(inv);
    }

    /// Commands hiding in the arguments of this one.
    #[allow(clippy::too_many_arguments)]
    fn special(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        args: &[Word],
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        match prog {
            "eval" => inv.code_from = self.eval_code(cmd, args, env, out),
            "source" | "." => inv.code_from = self.sourced_code(cmd, args, env, out),
            "alias" => self.alias_values(cmd, args, env, out),
            "find" => self.find_exec(cmd, inv, args, env, out, hops),
            "git" => self.git(cmd, inv, env, out),
            _ => {
                if let Some((iname, spec)) = self.interpreter(prog) {
                    self.interpreter_code(cmd, &iname, spec, inv, env, out, hops);
                }
            }
        }
    }

    /// `eval ARGS…`: the arguments joined by spaces are shell code.
    fn eval_code(&self, cmd: &SimpleCmd, args: &[Word], env: &Env, out: &mut Analysis) -> CodeFrom {
        if args.is_empty() {
            return CodeFrom::NotCode;
        }
        let code = Word {
            text: args
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            ..Word::lit("")
        };
        self.code_word(&code, "eval", cmd, env, out)
    }

    /// `source FILE` / `. FILE`: a process substitution's commands, standard input, a script
    /// written earlier in the same command, or a script on disk judged by its content.
    fn sourced_code(
        &self,
        cmd: &SimpleCmd,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        match args.first() {
            Some(w) if w.procsub.is_some() => self.upstream_code(
                w.procsub.as_deref().unwrap_or(&[]),
                cmd,
                "source <(…)",
                env,
                out,
            ),
            Some(w) if w.text == "/dev/stdin" => self.stdin_code(cmd, "source", env, out),
            Some(w) => match self.written_script(cmd, w, env, out) {
                Some(from) => from,
                None => self
                    .script_file(cmd, w, env, out)
                    .unwrap_or(CodeFrom::NotCode),
            },
            None => CodeFrom::NotCode,
        }
    }

    /// `alias NAME=VALUE`: each value is shell code.
    fn alias_values(&self, cmd: &SimpleCmd, args: &[Word], env: &Env, out: &mut Analysis) {
        for a in args {
            if let Some((_, v)) = a.text.split_once('=') {
                self.code_word(
                    &Word {
                        text: v.to_string(),
                        ..a.clone()
                    },
                    "alias",
                    cmd,
                    env,
                    out,
                );
            }
        }
    }

    /// Whether airlock knows nothing about `prog` (no table, no rule, not inert).
    fn is_unknown(&self, prog: &str) -> bool {
        !prog.is_empty()
            && !self.inert.contains(prog)
            && !self.known_programs.contains(prog)
            && self.interpreter(prog).is_none()
    }

    /// Whether `prog` is a program airlock has a table or a rule for.
    fn is_known(&self, prog: &str) -> bool {
        self.known_programs.contains(prog) || self.interpreter(prog).is_some()
    }
}

/// Canonical option names with their values.
type Flags = Vec<(String, Option<Word>)>;

/// Where nested code was found: `origin` after the outer command's own, cut to
/// [`SHELL_CODE_ORIGIN_LIMIT`] bytes.
fn nested_origin(cmd: &SimpleCmd, origin: &str) -> String {
    if cmd.origin.is_empty() {
        return origin.to_string();
    }
    let mut o = format!("{} › {origin}", cmd.origin);
    if o.len() > SHELL_CODE_ORIGIN_LIMIT {
        o.truncate(o.floor_char_boundary_compat(SHELL_CODE_ORIGIN_LIMIT));
    }
    o
}

/// A command of nested code takes from the outer command `outer`: an unknown directory,
/// its standard input (`curl … | bash -c 'cat | sh'`: the nested code reads the outer
/// stdin), the files written before it, and the commands its output flows to.
fn inherit_outer(c: &mut SimpleCmd, outer: &SimpleCmd) {
    if c.cwd.is_none() || outer.cwd.is_none() {
        c.cwd = None;
    }
    match (&mut c.stdin, &outer.stdin) {
        (_, Stdin::Inherited) => {}
        (s @ Stdin::Inherited, outer) => *s = outer.clone(),
        (Stdin::Pipe(up), Stdin::Pipe(outer)) => {
            let mut all = outer.clone();
            all.append(up);
            *up = all;
        }
        _ => {}
    }
    // Files written before the outer command are there for the nested one.
    if c.files.is_empty() {
        c.files = outer.files.clone();
    } else {
        let files = std::sync::Arc::make_mut(&mut c.files);
        for (p, content) in outer.files.iter() {
            if files.len() < 64 && !files.iter().any(|(q, _)| q == p) {
                files.push((p.clone(), content.clone()));
            }
        }
    }
    c.downstream.extend(outer.downstream.iter().cloned());
    c.downstream_argv
        .extend(outer.downstream_argv.iter().cloned());
}

/// Counts `argv` against the input's work budget: false (with the error recorded once) past
/// 16 nested levels or [`MAX_WORK`] words.
fn within_budget(cmd: &SimpleCmd, argv: &[Word], out: &mut Analysis, hops: usize) -> bool {
    if hops > 16 {
        out.errors.push((cmd.origin.clone(), ParseError::TooDeep));
        return false;
    }
    out.work += argv.len() + 1;
    if out.work > MAX_WORK {
        if !out
            .errors
            .iter()
            .any(|(_, e)| *e == ParseError::TooMuchNesting)
        {
            out.errors
                .push((cmd.origin.clone(), ParseError::TooMuchNesting));
        }
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths() {
        assert_eq!(lexical("/a/b/../c/./d//"), "/a/c/d");
        assert_eq!(lexical("/.."), "/");
        assert_eq!(lexical("/tmp/../etc"), "/etc");
    }

    #[test]
    fn literals() {
        assert_eq!(
            string_literals(r#"subprocess.run(["rm", "-rf", "/"])"#),
            vec!["rm", "-rf", "/", "rm -rf /"]
        );
        assert_eq!(string_literals(r#"os.system('ls -la')"#), vec!["ls -la"]);
    }

    #[test]
    fn flags_split() {
        let mut spec = FlagSpec::default();
        spec.short.insert("r".into(), "recursive".into());
        spec.short.insert("f".into(), "force".into());
        let args: Vec<Word> = ["-rf", "--", "-x"].iter().map(|s| Word::lit(s)).collect();
        let (f, p, _) = split_flags(&args, &spec, false);
        assert_eq!(
            f.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            vec!["recursive", "force"]
        );
        assert_eq!(p[0].text, "-x");
    }
}
