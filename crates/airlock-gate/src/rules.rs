//! Command rules as data: the model users write in `[commands]`, the built-in set
//! (`rules/default.toml`), compilation to matchers, and matching one action against one rule.
//!
//! A rule matches when every field it sets matches (fields are ANDed, the items of a list are
//! ORed). A match is three-valued: a word that is only known at run time (`$X`, `$(…)`) makes a
//! match [`Match::Possible`], which the classifier turns into "not allowed without asking".

use std::collections::BTreeMap;

use crate::glob::Glob;
use crate::ir::{CodeFrom, InlineKind, Invocation, Word, DYN};
use crate::matchers::{Match, MatchCtx};
use crate::pathname::{is_scratch, lexical, resolve, under, PathRef, SCRATCH_DIRS, SYSTEM_DIRS};
use crate::schema::{RuleSpec, Tier};

// Kept at their old paths for callers outside the crate.
pub use crate::matchers::{GitInfo, StaticGit};

/// Named predicates rules can use in `check`.
pub const CHECKS: &[&str] = &[
    "dynamic-program",
    "glob-program",
    "code-network",
    "code-decoded",
    "code-unseen",
    "unparsed-code",
    "inline-exec",
    "inline-network",
    "inline-delete",
    "inline-opaque",
    "git-push-force",
    "git-push-delete",
    "git-push-protected",
    "git-push-url",
    "git-config-exec-key",
    "secret-env-ref",
    "setuid-mode",
    "pipes-to-network",
    "sed-script-exec",
    "git-fetch-url",
    "cargo-config-code",
    "container-host-mount",
    "compose-host-access",
    "git-foreign-repo",
    "inline-walk",
    "moves-workspace",
    "moves-workspace-ancestor",
    "serves-home-cwd",
    "output-shown",
];

/// Path categories rules can use in `target`.
pub const TARGETS: &[&str] = &[
    "root",
    "system",
    "home",
    "outside-workspace",
    "workspace-root",
];

/// A compiled rule. Its fields are checked when it is loaded ([`Rule::compile`]); its globs are
/// compiled the first time a command gets past its `program` (most rules never see a command
/// of theirs in one hook call, and the hook loads ~160 rules with ~2,000 patterns per call).
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub tier: Tier,
    pub reason: String,
    /// Where it came from: `builtin` or a policy file path.
    pub source: String,
    /// Expands `~/` in the path globs.
    home: std::sync::Arc<str>,
    /// Each [`Field`]'s patterns, compiled on first use.
    globs: [std::sync::OnceLock<Vec<Glob>>; FIELDS],
    /// Whether the rule names anything only a shell command has.
    command_only: bool,
    /// Whether a `program` pattern has a wildcard (`mkfs.*`).
    program_wildcards: bool,
    pub(crate) spec: RuleSpec,
}

/// Whether a pattern has a wildcard: without one, [`Glob::matches`] is string equality.
fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Which patterns of a rule (see [`Rule::patterns`]).
#[derive(Debug, Clone, Copy)]
enum Field {
    Program,
    Subcommand,
    Args,
    Words,
    Raw,
    Reads,
    Writes,
    Paths,
    Env,
    GitConfig,
    Unless,
}

/// How many [`Field`]s there are.
const FIELDS: usize = 11;

/// Compiles globs over words (`program`, `args`, …).
fn word_globs(v: &[String]) -> Vec<Glob> {
    v.iter().map(|p| Glob::new(p)).collect()
}

/// Compiles path globs: `~/` is `home`; a relative glob matches at any depth (`*/` in front);
/// `dir/*` also names the directory itself.
fn path_globs(v: &[String], home: &str) -> Vec<Glob> {
    let mut gs = Vec::with_capacity(v.len() * 2);
    for p in v {
        let p = if p == "~" {
            home.to_string()
        } else if let Some(rest) = p.strip_prefix("~/") {
            format!("{home}/{rest}")
        } else if p.starts_with('/') || p.starts_with('*') {
            p.clone()
        } else {
            format!("*/{p}")
        };
        gs.push(Glob::new(&p));
        if let Some(dir) = p.strip_suffix("/*") {
            if !dir.is_empty() && !dir.ends_with('*') {
                gs.push(Glob::new(dir));
            }
        }
    }
    gs
}

