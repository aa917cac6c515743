//! Simple commands → invocations: the program's base name, canonical flags (`-rf` = `-r -f` =
//! `--recursive --force`), positionals, the paths read and written, and every command hiding
//! inside another (wrappers such as `sudo`/`env`/`xargs`, `sh -c`, `eval`, `find -exec`,
//! `git -c`, code given inline to interpreters, shells fed by pipes and here-documents).
//!
//! The tables that say how each program spells its options are data (`rules/default.toml`).

use std::collections::HashSet;

use crate::files::{read_text, FileText, WrittenFiles};
use crate::glob::Glob;
use crate::ir::{
    CodeFrom, Env, FileContent, InlineKind, Invocation, RedirKind, SimpleCmd, Stdin, Upstream,
    Word, DYN,
};
use crate::parse::{self, ParseError};
use crate::pathname::{basename, expand_tilde, looks_like_path};
use crate::schema::{CodeOption, CodeRuns, FlagSpec, InterpreterSpec, Tables, WrapperSpec};

mod runfiles;
mod taskrunners;

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
/// Whether an inline-code string literal names a path (`/etc`, `~/x`, `./y`, `.ssh/id`).
/// A pattern of glob characters alone (`**`, `*`) names no particular path.
fn names_path(lit: &str) -> bool {
    let l = lit.trim_start_matches(['+', '<', '>', '|', ' ']);
    l.chars().any(char::is_alphanumeric) && (looks_like_path(&Word::lit(l)) || l.starts_with('~'))
}

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

    /// Whether WebFetch may read `url` without asking: https, no credentials or port in the
    /// URL, a short query, and either a documentation host (`webfetch_docs`) or the shape of a
    /// documentation page on any named host: a documentation path segment (`/docs/`,
    /// `/en/stable/`, `/reference/`; a host name alone proves nothing), no query, and no path segment that
    /// could carry data out (long, or a run of base64/hex-looking characters).
    pub fn is_doc_url(&self, url: &str) -> bool {
        let Some(rest) = url.strip_prefix("https://") else {
            return false;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let host = rest[..end].to_ascii_lowercase();
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        if url.len() > 2048 || query.len() > 200 || host.contains(['@', ':']) || host.is_empty() {
            return false;
        }
        self.webfetch_docs
            .get_or_init(|| {
                let docs = &self.tables.webfetch_docs;
                docs.iter().map(|g| Glob::new(g)).collect()
            })
            .iter()
            .any(|g| g.matches(&host))
            || query.is_empty() && doc_page_shape(&host, &rest[end..])
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
        let origin = if cmd.origin.is_empty() {
            origin.to_string()
        } else {
            let mut o = format!("{} › {origin}", cmd.origin);
            if o.len() > SHELL_CODE_ORIGIN_LIMIT {
                o.truncate(o.floor_char_boundary_compat(SHELL_CODE_ORIGIN_LIMIT));
            }
            o
        };
        match parse::parse_with(code, &env2, &origin, cmd.depth + 1, &cmd.vars) {
            Ok(cmds) => {
                for mut c in cmds {
                    if c.cwd.is_none() || cmd.cwd.is_none() {
                        c.cwd = None;
                    }
                    // `curl … | bash -c 'cat | sh'`: the nested code reads the outer stdin.
                    match (&mut c.stdin, &cmd.stdin) {
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
                        c.files = cmd.files.clone();
                    } else {
                        let files = std::sync::Arc::make_mut(&mut c.files);
                        for (p, content) in cmd.files.iter() {
                            if files.len() < 64 && !files.iter().any(|(q, _)| q == p) {
                                files.push((p.clone(), content.clone()));
                            }
                        }
                    }
                    c.downstream.extend(cmd.downstream.iter().cloned());
                    c.downstream_argv
                        .extend(cmd.downstream_argv.iter().cloned());
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

    fn argv(&self, cmd: &SimpleCmd, argv: &[Word], env: &Env, out: &mut Analysis, hops: usize) {
        if hops > 16 {
            out.errors.push((cmd.origin.clone(), ParseError::TooDeep));
            return;
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
            let g = Glob::new(&base);
            let candidates: Vec<&str> = self
                .known_programs
                .iter()
                .filter(|p| g.matches(p))
                .collect();
            // A glob naming many programs (`*`, `?*`) is as good as unknown; and a glob inside a
            // glob candidate's arguments is not expanded again (that multiplies).
            if candidates.is_empty() || candidates.len() > MAX_GLOB_CANDIDATES || hops >= GLOB_HOPS
            {
                let mut inv = self.invocation(cmd, &DYN.to_string(), true, &argv[1..], env);
                inv.raw.insert(0, first.raw.clone());
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
            return;
        }
        let args = &argv[1..];
        if let Some(w) = self.tables.wrappers.get(base.as_str()) {
            let mut inv = self.invocation(cmd, &base, false, args, env);
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
            self.registry_package(cmd, &base, w, args, env, out);
            self.wrapper(cmd, &base, w, args, env, out, hops);
            return;
        }
        if let Some((sub, at)) = self.first_positional(&base, args) {
            let key = format!("{base} {sub}");
            if let Some(w) = self.tables.wrappers.get(&key) {
                // `uv run CMD`, `mise exec -- CMD`: the runner is judged (its own words up to
                // the verb), and so is CMD.
                let inv = self.invocation(cmd, &base, false, &args[..=at], env);
                out.invocations.push(inv);
                self.registry_package(cmd, &key, w, &args[at + 1..], env, out);
                self.wrapper(cmd, &key, w, &args[at + 1..], env, out, hops);
                return;
            }
        }
        let mut inv = self.invocation(cmd, &base, false, args, env);
        self.special(cmd, &base, args, &mut inv, env, out, hops);
        self.code_options(cmd, &mut inv, args, env, out, hops);
        self.task_files(cmd, &base, &mut inv, env, out);
        if self.is_unknown(&base) {
            inv.unknown_program = true;
            if hops < GLOB_HOPS {
                self.speculate(cmd, &base, args, env, out, hops);
            }
        }
        if first.text.contains('/') {
            // `./x.sh` where x.sh was written earlier in this command.
            if let Some(from) = self.written_script(cmd, first, env, out) {
                inv.code_from = from;
            } else if self.is_unknown(&base) {
                // `./x.sh`: a script on disk (written by an earlier tool call), judged by content.
                if let Some(from) = self.script_file(cmd, first, env, out) {
                    inv.code_from = from;
                }
            }
        }
        out.invocations.push(inv);
    }

    #[allow(clippy::too_many_arguments)]
    fn wrapper(
        &self,
        cmd: &SimpleCmd,
        name: &str,
        spec: &WrapperSpec,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let mut i = 0;
        let mut skip = spec.skip;
        let origin = name.to_string();
        let mut env_assigns: Vec<(String, Word)> = Vec::new();
        let mut replace: Option<String> = None;
        let mut after_dashdash = false;
        while i < args.len() {
            let a = &args[i];
            let t = a.text.as_str();
            if t == "--" {
                i += 1;
                after_dashdash = !spec.no_command;
                break;
            }
            if spec.assigns && !a.is_dynamic() && is_assignment(t) {
                if let Some((n, v)) = t.split_once('=') {
                    if self.is_exec_env(n) {
                        self.exec_env_value(n, &Word::lit(v), cmd, env, out);
                    }
                    env_assigns.push((
                        n.to_string(),
                        Word {
                            text: v.to_string(),
                            ..a.clone()
                        },
                    ));
                }
                i += 1;
                continue;
            }
            if let Some(opt) = t.strip_prefix('-').filter(|o| !o.is_empty()) {
                let (names, inline_val): (Vec<String>, Option<String>) =
                    if let Some(long) = opt.strip_prefix('-') {
                        match long.split_once('=') {
                            Some((n, v)) => (vec![n.to_string()], Some(v.to_string())),
                            None => (vec![long.to_string()], None),
                        }
                    } else {
                        // A short bundle: letters until one takes a value.
                        let mut names = Vec::new();
                        let mut val = None;
                        for (k, c) in opt.char_indices() {
                            let n = c.to_string();
                            let takes = spec.values.contains(&n) || spec.code_flags.contains(&n);
                            names.push(n);
                            if takes {
                                let rest = &opt[k + c.len_utf8()..];
                                if !rest.is_empty() {
                                    val = Some(rest.to_string());
                                }
                                break;
                            }
                        }
                        (names, val)
                    };
                let last = names.last().cloned().unwrap_or_default();
                if names.iter().any(|n| spec.no_run_flags.contains(n)) {
                    return;
                }
                let takes_value = spec.values.contains(&last) || spec.code_flags.contains(&last);
                let value = if takes_value {
                    match inline_val {
                        Some(v) => Some(Word::lit(&v)),
                        None => {
                            i += 1;
                            args.get(i).cloned()
                        }
                    }
                } else {
                    None
                };
                if spec.appends_input && matches!(last.as_str(), "I" | "i" | "replace") {
                    replace = Some(
                        value
                            .as_ref()
                            .map_or_else(|| "{}".to_string(), |v| v.text.clone()),
                    );
                }
                if spec.code_flags.contains(&last) {
                    if let Some(v) = value {
                        self.code_word(&v, &format!("{name} -{last}"), cmd, env, out);
                    }
                }
                i += 1;
                if spec.argv_flags.contains(&last) {
                    // `nix develop -c CMD ARGS…`: the rest is the command.
                    after_dashdash = true;
                    break;
                }
                continue;
            }
            if skip > 0 {
                skip -= 1;
                i += 1;
                continue;
            }
            if spec.dashdash || spec.no_command {
                // Tool specs or files before the command (`mise exec node@20 -- CMD`).
                i += 1;
                continue;
            }
            break;
        }
        if (spec.dashdash || spec.no_command) && !after_dashdash {
            let dashed = i > 0 && args.get(i - 1).is_some_and(|a| a.text == "--");
            if spec.no_command || !dashed {
                return;
            }
        }
        let rest = &args[i.min(args.len())..];
        if rest.is_empty() {
            return;
        }
        let mut inner_cmd = cmd.clone();
        inner_cmd.assigns.extend(env_assigns);
        inner_cmd.origin = if cmd.origin.is_empty() {
            origin
        } else {
            format!("{} › {origin}", cmd.origin)
        };
        if spec.joins {
            if rest.iter().any(Word::is_dynamic) {
                let mut inv = self.invocation(&inner_cmd, &DYN.to_string(), false, rest, env);
                inv.code_from = CodeFrom::Unseen;
                out.invocations.push(inv);
            } else {
                let code = rest
                    .iter()
                    .map(|w| w.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                self.nested_code(&code, name, &inner_cmd, env, out);
            }
            return;
        }
        if let [one] = rest {
            if !one.is_dynamic() && one.text.contains(char::is_whitespace) {
                // `watchexec 'cargo test && x'`, `screen -dm 'a; b'`: one word with spaces is
                // run by a shell.
                self.nested_code(&one.text, name, &inner_cmd, env, out);
                return;
            }
        }
        if let Some(at) = rest
            .iter()
            .position(|w| w.text == ":::" || w.text == ":::+")
        {
            // GNU parallel(1): the words after `:::` are the inputs; with no command before
            // them each input is a command line, else each is appended to (or replaces `{}` in)
            // the command.
            let (command, inputs) = (&rest[..at], &rest[at + 1..]);
            for input in inputs
                .iter()
                .filter(|w| !w.text.starts_with(":::"))
                .take(MAX_EACH_ARG)
            {
                if command.is_empty() {
                    let from = self.code_word(input, &format!("{name} :::"), &inner_cmd, env, out);
                    if from == CodeFrom::Unseen {
                        let mut inv =
                            self.invocation(&inner_cmd, &DYN.to_string(), false, &[], env);
                        inv.code_from = CodeFrom::Unseen;
                        out.invocations.push(inv);
                    }
                } else {
                    let mut line: Vec<Word> = command
                        .iter()
                        .map(|w| Word {
                            text: w.text.replace("{}", &input.text),
                            ..w.clone()
                        })
                        .collect();
                    if !command.iter().any(|w| w.text.contains("{}")) {
                        line.push(input.clone());
                    }
                    self.argv(&inner_cmd, &line, env, out, hops + 1);
                }
            }
            return;
        }
        let mut inner: Vec<Word> = rest.to_vec();
        if spec.appends_input {
            // What xargs reads, when it is known (`echo / | xargs rm -rf`, `<<< /`).
            let input: Option<Vec<String>> = match &cmd.stdin {
                Stdin::Text(w) if !w.is_dynamic() => {
                    Some(w.text.split_whitespace().map(str::to_string).collect())
                }
                Stdin::Pipe(up) => up
                    .last()
                    .and_then(|u| u.output.as_ref())
                    .map(|t| t.split_whitespace().map(str::to_string).collect()),
                _ => None,
            };
            let input = input.filter(|v: &Vec<String>| !v.is_empty() && v.len() <= 16);
            inner_cmd.stdin = Stdin::Inherited;
            if let Some(repl) = replace {
                let values: Vec<String> =
                    input.unwrap_or_else(|| vec![find_root_input(&cmd.stdin).text]);
                for v in values {
                    let replaced: Vec<Word> = inner
                        .iter()
                        .map(|w| {
                            let mut w = w.clone();
                            w.text = w.text.replace(&repl, &v);
                            w
                        })
                        .collect();
                    self.argv(&inner_cmd, &replaced, env, out, hops + 1);
                }
                return;
            }
            match input {
                Some(v) => inner.extend(v.iter().map(|t| Word::lit(t))),
                None => inner.push(find_root_input(&cmd.stdin)),
            }
        }
        self.argv(&inner_cmd, &inner, env, out, hops + 1);
    }

    /// Builds the invocation for `program` with `args`, using its flag spec.
    fn invocation(
        &self,
        cmd: &SimpleCmd,
        program: &str,
        glob: bool,
        args: &[Word],
        _env: &Env,
    ) -> Invocation {
        let mut spec = self.tables.programs.get(program);
        let mut subcommand = None;
        let mut flags = Vec::new();
        let mut positionals = Vec::new();
        let mut git_config = Vec::new();
        let mut rest: &[Word] = args;
        if let Some(s) = spec.filter(|s| s.subcommands) {
            // Global options, then the subcommand, then its own options.
            let (f, _, stop) = split_flags(rest, s, true);
            for (n, v) in &f {
                if program == "git" && n == "config-env" {
                    // `--config-env=KEY=VAR`: KEY's value comes from the environment.
                    if let Some((k, var)) = v.as_ref().and_then(|v| v.text.split_once('=')) {
                        git_config.push((k.to_ascii_lowercase(), format!("{DYN}{var}")));
                    }
                }
                if program == "git" && n == "c" {
                    if let Some(v) = v {
                        if let Some((k, val)) = v.text.split_once('=') {
                            git_config.push((k.to_ascii_lowercase(), val.to_string()));
                        } else {
                            git_config.push((v.text.to_ascii_lowercase(), String::new()));
                        }
                    }
                }
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
        let spec_ref = spec.unwrap_or(&default_spec);
        let (f2, p2, _) = split_flags(rest, spec_ref, false);
        flags.extend(f2);
        positionals.extend(p2);

        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let mut path_args = Vec::new();
        for r in &cmd.redirects {
            let t = &r.target;
            if is_harmless_device(&t.text) {
                continue;
            }
            match r.kind {
                RedirKind::Read => reads.push(t.clone()),
                RedirKind::Write => writes.push(t.clone()),
            }
        }
        if let Stdin::File(w) = &cmd.stdin {
            if !reads.contains(w) {
                reads.push(w.clone());
            }
        }
        // `chmod -x FILE`: the mode was written as an option, so there is no MODE positional.
        let skip = if program == "chmod" && !positionals.first().is_some_and(is_chmod_mode) {
            0
        } else {
            spec_ref.skip_args
        };
        let file_positionals: Vec<&Word> = positionals.iter().skip(skip).collect();
        for (i, p) in file_positionals.iter().enumerate() {
            let is_path = spec_ref.path_args || looks_like_path(p);
            if !is_path {
                continue;
            }
            if spec_ref.path_args || !p.is_dynamic() {
                path_args.push((*p).clone());
            }
            let written = spec_ref.writes_args
                || (spec_ref.writes_last
                    && i + 1 == file_positionals.len()
                    && file_positionals.len() > 1);
            if written {
                writes.push((*p).clone());
            } else if !p.is_dynamic() || looks_like_path(p) {
                reads.push((*p).clone());
            }
        }
        if flags.iter().any(|(n, _)| n == "in-place") {
            // `sed -i SCRIPT FILE…` (the script is the first positional unless given with
            // `-e`), `perl -i -pe CODE FILE…`: the files are edited.
            let script_given = flags
                .iter()
                .any(|(n, _)| matches!(n.as_str(), "expression" | "e" | "E" | "file"));
            let skip = usize::from(!script_given);
            for p in positionals.iter().skip(skip) {
                if !writes.contains(p) {
                    writes.push(p.clone());
                }
            }
        }
        for (name, val) in &flags {
            let Some(v) = val else { continue };
            let v = match v.text.strip_prefix('@') {
                Some(rest) => Word {
                    text: rest.to_string(),
                    ..v.clone()
                },
                None => v.clone(),
            };
            if spec_ref.write_values.contains(name) {
                if !is_harmless_device(&v.text) && v.text != "-" {
                    writes.push(v.clone());
                    path_args.push(v);
                }
            } else if looks_like_path(&v) {
                reads.push(v);
            }
        }
        // `dd of=…` style operands.
        if spec_ref.single_dash_long {
            for p in &positionals {
                if let Some(v) = p.text.strip_prefix("of=") {
                    writes.push(Word {
                        text: v.to_string(),
                        ..p.clone()
                    });
                } else if let Some(v) = p.text.strip_prefix("if=") {
                    reads.push(Word {
                        text: v.to_string(),
                        ..p.clone()
                    });
                }
            }
        }
        let network = spec_ref.network
            || spec.is_none() && self.tables.programs.get(program).is_some_and(|s| s.network);
        for v in [&mut reads, &mut writes, &mut path_args] {
            bound_paths(v);
        }
        let mut raw: Vec<String> = args.iter().map(|w| w.raw.clone()).collect();
        raw.extend(cmd.assigns.iter().map(|(_, w)| w.raw.clone()));
        Invocation {
            program: program.to_string(),
            program_glob: glob,
            subcommand,
            flags,
            positionals,
            words: args.to_vec(),
            assigns: cmd.assigns.clone(),
            reads,
            writes,
            path_args,
            raw,
            cwd: cmd.cwd.clone(),
            origin: cmd.origin.clone(),
            code_from: CodeFrom::NotCode,
            inline: Vec::new(),
            git_config,
            network,
            unparsed: None,
            downstream: cmd.downstream.clone(),
            downstream_argv: cmd.downstream_argv.clone(),
            unknown_program: false,
            speculative: None,
            written: cmd.files.clone(),
        }
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
            "eval" => {
                let code = Word {
                    text: args
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    ..Word::lit("")
                };
                inv.code_from = if args.is_empty() {
                    CodeFrom::NotCode
                } else {
                    self.code_word(&code, "eval", cmd, env, out)
                };
                return;
            }
            "source" | "." => {
                inv.code_from = match args.first() {
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
                };
                return;
            }
            "alias" => {
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
                return;
            }
            "find" => {
                self.find_exec(cmd, inv, args, env, out, hops);
                return;
            }
            "git" => {
                self.git(cmd, inv, env, out);
                return;
            }
            _ => {}
        }
        if let Some((iname, spec)) = self.interpreter(prog) {
            self.interpreter_code(cmd, &iname, spec, inv, env, out, hops);
        }
    }

    fn interpreter(&self, prog: &str) -> Option<(String, &InterpreterSpec)> {
        self.interp_globs
            .iter()
            .find(|(g, _)| g.matches(prog))
            .and_then(|(_, name)| {
                self.tables
                    .interpreters
                    .get(name)
                    .map(|s| (name.clone(), s))
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn interpreter_code(
        &self,
        cmd: &SimpleCmd,
        iname: &str,
        spec: &InterpreterSpec,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        // Find code: a code flag's value, the first positional (awk), a script, or stdin.
        let prog = inv.program.clone();
        let mut code: Option<Word> = None;
        let mut from_file = false;
        let mut no_code = false;
        if iname == "python" {
            if let Some((_, Some(module))) = inv.flags.iter().find(|(n, _)| n == "m") {
                // `python -m pip install x` runs `pip install x`.
                let mut argv = vec![module.clone()];
                // Every word after the module is its argument, options included (`-m pip
                // install -r FILE`): python's own option table does not apply to them.
                let after = inv
                    .words
                    .iter()
                    .position(|w| w.text == module.text || w.text == format!("-m{}", module.text))
                    .map_or(inv.words.len(), |i| i + 1);
                argv.extend(inv.words[after.min(inv.words.len())..].iter().cloned());
                self.argv(cmd, &argv, env, out, hops + 1);
                return;
            }
        }
        if spec.shell && inv.has_flag("s") && !inv.has_flag("c") {
            inv.code_from = self.stdin_code(cmd, &prog, env, out);
            return;
        }
        for (name, val) in &inv.flags {
            if spec.code_flags.contains(name) {
                code = val.clone();
                if code.is_none() {
                    // Bundled `-lc` style: the code is the first positional.
                    code = inv.positionals.first().cloned();
                }
            }
            if spec.file_flags.contains(name) {
                from_file = true;
            }
            if spec.no_code_flags.contains(name) {
                no_code = true;
            }
        }
        if code.is_none() && !from_file && !no_code {
            if spec.code_positional {
                code = inv.positionals.first().cloned();
            } else if let Some(first) = inv.positionals.first() {
                if let Some(src) = &first.procsub {
                    inv.code_from = self.upstream_code(src, cmd, &format!("{prog} <(…)"), env, out);
                    return;
                }
                if first.text == "-" || first.text == "/dev/stdin" {
                    inv.code_from = if spec.shell {
                        self.stdin_code(cmd, &prog, env, out)
                    } else {
                        self.interpreter_stdin(cmd, &prog, inv, env, out)
                    };
                    return;
                }
                // A script file: visible only when written earlier in the same command.
                let script = first.clone();
                match self.written_script(cmd, &script, env, out) {
                    Some(CodeFrom::NotCode) => {
                        let path = lexical(&format!(
                            "{}/{}",
                            cmd.cwd.as_deref().unwrap_or("/"),
                            script.text
                        ));
                        let text = cmd.files.iter().find_map(|(p, c)| match c {
                            FileContent::Text(t) if *p == path || *p == script.text => {
                                Some(t.clone())
                            }
                            _ => None,
                        });
                        if let Some(text) = text {
                            inv.code_from = CodeFrom::Seen;
                            self.scan_code(
                                &text,
                                &format!("{prog} {}", script.text),
                                cmd,
                                inv,
                                env,
                                out,
                            );
                        }
                    }
                    Some(from) => inv.code_from = from,
                    None => {
                        if spec.shell {
                            // `bash x.sh` of a script on disk: judged by its content.
                            if let Some(from) = self.script_file(cmd, &script, env, out) {
                                inv.code_from = from;
                                return;
                            }
                        }
                        // `bash ./run.sh sudo id`: a script airlock cannot read, given what
                        // looks like a command.
                        let args = inv.positionals.get(1..).unwrap_or(&[]).to_vec();
                        if !args.is_empty() && hops < GLOB_HOPS {
                            self.speculate(cmd, &basename(&script.text), &args, env, out, hops);
                        }
                    }
                }
                return;
            } else {
                inv.code_from = if spec.shell {
                    self.stdin_code(cmd, &prog, env, out)
                } else {
                    self.interpreter_stdin(cmd, &prog, inv, env, out)
                };
                return;
            }
        }
        let Some(code) = code else { return };
        let origin = format!("{prog} -c");
        if spec.shell {
            inv.code_from = self.code_word(&code, &origin, cmd, env, out);
            if inv.code_from == CodeFrom::Unseen && !code.is_dynamic() {
                inv.unparsed = Some(code.text.clone());
            }
        } else if code.is_dynamic() {
            inv.code_from = CodeFrom::Unseen;
        } else {
            inv.code_from = CodeFrom::Seen;
            self.scan_code(&code.text, &origin, cmd, inv, env, out);
        }
    }

    /// Code in another language on stdin (`python3 <<'EOF'`, `cat <<EOF | node`): scanned like
    /// inline code when its text is known; fetched or decoded code keeps its origin.
    fn interpreter_stdin(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let text = match &cmd.stdin {
            Stdin::Inherited => return CodeFrom::NotCode,
            Stdin::Text(w) if !w.is_dynamic() => w.text.clone(),
            Stdin::Text(_) | Stdin::File(_) => return CodeFrom::Unseen,
            Stdin::Pipe(up) => match self.upstream_kind(up) {
                Some(kind) => return kind,
                None => match up.last() {
                    Some(u) if !u.opaque => match &u.output {
                        Some(t) => t.clone(),
                        None => return CodeFrom::Unseen,
                    },
                    _ => return CodeFrom::Unseen,
                },
            },
        };
        self.scan_code(&text, &format!("{prog} <<…"), cmd, inv, env, out);
        CodeFrom::Seen
    }

    /// Network or decoded code upstream of a pipe (a fetcher or decoder anywhere in it).
    fn upstream_kind(&self, up: &[Upstream]) -> Option<CodeFrom> {
        let words: Vec<String> = up
            .iter()
            .flat_map(|u| u.argv.iter())
            .filter(|w| !w.is_dynamic())
            .map(|w| basename(&w.text))
            .collect();
        if words.iter().any(|w| self.fetchers.contains(w)) {
            return Some(CodeFrom::Network);
        }
        let base_decode = up.iter().any(|u| {
            u.argv
                .iter()
                .any(|w| matches!(w.text.as_str(), "-d" | "--decode" | "-r" | "-D"))
                && u.argv
                    .first()
                    .is_some_and(|p| basename(&p.text).contains("base"))
        });
        if words.iter().any(|w| self.decoders.contains(w)) || base_decode {
            return Some(CodeFrom::Decoded);
        }
        None
    }

    /// Scans code in another language: what it calls, and any shell commands in its strings.
    fn scan_code(
        &self,
        code: &str,
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) {
        let scan = &self.tables.code_scan;
        let has = |list: &[String]| list.iter().any(|s| code.contains(s.as_str()));
        let exec = has(&scan.exec);
        if exec {
            inv.inline.push(InlineKind::Exec);
        }
        if has(&scan.network) {
            inv.inline.push(InlineKind::Network);
            inv.network = true;
        }
        let delete = has(&scan.delete);
        if delete {
            inv.inline.push(InlineKind::Delete);
        }
        let walk = has(&scan.walk);
        if walk {
            inv.inline.push(InlineKind::Walk);
        }
        let mut literals = string_literals(code);
        // Strings the code computes from its literals (joins, concatenation, decodings) are
        // judged like its literals; names looked up at run time may be calls that run.
        let derived = crate::inline::derive(code);
        literals.extend(derived.strings.iter().cloned());
        let mut exec = exec;
        // `getattr(os, 'system')`, and `'sys' + 'tem'` built for a call by variable.
        if !exec
            && derived
                .call_names
                .iter()
                .chain(&derived.strings)
                .any(|n| is_exec_name(n))
        {
            exec = true;
            inv.inline.push(InlineKind::Exec);
        }
        // Commands written without quotes after a keyword (Tcl/expect `spawn sudo id`, Perl
        // `qw(sudo id)`, AppleScript `do shell script`): taken as command strings too.
        for kw in &scan.command_words {
            let mut rest = code;
            while let Some(i) = rest.find(kw.as_str()) {
                let after = &rest[i + kw.len()..];
                let end = after
                    .find([';', '\n', ']', '}', ')'])
                    .unwrap_or(after.len());
                let segment = after[..end].trim().trim_matches(['"', '\'']);
                if !segment.is_empty() {
                    literals.push(segment.to_string());
                    if !exec {
                        exec = true;
                        inv.inline.push(InlineKind::Exec);
                    }
                }
                rest = &after[end.min(after.len())..];
            }
        }
        let mut printing = code.to_string();
        for s in &scan.not_write {
            printing = printing.replace(s.as_str(), "");
        }
        let home_based = has(&scan.home);
        let write = delete
            || scan.write.iter().any(|s| printing.contains(s.as_str()))
            || literals.iter().any(|l| {
                let l = l.trim();
                scan.write_modes.iter().any(|m| m == l) || l.starts_with('>') || l.starts_with("+<")
            });
        let acts = exec || write || delete || inv.inline.contains(&InlineKind::Network);
        // A call named at run time matters where the code could reach something that acts
        // (`getattr(os, n)`); `getattr(args, name)` in a script that only computes does not.
        let risky = acts
            || crate::inline::RISKY_MODULES
                .iter()
                .any(|m| code.contains(m));
        if derived.built_import
            || derived.built_name && risky
            || derived.decoded_literal && acts
            || derived.decoded && exec
        {
            inv.inline.push(InlineKind::Opaque);
        }
        // `rmtree($ENV{HOME})`, `os.walk(Path.home())`: code that names the home directory
        // only through a call deletes or lists the home directory itself.
        if home_based && (delete || walk) && !literals.iter().any(|l| names_path(l)) {
            let home = Word::lit(&env.home);
            if delete {
                inv.writes.push(home.clone());
                inv.path_args.push(home.clone());
            }
            inv.reads.push(home);
        }
        for lit in &literals {
            // Perl's `open(F, ">file")`: the mode is part of the string.
            let lit = lit.trim_start_matches(['+', '<', '>', '|', ' ']);
            let w = Word::lit(lit);
            let named = looks_like_path(&w) || lit.starts_with('~');
            // `glob.glob('~/.ss?/id_*')`: judged by every path the pattern can name.
            let glob = lit.contains(['*', '?', '[']);
            if named || write && looks_like_file_name(lit) {
                // `Path.home() / '.bashrc'`, `os.homedir() + '/.ssh/x'`: relative to the home.
                // (`homedir() + '/.zshrc'` too: a literal starting with `/.` is a dotfile name.)
                if home_based && (!lit.starts_with(['/', '~']) || lit.starts_with("/.")) {
                    let under = Word::lit(&format!(
                        "{}/{}",
                        env.home,
                        lit.trim_start_matches("./").trim_start_matches('/')
                    ));
                    if write {
                        inv.writes.push(under.clone());
                        inv.path_args.push(under);
                    } else {
                        inv.reads.push(under);
                    }
                }
                let mut w = Word::lit(&expand_tilde(lit, &env.home));
                w.glob = glob;
                if write {
                    inv.writes.push(w.clone());
                    inv.path_args.push(w);
                } else {
                    inv.reads.push(w);
                }
            }
        }
        if exec {
            // Strings handed to system()/exec are shell commands: analyse those that parse.
            let mut seen_program = false;
            for lit in literals {
                if lit.trim().is_empty() {
                    continue;
                }
                let mut probe = Analysis {
                    work: out.work,
                    ..Analysis::default()
                };
                let ok = self.nested_code(&lit, origin, cmd, env, &mut probe);
                out.work = probe.work;
                if ok {
                    seen_program |= probe
                        .invocations
                        .iter()
                        .any(|i| self.is_known(&i.program) && !self.inert.contains(&i.program));
                    out.invocations.extend(probe.invocations);
                }
            }
            // The programs it runs are plain literals (`subprocess.run(['git', 'status'])`),
            // judged above: the call itself needs no review.
            if seen_program && !has(&scan.opaque) {
                inv.inline.retain(|k| *k != InlineKind::Exec);
            }
        }
    }

    /// The content of `script` if this command wrote it earlier: analysed like inline code.
    fn written_script(
        &self,
        cmd: &SimpleCmd,
        script: &Word,
        env: &Env,
        out: &mut Analysis,
    ) -> Option<CodeFrom> {
        if cmd.files.is_empty() {
            return None;
        }
        let t = script.as_static()?;
        let path = if t.starts_with('/') {
            lexical(t)
        } else {
            lexical(&format!("{}/{t}", cmd.cwd.as_deref()?))
        };
        let (_, content) = cmd.files.iter().find(|(p, _)| *p == path)?;
        Some(match content {
            FileContent::Network => CodeFrom::Network,
            FileContent::Unknown => CodeFrom::Unseen,
            FileContent::Text(text) => {
                let base = basename(t);
                let is_shell =
                    base.ends_with(".sh") || base.ends_with(".bash") || !base.contains('.');
                if is_shell && self.nested_code(text, &format!("script {base}"), cmd, env, out) {
                    CodeFrom::Seen
                } else if is_shell {
                    CodeFrom::Unseen
                } else {
                    // Another language: the caller scans it like inline code.
                    CodeFrom::NotCode
                }
            }
        })
    }

    /// A shell or interpreter reading its code from stdin.
    fn stdin_code(&self, cmd: &SimpleCmd, prog: &str, env: &Env, out: &mut Analysis) -> CodeFrom {
        match &cmd.stdin {
            Stdin::Inherited => CodeFrom::NotCode,
            Stdin::Text(w) => self.code_word(w, &format!("{prog} <<…"), cmd, env, out),
            Stdin::File(_) => CodeFrom::Unseen,
            Stdin::Pipe(up) => self.upstream_code(up, cmd, &format!("… | {prog}"), env, out),
        }
    }

    fn upstream_code(
        &self,
        up: &[Upstream],
        cmd: &SimpleCmd,
        origin: &str,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let progs: Vec<String> = up
            .iter()
            .flat_map(|u| u.argv.first())
            .map(|w| {
                if w.is_dynamic() {
                    DYN.to_string()
                } else {
                    basename(&w.text)
                }
            })
            .collect();
        // Look through wrappers and `tee`: any fetcher or decoder upstream counts.
        let words: Vec<String> = up
            .iter()
            .flat_map(|u| u.argv.iter())
            .filter(|w| !w.is_dynamic())
            .map(|w| basename(&w.text))
            .collect();
        if words.iter().any(|w| self.fetchers.contains(w)) {
            return CodeFrom::Network;
        }
        if words.iter().any(|w| self.decoders.contains(w))
            || up.iter().any(|u| {
                u.argv
                    .iter()
                    .any(|w| matches!(w.text.as_str(), "-d" | "--decode" | "-r" | "-D"))
                    && u.argv
                        .first()
                        .is_some_and(|p| basename(&p.text).contains("base"))
            })
        {
            return CodeFrom::Decoded;
        }
        match up.last() {
            Some(u) if !u.opaque && progs.len() == up.len() => match &u.output {
                Some(text) => {
                    if self.nested_code(text, origin, cmd, env, out) {
                        CodeFrom::Seen
                    } else {
                        CodeFrom::Unseen
                    }
                }
                None => CodeFrom::Unseen,
            },
            _ => CodeFrom::Unseen,
        }
    }

    fn find_exec(
        &self,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        // Roots: positionals before the first expression word.
        let mut roots = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let t = &args[i].text;
            if t.starts_with('-') || t == "(" || t == "!" {
                break;
            }
            roots.push(args[i].clone());
            i += 1;
        }
        if roots.is_empty() {
            roots.push(Word::lit("."));
        }
        inv.path_args = roots.clone();
        let placeholder = match roots.as_slice() {
            [one] if !one.is_dynamic() => {
                let mut w = one.clone();
                w.text = format!("{}/{}", one.text.trim_end_matches('/'), DYN);
                w
            }
            _ => Word::dynamic("{}"),
        };
        if args.iter().any(|a| a.text == "-delete") {
            inv.writes.extend(roots.iter().cloned());
            inv.flags.push(("delete".into(), None));
        }
        while i < args.len() {
            let t = args[i].text.as_str();
            if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
                let mut inner = Vec::new();
                i += 1;
                while i < args.len() && args[i].text != ";" && args[i].text != "+" {
                    let w = &args[i];
                    if w.text.contains("{}") {
                        let mut p = placeholder.clone();
                        p.text = w.text.replace("{}", &placeholder.text);
                        inner.push(p);
                    } else {
                        inner.push(w.clone());
                    }
                    i += 1;
                }
                let mut c = cmd.clone();
                c.origin = if cmd.origin.is_empty() {
                    format!("find {t}")
                } else {
                    format!("{} › find {t}", cmd.origin)
                };
                c.redirects.clear();
                c.stdin = Stdin::Inherited;
                self.argv(&c, &inner, env, out, hops + 1);
            } else if matches!(t, "-fprint" | "-fprintf" | "-fls" | "-fprint0") {
                if let Some(w) = args.get(i + 1) {
                    inv.writes.push(w.clone());
                }
            }
            i += 1;
        }
    }

    /// The first positional argument (a subcommand or runner verb) and its index, skipping the
    /// program's global options (with their values) and toolchain selectors.
    fn first_positional(&self, prog: &str, args: &[Word]) -> Option<(String, usize)> {
        let default_spec = FlagSpec::default();
        let spec = self.tables.programs.get(prog).unwrap_or(&default_spec);
        let (_, _, stop) = split_flags(args, spec, true);
        let w = args.get(stop)?;
        w.as_static().map(|s| (s.to_string(), stop))
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

    /// A program airlock does not know may run what its arguments name: the head of a
    /// dangerous command (the `speculate` list) followed by arguments (`prlimit … sudo id`), a
    /// quoted command line starting with one (`frob 'rm -rf ~'`)
    /// or the value of an option named like code (`--exec CMD`, `--on-success=CMD`). Those are
    /// judged as commands, marked speculative (a deny becomes ask: it may not run them).
    fn speculate(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        const BUDGET: usize = 8;
        let mut budget = BUDGET;
        let mut probe = Analysis {
            work: out.work,
            ..Analysis::default()
        };
        let label = format!("{prog} argument");
        let mut c = cmd.clone();
        c.origin = if cmd.origin.is_empty() {
            label.clone()
        } else {
            format!("{} › {label}", cmd.origin)
        };
        c.redirects.clear();
        c.stdin = Stdin::Inherited;
        let mut i = 0;
        while i < args.len() {
            if budget == 0 {
                // More candidates than are worth judging: say so rather than guess.
                probe
                    .errors
                    .push((c.origin.clone(), ParseError::TooMuchNesting));
                break;
            }
            let a = &args[i];
            let Some(t) = a.as_static() else {
                i += 1;
                continue;
            };
            if let Some(opt) = t.strip_prefix('-').filter(|o| !o.is_empty() && *o != "-") {
                let opt = opt.trim_start_matches('-');
                let (name, attached) = match opt.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (opt, None),
                };
                if self.code_option_names.iter().any(|g| g.matches(name)) {
                    let value = match attached {
                        Some(v) => Some(Word {
                            text: v.to_string(),
                            ..a.clone()
                        }),
                        None => args.get(i + 1).cloned(),
                    };
                    if let Some(v) = value.filter(|v| !v.is_dynamic() && !v.text.is_empty()) {
                        budget -= 1;
                        self.nested_code(&v.text, &format!("{prog} -{opt}"), &c, env, &mut probe);
                        if attached.is_none() {
                            i += 1;
                        }
                    }
                }
                i += 1;
                continue;
            }
            let first_word = t.split_whitespace().next().unwrap_or("");
            if t.contains(char::is_whitespace) && self.speculate.contains(&basename(first_word)) {
                budget -= 1;
                self.nested_code(t, &label, &c, env, &mut probe);
            } else if i + 1 < args.len() && self.speculate.contains(&basename(t)) {
                budget -= 1;
                // A guessed command is judged on its next words only (bounded work).
                let end = args.len().min(i + SPECULATION_WORDS);
                self.argv(
                    &c,
                    &args[i..end],
                    env,
                    &mut probe,
                    hops.max(GLOB_HOPS - 2) + 1,
                );
            }
            i += 1;
        }
        // Parse failures of guessed code are not the command's: only what was found counts.
        out.work = probe.work;
        if let Some(e) = probe
            .errors
            .into_iter()
            .find(|(_, e)| *e == ParseError::TooMuchNesting)
        {
            out.errors.push(e);
        }
        for mut inv in probe.invocations {
            inv.speculative.get_or_insert_with(|| prog.to_string());
            out.invocations.push(inv);
        }
    }

    /// Options and arguments whose value is code (the `[[code_option]]` table): the value is
    /// parsed and judged like `sh -c`; a value only known at run time is code airlock cannot see.
    fn code_options(
        &self,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        for co in &self.tables.code_option {
            if !co.program.contains(&inv.program) {
                continue;
            }
            if !co.subcommand.is_empty()
                && !inv
                    .subcommand
                    .as_ref()
                    .is_some_and(|s| co.subcommand.contains(s))
            {
                continue;
            }
            let label = match &inv.subcommand {
                Some(s) => format!("{} {s}", inv.program),
                None => inv.program.clone(),
            };
            let mut values = code_option_values(co, args);
            if co.stdin {
                match self.stdin_lines(cmd, env) {
                    Some(lines) => values.extend(lines),
                    None => inv.code_from = CodeFrom::Unseen,
                }
            }
            for (what, value) in values {
                let origin = format!("{label} {what}");
                if co.runs == CodeRuns::Shell && !co.options.is_empty() {
                    self.shell_in_option(&value, &origin, cmd, env, out);
                }
                let from = match co.runs {
                    CodeRuns::Shell => self.code_value(&value, &origin, cmd, env, out),
                    CodeRuns::MakefileText => self.makefile_text(&value, &origin, cmd, env, out),
                    CodeRuns::Sqlite => self.sqlite_value(&value, &origin, cmd, env, out),
                    CodeRuns::ScriptFile => self.script_file_value(&value, &origin, cmd, env, out),
                    CodeRuns::Editor => self.editor_code(&value, &origin, cmd, env, out),
                    CodeRuns::Makefile => self.makefile_code(&value, &origin, cmd, env, out),
                    CodeRuns::Inline => self.inline_value(&value, &origin, cmd, inv, env, out),
                    CodeRuns::DbMeta => self.db_meta_code(&value, &origin, cmd, env, out),
                    // Argv rows have no single value: see `code_option_rests`.
                    CodeRuns::Argv => CodeFrom::NotCode,
                };
                if from == CodeFrom::Unseen {
                    inv.code_from = CodeFrom::Unseen;
                }
            }
            if co.runs == CodeRuns::Argv || !co.after.is_empty() {
                for (what, rest) in code_option_rests(co, args) {
                    let origin = format!("{label} {what}");
                    if co.runs == CodeRuns::Inline {
                        let code = Word {
                            text: rest
                                .iter()
                                .map(|w| w.text.as_str())
                                .collect::<Vec<_>>()
                                .join(" "),
                            ..Word::lit("")
                        };
                        if self.inline_value(&code, &origin, cmd, inv, env, out) == CodeFrom::Unseen
                        {
                            inv.code_from = CodeFrom::Unseen;
                        }
                    } else {
                        self.argv_code(&rest, &origin, cmd, inv, env, out, hops);
                    }
                }
            }
        }
    }

    /// The lines of a command's standard input as values of a `stdin` code row (at most
    /// [`MAX_STDIN_LINES`]); `Some(empty)` when nothing is fed in, `None` when what is fed in
    /// cannot be seen (a variable, another command's output, an unreadable file).
    fn stdin_lines(&self, cmd: &SimpleCmd, env: &Env) -> Option<Vec<(String, Word)>> {
        let text = match &cmd.stdin {
            Stdin::Inherited => return Some(Vec::new()),
            Stdin::File(w) => {
                let path = runfiles::absolute(w.as_static()?, cmd.cwd.as_deref(), &env.home)?;
                match read_text(&path) {
                    FileText::Text(t) => t,
                    FileText::Missing => return Some(Vec::new()),
                    _ => return None,
                }
            }
            other => runfiles::stdin_text(other)?,
        };
        Some(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .take(MAX_STDIN_LINES)
                .map(|l| ("<stdin>".to_string(), Word::lit(l)))
                .collect(),
        )
    }

    /// An option whose value is a command, given a shell or interpreter with its own code
    /// (`git clone -u 'sh -c …'`, `tar -I 'bash -c …'`): these options name a tool in ordinary
    /// use, so the code is asked about as well as judged (the pseudo-program
    /// `(shell-in-option)`, rule `shell-in-option`).
    fn shell_in_option(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) {
        let mut words = value.text.split_whitespace();
        let Some(first) = words.next() else {
            return;
        };
        let prog = basename(first.trim_matches(['\'', '"']));
        if !(SHELLS.contains(&prog.as_str()) || self.interpreter(&prog).is_some()) {
            return;
        }
        let mut pseudo = self.invocation(cmd, "(shell-in-option)", false, &[], env);
        pseudo.subcommand = Some(origin.to_string());
        pseudo.positionals = vec![value.clone()];
        pseudo.words = vec![value.clone()];
        out.invocations.push(pseudo);
    }

    /// Words that form a command line (`git bisect run CMD ARGS…`): one word with spaces is
    /// shell code.
    #[allow(clippy::too_many_arguments)]
    fn argv_code(
        &self,
        rest: &[Word],
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        match rest {
            [] => {}
            [one] if one.is_dynamic() || one.text.contains(char::is_whitespace) => {
                if self.code_word(one, origin, cmd, env, out) == CodeFrom::Unseen {
                    inv.code_from = CodeFrom::Unseen;
                }
            }
            many => {
                let mut c = cmd.clone();
                c.origin = if cmd.origin.is_empty() {
                    origin.to_string()
                } else {
                    format!("{} › {origin}", cmd.origin)
                };
                c.redirects.clear();
                c.stdin = Stdin::Inherited;
                self.argv(&c, many, env, out, hops + 1);
            }
        }
    }

    /// Code in another language given as an option's value (`deno eval CODE`): scanned like
    /// `python -c`.
    fn inline_value(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        self.scan_code(&value.text, origin, cmd, inv, env, out);
        CodeFrom::Seen
    }

    /// psql/mysql input: the shell commands of its meta-commands, line by line (see
    /// [`CodeRuns::DbMeta`]).
    fn db_meta_code(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        let mut from = CodeFrom::NotCode;
        for line in value.text.lines().take(MAX_STDIN_LINES) {
            let l = line.trim();
            let code = l
                .strip_prefix("\\!")
                .or_else(|| l.strip_prefix("system "))
                .or_else(|| l.strip_prefix("\\system "))
                .or_else(|| {
                    ["\\o", "\\g", "\\w", "\\out", "tee"]
                        .iter()
                        .find_map(|m| l.strip_prefix(m))
                        .and_then(|r| r.trim_start().strip_prefix('|'))
                });
            if let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) {
                if self.code_word(&Word::lit(code), origin, cmd, env, out) == CodeFrom::Unseen {
                    from = CodeFrom::Unseen;
                } else if from == CodeFrom::NotCode {
                    from = CodeFrom::Seen;
                }
            }
        }
        from
    }

    /// An editor or pager command: what follows `!` (or gdb's `shell `) runs in a shell.
    fn editor_code(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        let v = value.text.trim().trim_start_matches([':', ' ', '.']);
        let lower = v.to_ascii_lowercase();
        let shell = if let Some(rest) = lower
            .strip_prefix("shell ")
            .or_else(|| lower.strip_prefix("system "))
        {
            Some(v[v.len() - rest.len()..].to_string())
        } else {
            v.split_once('!').map(|(_, rest)| rest.to_string())
        };
        let mut from = CodeFrom::NotCode;
        if let Some(code) = shell.filter(|c| !c.trim().is_empty()) {
            from = self.code_word(&Word::lit(&code), origin, cmd, env, out);
        }
        let opaque = [
            "system(",
            "systemlist(",
            "terminal",
            "jobstart",
            "execute",
            "py ",
            "py3",
            "python",
            "lua ",
            "perl ",
            "ruby ",
            "source",
            "so ",
        ];
        if opaque.iter().any(|o| lower.contains(o)) {
            from = CodeFrom::Unseen;
        }
        from
    }

    /// `make -f -`: the makefile is on stdin; its recipe lines and `$(shell …)` are shell code.
    fn makefile_code(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        if !matches!(value.text.as_str(), "-" | "/dev/stdin" | "/dev/fd/0") {
            return CodeFrom::NotCode;
        }
        let text = match &cmd.stdin {
            Stdin::Text(w) if !w.is_dynamic() => Some(w.text.clone()),
            Stdin::Pipe(up) => up.last().and_then(|u| u.output.clone()),
            _ => None,
        };
        let Some(text) = text else {
            return CodeFrom::Unseen;
        };
        let mut code = Vec::new();
        for line in text.lines() {
            if let Some(recipe) = line.strip_prefix('\t') {
                code.push(recipe.trim_start_matches(['@', '-', '+']).to_string());
            } else if let Some((_, recipe)) = line
                .split_once(':')
                .and_then(|(_, rest)| rest.split_once(';'))
            {
                // `target: prerequisites ; recipe`
                code.push(recipe.trim_start_matches([' ', '@', '-', '+']).to_string());
            }
            let mut rest = line;
            while let Some(i) = rest.find("$(shell ") {
                let after = &rest[i + 8..];
                let end = after.find(')').unwrap_or(after.len());
                code.push(after[..end].to_string());
                rest = &after[end..];
            }
        }
        let script = code.join("\n").replace("$$", "$");
        if script.trim().is_empty() {
            return CodeFrom::Seen;
        }
        self.code_word(&Word::lit(&script), origin, cmd, env, out)
    }

    fn git(&self, cmd: &SimpleCmd, inv: &mut Invocation, env: &Env, out: &mut Analysis) {
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

/// The values of a [`CodeOption`] row's options in `args`, each with the option as written.
fn code_option_values(co: &CodeOption, args: &[Word]) -> Vec<(String, Word)> {
    let mut found = Vec::new();
    let sub = |a: &Word, text: &str| Word {
        text: text.to_string(),
        ..a.clone()
    };
    if co.runs != CodeRuns::Argv {
        for (i, a) in args.iter().enumerate() {
            let t = a.text.as_str();
            for o in &co.options {
                if o == "+" {
                    if let Some(v) = t.strip_prefix('+').filter(|v| !v.is_empty()) {
                        found.push((
                            format!("+{}", v.chars().take(1).collect::<String>()),
                            sub(a, v),
                        ));
                    }
                    continue;
                }
                if t == o {
                    if !co.attached {
                        if let Some(n) = args.get(i + 1) {
                            found.push((o.clone(), n.clone()));
                        }
                    }
                } else if let Some(at) = bundled_short(t, o) {
                    // `rsync -ae CMD`, `ssh -vo ProxyCommand=…`: a short option at the end of
                    // (or inside) a bundle of flags.
                    match t.get(at + 1..).filter(|r| !r.is_empty()) {
                        Some(rest) => found.push((o.clone(), sub(a, rest))),
                        None if !co.attached => {
                            if let Some(n) = args.get(i + 1) {
                                found.push((o.clone(), n.clone()));
                            }
                        }
                        None => {}
                    }
                } else if let Some(rest) = t.strip_prefix(o.as_str()) {
                    let v = if o.starts_with("--") {
                        rest.strip_prefix('=')
                    } else if o.len() > 2 {
                        // A long option after one dash (`go test -exec=CMD`).
                        Some(rest.strip_prefix('=').unwrap_or(rest))
                    } else {
                        Some(rest)
                    };
                    if let Some(v) = v {
                        found.push((o.clone(), sub(a, v)));
                    }
                }
            }
            if let Some(p) = &co.prefix {
                // `ext::CMD`, also as an option's value (`--remote=ext::CMD`).
                let valued = t
                    .strip_prefix('-')
                    .and_then(|o| o.split_once('='))
                    .map(|(_, v)| v);
                if let Some(v) = t
                    .strip_prefix(p.as_str())
                    .or_else(|| valued.and_then(|v| v.strip_prefix(p.as_str())))
                {
                    // git's ext:: URLs escape spaces as `% `.
                    found.push((p.clone(), sub(a, &v.replace("% ", " "))));
                }
            }
        }
        if co.first_arg {
            let mut it = args.iter().skip_while(|a| a.text == "--");
            if let Some(a) = it
                .next()
                .filter(|a| !a.text.starts_with('-') || a.is_dynamic())
            {
                found.push(("command".to_string(), a.clone()));
            }
        }
        if co.each_arg && co.after.is_empty() {
            for a in args
                .iter()
                .filter(|a| !a.text.starts_with('-'))
                .take(MAX_EACH_ARG)
            {
                found.push(("command".to_string(), a.clone()));
            }
        }
    }
    // `ssh -o ProxyCommand=CMD`: only the value after the key is code.
    if let Some(key) = &co.key {
        found = found
            .into_iter()
            .filter_map(|(what, w)| {
                let t = w.text.trim_start();
                let head = t.get(..key.len())?;
                let rest = &t[key.len()..];
                let sep = rest.chars().next()?;
                if head.eq_ignore_ascii_case(key) && (sep == '=' || sep.is_whitespace()) {
                    let value = rest[sep.len_utf8()..].trim_start();
                    Some((format!("{what} {key}"), sub(&w, value)))
                } else {
                    None
                }
            })
            .collect();
    }
    found
}

/// Where the letter of the short option `opt` (`-e`) sits in a bundle of short flags (`-ave`),
/// if it is not the first letter (that case is a plain prefix match).
fn bundled_short(word: &str, opt: &str) -> Option<usize> {
    let letter = opt.strip_prefix('-').filter(|l| l.chars().count() == 1)?;
    let body = word.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
    let pos = body.find(letter)?;
    if pos == 0 || !body[..pos].chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(pos + 1)
}

/// The command lines after a [`CodeOption`] row's `after` words (leading options skipped):
/// `git bisect run CMD…`; with `each_arg`, every remaining non-option word alone.
fn code_option_rests(co: &CodeOption, args: &[Word]) -> Vec<(String, Vec<Word>)> {
    let mut out = Vec::new();
    let Some(at) = args.iter().position(|a| {
        a.as_static()
            .is_some_and(|t| co.after.iter().any(|x| x == t))
    }) else {
        return out;
    };
    let what = args[at].text.clone();
    let mut rest = &args[at + 1..];
    while rest.first().is_some_and(|a| a.text.starts_with('-')) {
        let dashdash = rest[0].text == "--";
        rest = &rest[1..];
        if dashdash {
            break;
        }
    }
    if co.each_arg {
        for a in rest
            .iter()
            .filter(|a| !a.text.starts_with('-'))
            .take(MAX_EACH_ARG)
        {
            out.push((what.clone(), vec![a.clone()]));
        }
    } else if !rest.is_empty() {
        out.push((what, rest.to_vec()));
    }
    out
}

/// Canonical option names with their values.
type Flags = Vec<(String, Option<Word>)>;

/// Splits options from positionals. With `stop_at_positional`, stops at the first positional
/// and returns its index (for subcommand programs).
fn split_flags(
    args: &[Word],
    spec: &FlagSpec,
    stop_at_positional: bool,
) -> (Flags, Vec<Word>, usize) {
    let mut flags = Vec::new();
    let mut pos = Vec::new();
    let mut i = 0;
    let mut only_pos = false;
    let canon_long = |n: &str| spec.long.get(n).cloned().unwrap_or_else(|| n.to_string());
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
        if let Some(long) = t.strip_prefix("--").or_else(|| {
            if spec.single_dash_long {
                t.strip_prefix('-')
            } else {
                None
            }
        }) {
            let (name, val) = match long.split_once('=') {
                Some((n, v)) => (
                    canon_long(n),
                    Some(Word {
                        text: v.to_string(),
                        ..a.clone()
                    }),
                ),
                None => (canon_long(long), None),
            };
            let val = if val.is_none() && spec.values.contains(&name) {
                i += 1;
                args.get(i).cloned()
            } else {
                val
            };
            flags.push((name, val));
            i += 1;
            continue;
        }
        // Short bundle.
        let body = &t[1..];
        let mut consumed_next = false;
        for (k, c) in body.char_indices() {
            let letter = c.to_string();
            let name = spec.short.get(&letter).cloned().unwrap_or(letter);
            if spec.values.contains(&name) {
                let rest = &body[k + c.len_utf8()..];
                let val = if rest.is_empty() {
                    consumed_next = true;
                    args.get(i + 1).cloned()
                } else {
                    Some(Word {
                        text: rest.to_string(),
                        ..a.clone()
                    })
                };
                flags.push((name, val));
                break;
            }
            flags.push((name, None));
        }
        i += if consumed_next { 2 } else { 1 };
    }
    let n = args.len();
    (flags, pos, n)
}

/// Whether `w` is a chmod(1) mode: octal digits, or `[ugoa]*[-+=][rwxXst]*` clauses.
fn is_chmod_mode(w: &Word) -> bool {
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

/// What `xargs` appends when its input is unknown: a name under the root of a `find ROOT …`
/// feeding it (`find src -print0 | xargs -0 sed -i …`), else anything.
fn find_root_input(stdin: &Stdin) -> Word {
    let Stdin::Pipe(up) = stdin else {
        return Word::dynamic("(input)");
    };
    let Some(u) = up.last() else {
        return Word::dynamic("(input)");
    };
    let is_find = u.argv.first().is_some_and(|p| {
        !p.is_dynamic() && matches!(basename(&p.text).as_str(), "find" | "fd" | "fdfind")
    });
    if !is_find || u.opaque {
        return Word::dynamic("(input)");
    }
    let roots: Vec<&Word> = u.argv[1..]
        .iter()
        .take_while(|w| !w.text.starts_with('-') && w.text != "(" && w.text != "!")
        .collect();
    let root = match roots.as_slice() {
        [] => ".".to_string(),
        [one] if one.as_static().is_some() && !one.text.starts_with('-') => one.text.clone(),
        _ => return Word::dynamic("(input)"),
    };
    if basename(&u.argv[0].text) != "find" {
        return Word::dynamic("(input)");
    }
    let mut w = Word::lit(&root);
    w.text = format!("{}/{}", root.trim_end_matches('/'), DYN);
    w.raw = "(input)".to_string();
    w
}

/// A bare file name with an extension (`readme.md`, `settings.json`), as code writes them.
fn looks_like_file_name(s: &str) -> bool {
    match s.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && (1..=8).contains(&ext.len())
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
                && stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        }
        None => false,
    }
}

/// Drops repeated paths, and keeps at most [`MAX_GLOB_PATHS`] glob paths (each is judged by
/// every path it can name, which costs): past that, one path only known at run time stands for
/// the rest (ask).
fn bound_paths(v: &mut Vec<Word>) {
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

fn is_assignment(t: &str) -> bool {
    match t.split_once('=') {
        Some((n, _)) => {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

fn is_harmless_device(p: &str) -> bool {
    matches!(
        p,
        "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty" | "/dev/zero"
    ) || p.starts_with("/dev/fd/")
}

/// String literals in code (`'…'`, `"…"`, `` `…` ``), plus adjacent literals of a list joined
/// by spaces (`["rm", "-rf", "/"]` → `rm -rf /`).
pub fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut group: Vec<String> = Vec::new();
    let mut gap_ok = true;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' || c == '`' {
            let mut s = String::new();
            let mut closed = false;
            while let Some(d) = chars.next() {
                if d == '\\' {
                    if let Some(e) = chars.next() {
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            _ => s.push(e),
                        }
                    }
                    continue;
                }
                if d == c {
                    closed = true;
                    break;
                }
                s.push(d);
            }
            if !closed {
                break;
            }
            if !gap_ok {
                flush_group(&mut group, &mut out);
            }
            out.push(s.clone());
            group.push(s);
            gap_ok = false;
        } else if c == ',' || c.is_whitespace() {
            if c == ',' {
                gap_ok = true;
            }
        } else {
            flush_group(&mut group, &mut out);
            gap_ok = true;
        }
    }
    flush_group(&mut group, &mut out);
    out
}

fn flush_group(group: &mut Vec<String>, out: &mut Vec<String>) {
    if group.len() > 1 {
        out.push(group.join(" "));
    }
    group.clear();
}

/// Whether a name looked up at run time with a literal (`getattr(os, 'system')`,
/// `require('child_process')`, Ruby `send(:spawn)`) names something that runs programs.
fn is_exec_name(name: &str) -> bool {
    let n = name.trim();
    n.starts_with("exec")
        || n.starts_with("spawn")
        || n.starts_with("posix_spawn")
        || matches!(
            n,
            "system"
                | "popen"
                | "Popen"
                | "run"
                | "call"
                | "check_call"
                | "check_output"
                | "getoutput"
                | "getstatusoutput"
                | "subprocess"
                | "child_process"
                | "node:child_process"
                | "pty"
                | "shell_exec"
                | "passthru"
                | "proc_open"
                | "startfile"
                | "fork"
                | "`"
        )
}

/// `str::floor_char_boundary` is unstable; a stable stand-in.
trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for String {
    fn floor_char_boundary_compat(&self, i: usize) -> usize {
        let mut i = i.min(self.len());
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Path segments that name documentation (`example.org/docs/…`, `example.org/en/stable/…`).
const DOC_WORDS: &[&str] = &[
    "docs",
    "doc",
    "documentation",
    "developer",
    "developers",
    "devdocs",
    "learn",
    "wiki",
    "reference",
    "guide",
    "guides",
    "manual",
    "tutorial",
    "tutorials",
    "how-to",
    "howto",
    "handbook",
    "book",
    "stable",
    "latest",
    "en",
    "en-us",
    "api-reference",
    "faq",
    "blog",
    "getting-started",
    "man",
    "manpages",
    "spec",
    "specs",
    "rfc",
];

/// Whether a URL on `host` with `path` (from the first `/`, `#…` allowed, no query) looks like a
/// documentation page rather than a channel for data: a named host (not an IP literal), a
/// documentation path segment, and no path segment over 48 characters or holding 24
/// or more base64/hex-looking characters in a row.
fn doc_page_shape(host: &str, path: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[') || !host.contains('.') {
        return false;
    }
    let path = path.split('#').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let opaque = |s: &str| {
        let mut run = 0usize;
        for c in s.chars() {
            if c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | '%') {
                run += 1;
                if run >= 24 {
                    return true;
                }
            } else {
                run = 0;
            }
        }
        false
    };
    if segments.iter().any(|s| s.len() > 48 || opaque(s)) {
        return false;
    }
    segments
        .iter()
        .any(|s| DOC_WORDS.contains(&s.to_ascii_lowercase().as_str()))
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