/// Why a rule could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule {id} in {source_name}: {message}")]
    Invalid {
        id: String,
        source_name: String,
        message: String,
    },
}

impl Rule {
    /// Compiles `spec`; `home` expands `~/` in path globs.
    pub fn compile(spec: RuleSpec, source: &str, home: &str) -> Result<Rule, RuleError> {
        let err = |message: String| RuleError::Invalid {
            id: if spec.id.is_empty() {
                "(no id)".into()
            } else {
                spec.id.clone()
            },
            source_name: source.to_string(),
            message,
        };
        if spec.id.is_empty() {
            return Err(err("missing `id`".into()));
        }
        let Some(tier) = spec.tier else {
            return Err(err("missing `tier` (deny, ask, review or allow)".into()));
        };
        if let Some(c) = &spec.check {
            if !CHECKS.contains(&c.as_str()) {
                return Err(err(format!(
                    "unknown check {c:?}; known: {}",
                    CHECKS.join(", ")
                )));
            }
        }
        for t in &spec.target {
            if !TARGETS.contains(&t.as_str()) {
                return Err(err(format!(
                    "unknown target {t:?}; known: {}",
                    TARGETS.join(", ")
                )));
            }
        }
        let command_fields = !spec.program.is_empty()
            || !spec.subcommand.is_empty()
            || !spec.flags.is_empty()
            || !spec.all_flags.is_empty()
            || !spec.not_flags.is_empty()
            || !spec.args.is_empty()
            || !spec.words.is_empty()
            || !spec.raw.is_empty()
            || !spec.target.is_empty()
            || !spec.env.is_empty()
            || !spec.git_config.is_empty()
            || spec.check.is_some()
            || spec.no_args;
        let path_fields =
            !spec.reads.is_empty() || !spec.writes.is_empty() || !spec.paths.is_empty();
        if !command_fields && !path_fields && spec.tool.is_empty() {
            return Err(err(
                "matches everything: set at least one of program, args, paths, tool, check…".into(),
            ));
        }
        if spec.reason.trim().is_empty() {
            return Err(err("missing `reason` (it is shown to the agent)".into()));
        }
        Ok(Rule {
            id: spec.id.clone(),
            tier,
            reason: spec.reason.clone(),
            source: source.to_string(),
            home: std::sync::Arc::from(home),
            globs: Default::default(),
            command_only: command_fields,
            program_wildcards: spec.program.iter().any(|p| has_wildcard(p)),
            spec,
        })
    }

    /// The rule's compiled patterns of `field`, compiled on first use.
    fn patterns(&self, field: Field) -> &[Glob] {
        self.globs[field as usize].get_or_init(|| {
            let s = &self.spec;
            match field {
                Field::Program => word_globs(&s.program),
                Field::Subcommand => word_globs(&s.subcommand),
                Field::Args => word_globs(&s.args),
                Field::Words => word_globs(&s.words),
                Field::Raw => word_globs(&s.raw),
                Field::Reads => path_globs(&s.reads, &self.home),
                Field::Writes => path_globs(&s.writes, &self.home),
                Field::Paths => path_globs(&s.paths, &self.home),
                Field::Env => word_globs(&s.env),
                Field::GitConfig => word_globs(&s.git_config),
                Field::Unless => word_globs(&s.unless),
            }
        })
    }

    /// Whether the rule's `program` names `program` (a static name): a plain name is compared
    /// as it is, without compiling the rule's patterns.
    fn names_program(&self, program: &str) -> bool {
        if !self.program_wildcards {
            return self.spec.program.iter().any(|p| p == program);
        }
        self.spec.program.iter().enumerate().any(|(i, p)| {
            if has_wildcard(p) {
                self.patterns(Field::Program)[i].matches(program)
            } else {
                p == program
            }
        })
    }

    /// The commands this rule must match (empty in the hook's copy of the built-in rules).
    pub fn examples(&self) -> &[String] {
        &self.spec.examples
    }

    /// Whether the rule is about paths only (writes, paths or reads; no program): such a rule
    /// says which paths are protected.
    pub fn is_path_rule(&self) -> bool {
        self.spec.program.is_empty()
            && self.spec.check.is_none()
            && (!self.spec.writes.is_empty() || !self.spec.paths.is_empty())
    }

    /// Static program names this rule mentions (candidates for globbed program words).
    pub fn program_names(&self) -> impl Iterator<Item = String> + '_ {
        self.spec
            .program
            .iter()
            .filter(|p| !p.contains(['*', '?', '[']))
            .cloned()
    }

    /// Matches a non-Bash tool call touching `path` (already absolute).
    pub fn match_file(&self, tool: &str, path: &str, write: bool) -> Match {
        if self.command_only {
            return Match::No;
        }
        let spec = &self.spec;
        if !spec.tool.is_empty() && !spec.tool.iter().any(|t| t == tool) {
            return Match::No;
        }
        let w = Word::lit(path);
        let mut m = Match::Yes;
        if !spec.reads.is_empty() {
            m = m.and(if write {
                Match::No
            } else {
                path_match(self.patterns(Field::Reads), &w, None)
            });
        }
        if !spec.writes.is_empty() {
            m = m.and(if write {
                path_match(self.patterns(Field::Writes), &w, None)
            } else {
                Match::No
            });
        }
        if !spec.paths.is_empty() {
            m = m.and(path_match(self.patterns(Field::Paths), &w, None));
        }
        m
    }

    /// Matches one shell invocation. The program is compared first, without compiling the
    /// rule's patterns: most rules are about other programs.
    pub fn match_invocation(&self, inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
        let spec = &self.spec;
        if !spec.tool.is_empty() && !spec.tool.iter().any(|t| t == "Bash") {
            return Match::No;
        }
        let mut m = Match::Yes;
        if !spec.program.is_empty() {
            m = m.and(if inv.program.is_empty() {
                Match::No
            } else if inv.program.contains(DYN) {
                Match::Possible
            } else {
                Match::from_bool(self.names_program(&inv.program))
            });
            if m == Match::No {
                return m;
            }
        }
        if !spec.unless.is_empty() && inv.words.iter().all(|w| !w.is_dynamic() && !w.glob) {
            let argv = inv
                .words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            if self
                .patterns(Field::Unless)
                .iter()
                .any(|g| g.matches(&argv))
            {
                return Match::No;
            }
        }
        if !spec.subcommand.is_empty() {
            m = m.and(match &inv.subcommand {
                None => Match::No,
                Some(s) if s.contains(DYN) => Match::Possible,
                Some(s) => Match::from_bool(
                    self.patterns(Field::Subcommand)
                        .iter()
                        .any(|g| g.matches(s)),
                ),
            });
            if m == Match::No {
                return m;
            }
        }
        if !spec.flags.is_empty() {
            m = m.and(Match::from_bool(spec.flags.iter().any(|f| inv.has_flag(f))));
        }
        if !spec.all_flags.is_empty() {
            m = m.and(Match::from_bool(
                spec.all_flags.iter().all(|f| inv.has_flag(f)),
            ));
        }
        if spec.not_flags.iter().any(|f| inv.has_flag(f)) {
            return Match::No;
        }
        if m == Match::No {
            return m;
        }
        if spec.no_args {
            m = m.and(Match::from_bool(inv.words.is_empty()));
        }
        if !spec.args.is_empty() {
            m = m.and(Match::any(
                inv.positionals
                    .iter()
                    .map(|w| word_match(self.patterns(Field::Args), w)),
            ));
        }
        if !spec.words.is_empty() {
            m = m.and(Match::any(
                inv.words
                    .iter()
                    .map(|w| word_match(self.patterns(Field::Words), w)),
            ));
        }
        if !spec.raw.is_empty() {
            m =
                m.and(Match::from_bool(inv.raw.iter().any(|r| {
                    self.patterns(Field::Raw).iter().any(|g| g.matches(r))
                })));
        }
        if !spec.env.is_empty() {
            // A glob with `=` is matched against `NAME=value` (`NODE_OPTIONS=*--require*`).
            m = m.and(
                inv.assigns
                    .iter()
                    .flat_map(|(n, v)| {
                        let kv = Word {
                            text: format!("{n}={}", v.text),
                            ..Word::lit("")
                        };
                        let dynamic = v.is_dynamic();
                        self.patterns(Field::Env)
                            .iter()
                            .zip(&spec.env)
                            .map(move |(g, src)| {
                                let name_part = src.split_once('=').map(|(a, _)| a);
                                if g.matches(n) {
                                    Match::Yes
                                } else if dynamic
                                    && name_part.is_some_and(|a| Glob::new(a).matches(n))
                                {
                                    // `NODE_OPTIONS="$X"`: any value, so possibly this one.
                                    Match::Possible
                                } else {
                                    word_match(std::slice::from_ref(g), &kv)
                                }
                            })
                    })
                    .max()
                    .unwrap_or(Match::No),
            );
        }
        if !spec.git_config.is_empty() {
            m = m.and(Match::from_bool(inv.git_config.iter().any(|(k, v)| {
                let kv = format!("{k}={v}");
                self.patterns(Field::GitConfig)
                    .iter()
                    .any(|g| g.matches(&kv))
            })));
        }
        if m == Match::No {
            return m;
        }
        if !spec.target.is_empty() {
            let cwd = inv.cwd.as_deref();
            // What the command changes; for commands that change nothing, the files it names.
            let cands = if inv.writes.is_empty() {
                inv.path_args.iter()
            } else {
                inv.writes.iter()
            };
            m = m.and(Match::any(cands.map(|w| {
                let cats = categorize(w, cwd, ctx);
                Match::any(spec.target.iter().map(|t| cats.get(t)))
            })));
        }
        let cwd = inv.cwd.as_deref();
        if !spec.reads.is_empty() {
            m = m.and(Match::any(inv.reads.iter().map(|w| {
                path_match(self.patterns(Field::Reads), w, Some((cwd, ctx)))
            })));
        }
        if !spec.writes.is_empty() {
            m = m.and(Match::any(inv.writes.iter().map(|w| {
                path_match(self.patterns(Field::Writes), w, Some((cwd, ctx)))
            })));
        }
        if !spec.paths.is_empty() {
            m = m.and(Match::any(
                inv.reads
                    .iter()
                    .chain(inv.writes.iter())
                    .chain(inv.path_args.iter())
                    .map(|w| path_match(self.patterns(Field::Paths), w, Some((cwd, ctx)))),
            ));
        }
        if m == Match::No {
            return m;
        }
        if let Some(c) = &spec.check {
            m = m.and(check(c, inv, ctx));
        }
        m
    }
}

/// Commands that read a token on stdin and store it for their tool, printing nothing
/// (`gh auth login --with-token`, gh(1); `glab auth login --stdin`).
const TOKEN_LOGINS: &[&str] = &[
    "gh auth login --with-token",
    "gh auth login --with-token --hostname *",
    "gh auth login --hostname * --with-token",
    "gh auth login -h * --with-token",
    "glab auth login --stdin",
    "glab auth login --hostname * --stdin",
];

/// `echo "$GITHUB_TOKEN" | gh auth login --with-token`: a command that only prints (its
/// secret) into a token login and nowhere else.
fn feeds_token_login(inv: &Invocation) -> bool {
    matches!(inv.program.as_str(), "echo" | "printf")
        && inv.writes.is_empty()
        && !inv.downstream_argv.is_empty()
        && inv.downstream_argv.len() == inv.downstream.len()
        && inv.downstream_argv.iter().all(|d| {
            let base = d.split_once(' ').map_or(d.as_str(), |(p, _)| p);
            let base = base.rsplit('/').next().unwrap_or(base);
            let rest = d.split_once(' ').map_or("", |(_, r)| r);
            TOKEN_LOGINS
                .iter()
                .any(|g| Glob::new(g).matches(&format!("{base} {rest}")))
        })
}

fn word_match(globs: &[Glob], w: &Word) -> Match {
    if w.is_dynamic() || w.glob {
        let probe = w.text.replace(DYN, "*");
        if globs.iter().any(|g| glob_intersects(g, &probe)) {
            return Match::Possible;
        }
        return Match::No;
    }
    Match::from_bool(globs.iter().any(|g| g.matches(&w.text)))
}

/// Approximate test whether some string matches both `rule` and the dynamic word `probe`.
fn glob_intersects(rule: &Glob, probe: &str) -> bool {
    if rule.matches(probe) || rule.matches(&probe.replace('*', "")) {
        return true;
    }
    if rule.is_literal() {
        return false;
    }
    // Try filling the word's wildcards with a few representative strings.
    ["x", "/", "-", "+"]
        .iter()
        .any(|fill| rule.matches(&probe.replace('*', fill)))
        || probe.starts_with('*')
        || probe.ends_with('*') && {
            let prefix = probe.trim_end_matches('*');
            // The word is `prefix…`: does the rule accept something starting with prefix?
            rule_accepts_prefix(rule, prefix)
        }
}

fn rule_accepts_prefix(rule: &Glob, prefix: &str) -> bool {
    for tail in ["", "x", "/x", "*", "-x", ".x"] {
        if rule.matches(&format!("{prefix}{tail}")) {
            return true;
        }
    }
    false
}

/// Categories a path argument falls in.
#[derive(Debug, Default, Clone)]
pub struct Categories {
    map: BTreeMap<&'static str, Match>,
}

impl Categories {
    fn get(&self, name: &str) -> Match {
        self.map.get(name).copied().unwrap_or(Match::No)
    }
    /// Categories that hold definitely.
    pub fn names(&self) -> Vec<&'static str> {
        self.map
            .iter()
            .filter(|(_, m)| **m == Match::Yes)
            .map(|(k, _)| *k)
            .collect()
    }
}

pub fn categorize(w: &Word, cwd: Option<&str>, ctx: &MatchCtx<'_>) -> Categories {
    let mut c = Categories::default();
    let home = ctx.home;
    let ws = ctx.workspace;
    let r = resolve(w, cwd, home);
    let in_ws = |p: &str| ws.is_some_and(|w| under(p, w));
    let system = |p: &str| {
        p == "/"
            || SYSTEM_DIRS.iter().any(|d| under(p, d))
                && !SCRATCH_DIRS.iter().any(|s| under(p, s) && p != *s)
    };
    match r {
        PathRef::Unknown => {
            for t in TARGETS {
                c.map.insert(t, Match::Possible);
            }
        }
        PathRef::Exact(p) => {
            c.map.insert("root", Match::from_bool(p == "/"));
            c.map.insert("system", Match::from_bool(system(&p)));
            c.map.insert(
                "home",
                Match::from_bool(under(&p, home) && !in_ws(&p) && home != "/"),
            );
            // Scratch dirs (/tmp) are not "outside" unless the home dir itself lives there.
            c.map.insert(
                "outside-workspace",
                Match::from_bool(!in_ws(&p) && !is_scratch(&p, home, SCRATCH_DIRS, false)),
            );
            let root = ws.is_some_and(|w| p == w || p == format!("{w}/.git"));
            c.map.insert("workspace-root", Match::from_bool(root));
        }
        PathRef::Under(d) => {
            c.map.insert("root", Match::from_bool(d == "/"));
            c.map.insert("system", Match::from_bool(system(&d)));
            c.map.insert(
                "home",
                Match::from_bool(under(&d, home) && !in_ws(&d) && home != "/"),
            );
            c.map.insert(
                "outside-workspace",
                Match::from_bool(!in_ws(&d) && !is_scratch(&d, home, SCRATCH_DIRS, true)),
            );
            let all_of_ws = ws.is_some_and(|w| d == w) && {
                let t = w.text.trim_end_matches('/');
                t.ends_with("/*") || t == "*" || t.ends_with(DYN) && !t.contains('.')
            };
            c.map
                .insert("workspace-root", Match::from_bool(all_of_ws && w.glob));
        }
    }
    c
}

fn path_match(globs: &[Glob], w: &Word, at: Option<(Option<&str>, &MatchCtx<'_>)>) -> Match {
    let (cwd, home) = match at {
        Some((cwd, ctx)) => (cwd, ctx.home),
        None => (None, ""),
    };
    if w.glob && !w.is_dynamic() {
        // `cat ~/.ss?/id_*`: judged as every path the pattern can name.
        if let Some(abs) = absolute_pattern(&w.text, cwd, home) {
            if abs.len() > MAX_GLOB_PATH {
                // Not worth the work: it could name anything.
                return Match::Possible;
            }
            let pat = Glob::new(&abs);
            // A last name of only wildcards (`src/*`) names every file; it is not taken as
            // naming a file that rules protect by its name anywhere (`*/id_rsa`, `*.pem`), or
            // every `cat src/*` would be denied. `.claude/*` still names `*/.claude/settings.json`.
            let last = abs.rsplit('/').next().unwrap_or("");
            let any_name = last.chars().all(|c| matches!(c, '*' | '?'));
            return Match::from_bool(
                globs
                    .iter()
                    .filter(|g| !(any_name && g.is_name_anywhere()))
                    .any(|g| pat.shell_intersects(g)),
            );
        }
    }
    match resolve(w, cwd, home) {
        PathRef::Exact(p) => Match::from_bool(globs.iter().any(|g| g.matches(&p))),
        PathRef::Under(_) => {
            // A glob or dynamic word like `~/.ssh/*` or `/proc/$PID/environ`: fill the unknown
            // parts with a plausible name; if that names a matching path, the word does.
            let filled = Word::lit(&w.text.replace([DYN, '*', '?'], "x"));
            match resolve(&filled, cwd, home) {
                PathRef::Exact(p) if globs.iter().any(|g| g.matches(&p)) => {
                    if w.is_dynamic() {
                        Match::Possible
                    } else {
                        Match::Yes
                    }
                }
                _ => Match::No,
            }
        }
        PathRef::Unknown => {
            // `"$D"/.ssh/id_rsa`, `${X}/.claude/settings.json`: where the unknown start is the
            // home directory, does the known rest name a protected path? Then it may.
            let tail = w.text.rsplit(DYN).next().unwrap_or("");
            if !w.is_dynamic() || home.is_empty() || !tail.starts_with('/') || tail.len() < 2 {
                return Match::No;
            }
            let filled = lexical(&format!("{home}{tail}"));
            if filled != home && globs.iter().any(|g| g.matches(&filled)) {
                Match::Possible
            } else {
                Match::No
            }
        }
    }
}

/// Longest glob path judged by what it can name (longer ones could name anything).
const MAX_GLOB_PATH: usize = 1024;

/// A shell pattern made absolute (`~` expanded, relative to `cwd`, `.`/`..` removed).
fn absolute_pattern(text: &str, cwd: Option<&str>, home: &str) -> Option<String> {
    let s = if text == "~" {
        home.to_string()
    } else if let Some(r) = text.strip_prefix("~/") {
        format!("{home}/{r}")
    } else {
        text.to_string()
    };
    if s.starts_with('/') {
        Some(lexical(&s))
    } else {
        cwd.map(|c| lexical(&format!("{c}/{s}")))
    }
}

fn check(name: &str, inv: &Invocation, ctx: &MatchCtx<'_>) -> Match {
    match name {
        "dynamic-program" => Match::from_bool(inv.program.contains(DYN)),
        "glob-program" => Match::from_bool(inv.program_glob),
        "code-network" => Match::from_bool(inv.code_from == CodeFrom::Network),
        "code-decoded" => Match::from_bool(inv.code_from == CodeFrom::Decoded),
        "code-unseen" => Match::from_bool(inv.code_from == CodeFrom::Unseen),
        "unparsed-code" => Match::from_bool(inv.unparsed.is_some()),
        "inline-exec" => Match::from_bool(inv.inline.contains(&InlineKind::Exec)),
        "inline-network" => Match::from_bool(inv.inline.contains(&InlineKind::Network)),
        "inline-delete" => Match::from_bool(inv.inline.contains(&InlineKind::Delete)),
        "inline-opaque" => Match::from_bool(inv.inline.contains(&InlineKind::Opaque)),
        "git-push-force" => crate::git::push_force(inv, ctx),
        "git-push-delete" => crate::git::push_delete(inv),
        "git-push-protected" => crate::git::push_protected(inv, ctx),
        "git-push-url" => crate::git::push_url(inv, ctx),
        "git-config-exec-key" => crate::git::config_exec_key(inv, ctx),
        "secret-env-ref" => Match::from_bool(
            inv.raw.iter().any(|r| secret_ref(r, ctx.secret_env)) && !feeds_token_login(inv),
        ),
        "pipes-to-network" => Match::from_bool(inv.downstream.iter().any(|d| {
            matches!(
                d.as_str(),
                "nc" | "ncat"
                    | "netcat"
                    | "socat"
                    | "telnet"
                    | "openssl"
                    | "nc.traditional"
                    | "nc.openbsd"
            )
        })),
        "sed-script-exec" => sed_script_exec(inv),
        "git-fetch-url" => crate::checks::git_fetch_url(inv, ctx),
        "cargo-config-code" => crate::checks::cargo_config_code(inv),
        "container-host-mount" => crate::checks::container_host_mount(inv, ctx),
        "compose-host-access" => crate::checks::compose_host_access(inv, ctx),
        "git-foreign-repo" => crate::checks::git_foreign_repo(inv, ctx),
        "inline-walk" => Match::from_bool(inv.inline.contains(&InlineKind::Walk)),
        "moves-workspace" => crate::checks::moves_workspace(inv, ctx, false),
        "moves-workspace-ancestor" => crate::checks::moves_workspace(inv, ctx, true),
        "serves-home-cwd" => crate::checks::serves_home_cwd(inv, ctx),
        "output-shown" => crate::checks::output_shown(inv),
        "setuid-mode" => Match::any(inv.positionals.iter().take(1).map(|w| {
            if w.is_dynamic() {
                return Match::Possible;
            }
            let t = w.text.as_str();
            let symbolic = t.contains('s') && (t.contains('+') || t.contains('='));
            let octal = t.len() == 4
                && t.bytes().all(|b| (b'0'..=b'7').contains(&b))
                && matches!(t.as_bytes()[0], b'2' | b'4' | b'6');
            Match::from_bool(symbolic || octal)
        })),
        _ => Match::No,
    }
}

/// Whether a sed script runs shell commands: the `e` command or the `e` flag of `s///`
/// (GNU sed(1)). The script is the `-e`/`--expression` values, else the first positional; the
/// files after it (`xargs sed -i …` appends unknown names) are not the script.
fn sed_script_exec(inv: &Invocation) -> Match {
    let scripts: Vec<&Word> = {
        let e: Vec<&Word> = inv
            .flags
            .iter()
            .filter(|(n, _)| n == "expression")
            .filter_map(|(_, v)| v.as_ref())
            .collect();
        if e.is_empty() {
            inv.positionals.iter().take(1).collect()
        } else {
            e
        }
    };
    Match::any(scripts.into_iter().map(|w| {
        if w.is_dynamic() {
            Match::Possible
        } else {
            Match::from_bool(sed_text_exec(&w.text))
        }
    }))
}

fn sed_text_exec(script: &str) -> bool {
    script.split(['\n', ';', '{', '}']).any(|part| {
        let mut s = part.trim_start();
        loop {
            s = s.trim_start_matches(|c: char| c.is_ascii_digit() || ",$~+! \t".contains(c));
            match s
                .strip_prefix('/')
                .and_then(|r| r.find('/').map(|e| &r[e + 1..]))
            {
                Some(rest) => s = rest,
                None => break,
            }
        }
        if s.starts_with('e') {
            return true;
        }
        let Some(rest) = s.strip_prefix('s') else {
            return false;
        };
        let Some(delim) = rest.chars().next() else {
            return false;
        };
        if delim.is_alphanumeric() || delim.is_whitespace() || delim == '\\' {
            return false;
        }
        let body = &rest[delim.len_utf8()..];
        let mut pieces = Vec::new();
        let mut cur = String::new();
        let mut escaped = false;
        for c in body.chars() {
            if escaped {
                escaped = false;
                cur.push(c);
            } else if c == '\\' {
                escaped = true;
            } else if c == delim {
                pieces.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        pieces.push(cur);
        pieces.get(2).is_some_and(|flags| {
            flags
                .chars()
                .take_while(|c| !c.is_whitespace())
                .any(|c| c == 'e')
        })
    })
}

/// Whether raw word text references a secret-looking variable (`$GITHUB_TOKEN`, `${AWS_SECRET…}`).
fn secret_ref(raw: &str, secret: &[Glob]) -> bool {
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let after = after.strip_prefix('{').unwrap_or(after);
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && secret.iter().any(|g| g.matches(&name.to_ascii_uppercase())) {
            return true;
        }
        rest = &rest[i + 1..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_not_the_home() {
        let tmp = SCRATCH_DIRS;
        // Scratch, wherever the home is.
        for (p, home) in [
            ("/tmp/x", "/home/u"),
            ("/tmp/a/b", "/home/u"),
            ("/var/tmp/x", "/home/u"),
            ("/dev/shm/x", "/home/u"),
            ("/tmp/x", "/tmp/h"),
            ("/tmp/hh/x", "/tmp/h"),
            ("/tmp/x", "/"),
        ] {
            assert!(is_scratch(p, home, tmp, false), "{p} with HOME={home}");
        }
        // A home that lives in a scratch directory is the home, whatever spells it.
        for (p, home) in [
            ("/tmp/h", "/tmp/h"),
            ("/tmp/h/.ssh/id_ed25519", "/tmp/h"),
            ("/tmp/h/.bashrc", "/tmp/h/"),
            ("/var/tmp/ci/home/.aws/credentials", "/var/tmp/ci/home"),
            ("/dev/shm/u/.config", "/dev/shm/u"),
        ] {
            assert!(!is_scratch(p, home, tmp, false), "{p} with HOME={home}");
            assert!(!is_scratch(p, home, tmp, true), "{p} with HOME={home}");
        }
        // Not in a scratch directory at all; the directory itself only with `or_dir`.
        for p in ["/tmpx/y", "/home/u/tmp/x", "/", "/var/tmpfoo"] {
            assert!(!is_scratch(p, "/home/u", tmp, true), "{p}");
        }
        assert!(!is_scratch("/tmp", "/home/u", tmp, false));
        assert!(is_scratch("/tmp", "/home/u", tmp, true));
        assert!(!is_scratch("/dev/shm/x", "/home/u", &["/tmp"], true));
    }

    #[test]
    fn a_home_under_tmp_is_outside_the_workspace() {
        let git = StaticGit::default();
        let ctx = MatchCtx {
            home: "/tmp/h",
            workspace: Some("/tmp/h/project"),
            git: &git,
            owners: &[],
            protected: &[],
            git_exec_keys: &[],
            secret_env: &[],
        };
        let outside = |text: &str, glob: bool| {
            let w = Word {
                glob,
                ..Word::lit(text)
            };
            categorize(&w, Some("/tmp/h/project"), &ctx).get("outside-workspace")
        };
        for (p, glob) in [
            ("/tmp/h/.ssh/id_rsa", false),
            ("/tmp/h", false),
            ("../.bashrc", false),
            ("/tmp/h/.aws/*", true),
            ("~/*", true),
        ] {
            assert_eq!(outside(p, glob), Match::Yes, "{p}");
        }
        for (p, glob) in [
            ("/tmp/build/out.o", false),
            ("/tmp/cache/*", true),
            ("src/main.rs", false),
        ] {
            assert_eq!(outside(p, glob), Match::No, "{p}");
        }
    }

    #[test]
    fn resolves_paths() {
        let w = Word::lit("../x");
        assert_eq!(
            resolve(&w, Some("/a/b"), "/h"),
            PathRef::Exact("/a/x".into())
        );
        let mut g = Word::lit("/*");
        g.glob = true;
        assert_eq!(resolve(&g, Some("/a"), "/h"), PathRef::Under("/".into()));
        let d = Word {
            text: format!("{DYN}/x"),
            ..Word::lit("")
        };
        assert_eq!(resolve(&d, Some("/a"), "/h"), PathRef::Unknown);
        assert_eq!(
            resolve(&Word::lit("~/.ssh"), None, "/h"),
            PathRef::Exact("/h/.ssh".into())
        );
    }

    #[test]
    fn secret_refs() {
        let g = vec![Glob::new("*TOKEN*"), Glob::new("*SECRET*")];
        assert!(secret_ref("\"$GITHUB_TOKEN\"", &g));
        assert!(secret_ref("${AWS_SECRET_ACCESS_KEY}", &g));
        assert!(!secret_ref("$HOME", &g));
    }
}
