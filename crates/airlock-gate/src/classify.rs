//! The engine: loads the built-in rules and the `[commands]` layers of the policy, checks every
//! rule's examples, and decides tool calls: every invocation gets the tier of the most severe
//! rule that matches it (deny > ask > review > allow, first rule wins a tie), or a default, and
//! the call gets the most severe tier of its invocations.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::glob::Glob;
use crate::ir::Env;
use crate::ir::Invocation;
pub use crate::matchers::Context;
use crate::matchers::{Match, MatchCtx, StaticGit};
use crate::normalize::{Analysis, KnownPrograms, Normalizer};
use crate::parse::ParseError;
use crate::rules::{categorize, Rule, RuleError};
use crate::schema::SpecTable;
use crate::schema::{DataFile, RuleSpec, Tier};
use crate::GateError;

/// The built-in tables and rules, as written.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");
/// The same, converted to JSON by `build.rs` without the rules' examples (parsed on every
/// hook call; JSON is faster). The examples are checked from [`DEFAULT_RULES`] by the tests.
const DEFAULT_RULES_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/default-rules.json"));
/// The `programs` and `wrappers` tables of [`DEFAULT_RULES`] (left out of
/// [`DEFAULT_RULES_JSON`]): each entry's JSON text by program name, sorted by name, parsed on
/// first use.
const DEFAULT_PROGRAMS: &[(&str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/default-programs.rs"));
const DEFAULT_WRAPPERS: &[(&str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/default-wrappers.rs"));
/// The program names the built-in tables and rules know, sorted (made by `build.rs`; see
/// [`crate::normalize::known_programs`]).
pub(crate) const BUILTIN_KNOWN_PROGRAMS: &[&str] =
    include!(concat!(env!("OUT_DIR"), "/known-programs.rs"));

/// Protected branch names when the policy names none.
pub const DEFAULT_PROTECTED: &[&str] = &[
    "main",
    "master",
    "trunk",
    "develop",
    "production",
    "prod",
    "stable",
    "release",
    "release/*",
    "releases/*",
    "gh-pages",
];

/// The `[commands]` table of one policy file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// Tier for commands no rule matches (default `allow`).
    #[serde(default)]
    pub default: Option<Tier>,
    /// Tier for unmatched commands that reach the network (default `ask`).
    #[serde(default)]
    pub default_network: Option<Tier>,
    /// Tier for unmatched commands that write outside the workspace (default `ask`).
    #[serde(default)]
    pub default_write_outside: Option<Tier>,
    /// Owners (user or organisation) of remotes the agent may force-push to and push to
    /// protected branches of: the agent's own git identity.
    #[serde(default)]
    pub git_owners: Vec<String>,
    /// Branch globs that count as protected (added to the defaults).
    #[serde(default)]
    pub protected_branches: Vec<String>,
    /// Built-in rule ids to switch off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// The LLM reviewer for the `review` tier.
    #[serde(default)]
    pub review: Option<crate::review::ReviewConfig>,
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// One policy layer's `[commands]` table.
#[derive(Debug, Clone)]
pub struct CommandLayer {
    pub source: PathBuf,
    pub table: toml::Table,
    /// Untrusted layers (files the agent could write) may only add deny and ask rules.
    pub trusted: bool,
}

/// Settings merged from all layers.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default: Tier,
    pub default_network: Tier,
    pub default_write_outside: Tier,
    pub git_owners: Vec<String>,
    pub protected_branches: Vec<String>,
    pub review: Option<crate::review::ReviewConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default: Tier::Allow,
            default_network: Tier::Ask,
            default_write_outside: Tier::Ask,
            git_owners: Vec::new(),
            protected_branches: DEFAULT_PROTECTED.iter().map(|s| s.to_string()).collect(),
            review: None,
        }
    }
}

/// How one invocation was decided.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Step {
    /// Normalised argv.
    pub argv: Vec<String>,
    /// Where it was found (`""` at top level, `$(…)`, `bash -c`, …).
    pub origin: String,
    pub tier: Tier,
    /// Rule id (`builtin:…`, `<file>:…`, or `default…`).
    pub rule: String,
    pub reason: String,
    /// Decided on a possible match: a word only known at run time could make the rule apply.
    pub uncertain: bool,
}

/// The decision for one tool call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// `review` means "ask the reviewer" (or the user when no reviewer is configured).
    pub tier: Tier,
    pub rule: String,
    pub reason: String,
    pub steps: Vec<Step>,
}

impl Verdict {
    fn single(tier: Tier, rule: &str, reason: impl Into<String>) -> Verdict {
        let reason = reason.into();
        Verdict {
            tier,
            rule: rule.to_string(),
            reason: reason.clone(),
            steps: Vec::new(),
        }
    }

    fn from_steps(steps: Vec<Step>) -> Verdict {
        let mut best: Option<&Step> = None;
        for s in &steps {
            if best.is_none_or(|b| s.tier > b.tier) {
                best = Some(s);
            }
        }
        match best {
            None => Verdict::single(Tier::Allow, "empty", "no command to run"),
            Some(b) => {
                let mut reason = b.reason.clone();
                if b.tier != Tier::Allow {
                    let what = b.argv.join(" ");
                    let mut what: String = what.chars().take(120).collect();
                    if what.len() < b.argv.join(" ").len() {
                        what.push('…');
                    }
                    reason = if b.origin.is_empty() || b.origin == what {
                        format!("{reason} [{what}]")
                    } else {
                        // Where it hides: `make test`, `script x.sh`, `git rebase --exec`.
                        let origin: String = b.origin.chars().take(80).collect();
                        format!("{reason} [{what}, found in {origin}]")
                    };
                }
                Verdict {
                    tier: b.tier,
                    rule: b.rule.clone(),
                    reason,
                    steps,
                }
            }
        }
    }
}

/// The loaded command gate.
#[derive(Debug)]
pub struct Engine {
    normalizer: Normalizer,
    rules: Vec<Rule>,
    pub settings: Settings,
    protected: Vec<Glob>,
    git_exec_keys: Vec<Glob>,
    secret_env: Vec<Glob>,
}

/// Claude Code tools that touch files: every path-like string of their input is judged.
const FILE_TOOLS: &[&str] = &[
    "Write",
    "Edit",
    "MultiEdit",
    "Read",
    "NotebookEdit",
    "NotebookRead",
    "Grep",
    "Glob",
    "LS",
];

/// Path rules not used to guess what an unknown program writes: system directories are named
/// by everyday build options (`./configure --prefix=/usr/local`, `virtualenv -p
/// /usr/bin/python3`), and CI workflows and CLAUDE.md by linters (`actionlint
/// .github/workflows/ci.yml`); the gate's files, keys, rc files and hooks are.
const UNKNOWN_PROGRAM_NOT_PROTECTED: &[&str] = &["redirect-system", "persistence-repo-files"];

/// Built-in rules about data leaving the machine, which do not apply to a client talking
/// only to this machine ([`crate::loopback`]).
const LOOPBACK_EXEMPT: &[&str] = &["exfil-upload"];

/// Home directory used to check rule examples.
const EXAMPLE_HOME: &str = "/home/user";
const EXAMPLE_WS: &str = "/home/user/project";

impl Engine {
    /// The built-in rules only.
    pub fn builtin() -> Result<Engine, GateError> {
        Engine::load(&[], "/root", false)
    }

    /// The built-in rules with their examples (read from the TOML, slower than [`Engine::load`]),
    /// for [`Engine::example_failures`].
    pub fn builtin_with_examples(home: &str) -> Result<Engine, GateError> {
        Engine::load(&[], home, true)
    }

    /// Built-in rules plus `layers` (lowest first). Examples of user rules are always checked
    /// (a failing one is an error naming the rule). With `check_builtin_examples` the built-in
    /// rules are read with their examples, from the TOML, so that
    /// [`Engine::example_failures`] can check them (the test suite does); without it they come
    /// from the faster JSON copy, which leaves the examples out.
    pub fn load(
        layers: &[CommandLayer],
        home: &str,
        check_builtin_examples: bool,
    ) -> Result<Engine, GateError> {
        let data: DataFile = if check_builtin_examples {
            toml::from_str(DEFAULT_RULES).map_err(|e| GateError::Builtin(e.to_string()))?
        } else {
            serde_json::from_str(DEFAULT_RULES_JSON)
                .map_err(|e| GateError::Builtin(e.to_string()))?
        };
        let (mut tables, secret_env, builtin_rules) = data.into_parts();
        if !check_builtin_examples {
            tables.programs = SpecTable::lazy(DEFAULT_PROGRAMS);
            tables.wrappers = SpecTable::lazy(DEFAULT_WRAPPERS);
        }
        let git_exec_keys: Vec<Glob> = tables
            .git_exec_keys
            .iter()
            .map(|k| Glob::new(&k.to_ascii_lowercase()))
            .collect();
        let mut settings = Settings::default();
        let mut disabled: HashSet<String> = HashSet::new();
        let mut user_rules: Vec<(RuleSpec, String)> = Vec::new();
        for layer in layers {
            let cfg: CommandsConfig = toml::Value::Table(layer.table.clone()).try_into().map_err(
                |e: toml::de::Error| GateError::Config {
                    path: layer.source.clone(),
                    message: e.to_string().trim().replace('\n', " "),
                },
            )?;
            if !layer.trusted {
                check_narrowing(&cfg, &settings, &layer.source)?;
            }
            let tighten = |cur: &mut Tier, new: Option<Tier>| {
                if let Some(t) = new {
                    *cur = t;
                }
            };
            tighten(&mut settings.default, cfg.default);
            tighten(&mut settings.default_network, cfg.default_network);
            tighten(
                &mut settings.default_write_outside,
                cfg.default_write_outside,
            );
            settings.git_owners.extend(cfg.git_owners.iter().cloned());
            settings
                .protected_branches
                .extend(cfg.protected_branches.iter().cloned());
            disabled.extend(cfg.disable.iter().cloned());
            if cfg.review.is_some() {
                settings.review = cfg.review.clone();
            }
            let src = layer.source.display().to_string();
            for r in cfg.rule {
                user_rules.push((r, src.clone()));
            }
        }
        let mut rules = Vec::with_capacity(user_rules.len() + builtin_rules.len());
        let mut seen = HashSet::new();
        // User rules first: within a tier the first match wins, so a user's reason is shown.
        for (spec, src) in user_rules {
            if !seen.insert(spec.id.clone()) {
                return Err(GateError::Rule(RuleError::Invalid {
                    id: spec.id.clone(),
                    source_name: src,
                    message: "duplicate rule id".into(),
                }));
            }
            rules.push(Rule::compile(spec, &src, home)?);
        }
        let user_count = rules.len();
        let mut all_builtin = true;
        for mut spec in builtin_rules {
            if disabled.contains(&spec.id) {
                all_builtin = false;
                continue;
            }
            if spec.id == "agent-settings" {
                // The binary running this hook, wherever it was installed.
                spec.writes.extend(own_binary());
            }
            if !seen.insert(spec.id.clone()) {
                return Err(GateError::Builtin(format!("duplicate rule id {}", spec.id)));
            }
            rules.push(Rule::compile(spec, "builtin", home)?);
        }
        let normalizer = if user_count == 0 && all_builtin && !check_builtin_examples {
            // The list build.rs made from the same data (the hook's case).
            Normalizer::with_known(tables, KnownPrograms::Builtin(BUILTIN_KNOWN_PROGRAMS))
        } else {
            let known = rules.iter().flat_map(|r| r.program_names());
            let known = crate::normalize::known_programs(&tables, known);
            Normalizer::with_known(tables, KnownPrograms::Loaded(known))
        };
        let protected = settings
            .protected_branches
            .iter()
            .map(|b| Glob::new(b))
            .collect();
        let secret_env = secret_env.iter().map(|s| Glob::new(s)).collect();
        let engine = Engine {
            normalizer,
            rules,
            settings,
            protected,
            git_exec_keys,
            secret_env,
        };
        for i in 0..user_count {
            engine.check_examples(i, home)?;
        }
        Ok(engine)
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Checks every rule's examples; returns all failures.
    pub fn example_failures(&self) -> Vec<GateError> {
        (0..self.rules.len())
            .filter_map(|i| self.check_examples(i, EXAMPLE_HOME).err())
            .collect()
    }

    /// Checks that rule `i` matches each of its examples and none of its counter-examples.
    fn check_examples(&self, i: usize, _home: &str) -> Result<(), GateError> {
        let rule = &self.rules[i];
        let mut git = StaticGit::default();
        git.remotes.insert(
            "origin".into(),
            "https://github.com/upstream/project.git".into(),
        );
        git.remotes
            .insert("fork".into(), "git@github.com:agent-bot/project.git".into());
        git.branch = Some("feature/x".into());
        let ctx = Context {
            cwd: EXAMPLE_WS.into(),
            home: EXAMPLE_HOME.into(),
            workspace: Some(EXAMPLE_WS.into()),
            git: &git,
        };
        // Examples are written for the example home; compile the rule against it.
        let r = Rule::compile(rule.spec.clone(), &rule.source, EXAMPLE_HOME)?;
        let owners = vec!["agent-bot".to_string()];
        let fail = |ex: &str, why: &str| {
            GateError::Rule(RuleError::Invalid {
                id: rule.id.clone(),
                source_name: rule.source.clone(),
                message: format!("example {ex:?} {why}"),
            })
        };
        for (ex, want) in rule
            .spec
            .examples
            .iter()
            .map(|e| (e, true))
            .chain(rule.spec.not_examples.iter().map(|e| (e, false)))
        {
            let m = self
                .match_example(&r, ex, &ctx, &owners)
                .map_err(|e| fail(ex, &format!("does not parse: {e}")))?;
            if want && m != Match::Yes {
                return Err(fail(ex, "does not match the rule"));
            }
            if !want && m == Match::Yes {
                return Err(fail(ex, "matches the rule but is listed in not_examples"));
            }
        }
        Ok(())
    }

    fn match_example(
        &self,
        rule: &Rule,
        ex: &str,
        ctx: &Context<'_>,
        owners: &[String],
    ) -> Result<Match, ParseError> {
        if let Some(rest) = ex.strip_prefix("tool:") {
            let (tool, path) = rest.split_once(' ').unwrap_or((rest, ""));
            let abs = abs_path(path, ctx);
            let write = is_write_tool(tool);
            return Ok(rule.match_file(tool, &abs, write));
        }
        let env = Env {
            home: ctx.home.clone(),
            cwd: ctx.cwd.clone(),
        };
        let analysis = self.normalizer.analyse(ex, &env)?;
        let mctx = self.match_ctx(ctx, owners);
        Ok(analysis
            .invocations
            .iter()
            .map(|inv| rule.match_invocation(inv, &mctx))
            .max()
            .unwrap_or(Match::No))
    }

    fn match_ctx<'a>(&'a self, ctx: &'a Context<'a>, owners: &'a [String]) -> MatchCtx<'a> {
        MatchCtx {
            home: &ctx.home,
            workspace: ctx.workspace.as_deref(),
            git: ctx.git,
            owners,
            protected: &self.protected,
            git_exec_keys: &self.git_exec_keys,
            secret_env: &self.secret_env,
        }
    }

    /// Parses and normalises a command without deciding (for `policy explain`).
    pub fn analyse(&self, command: &str, ctx: &Context<'_>) -> Result<Analysis, ParseError> {
        let env = Env {
            home: ctx.home.clone(),
            cwd: ctx.cwd.clone(),
        };
        self.normalizer.analyse(command, &env)
    }

    /// Decides a Bash command.
    pub fn classify_command(&self, command: &str, ctx: &Context<'_>) -> Verdict {
        let analysis = match self.analyse(command, ctx) {
            Ok(a) => a,
            Err(e) => {
                return Verdict::single(
                    Tier::Deny,
                    "parse-error",
                    format!("airlock could not analyse this command ({e}); rewrite it in plainer shell syntax"),
                )
            }
        };
        if analysis.invocations.is_empty() && analysis.errors.is_empty() && has_code(command) {
            // Fail closed: text that is not blank or a comment, in which no command was found,
            // is something the parser did not understand.
            return Verdict::single(
                Tier::Ask,
                "no-command-found",
                "airlock found no command in this text although it is not empty or a comment; \
                 it cannot tell what would run",
            );
        }
        let mut steps = Vec::with_capacity(analysis.invocations.len());
        for inv in &analysis.invocations {
            steps.push(self.decide_invocation(inv, ctx));
        }
        for (origin, e) in &analysis.errors {
            steps.push(Step {
                argv: vec![origin.clone()],
                origin: origin.clone(),
                tier: Tier::Ask,
                rule: "nested-parse-error".into(),
                reason: format!("code passed to {origin} could not be analysed ({e})"),
                uncertain: true,
            });
        }
        Verdict::from_steps(steps)
    }

    /// Decides one invocation: on its paths as written and as they resolve through symbolic
    /// links (the stricter wins); a command found in the arguments of an unknown program is at
    /// most asked about; an unknown program given a protected path is asked about.
    fn decide_invocation(&self, inv: &Invocation, ctx: &Context<'_>) -> Step {
        let resolved = crate::paths::with_resolved_paths(inv, ctx);
        let inv = resolved.as_ref().unwrap_or(inv);
        // `curl -X POST http://localhost:3000/…`, `nc -z localhost 5432`: a local service.
        let local = crate::loopback::loopback_only(inv).then(|| Invocation {
            network: false,
            ..inv.clone()
        });
        let inv = local.as_ref().unwrap_or(inv);
        let mut step = self.decide_rules(inv, ctx, local.is_some());
        if let Some(p) = &inv.speculative {
            // A guess: what would be denied is asked about; what would only be asked about
            // (`conda install curl wget` reads as `curl wget`) is not held against the program.
            if step.tier == Tier::Deny {
                step.tier = Tier::Ask;
                step.uncertain = true;
                step.reason = format!(
                    "{} (found in the arguments of `{p}`, a program airlock does not know, which may run it)",
                    step.reason
                );
            } else if step.tier > Tier::Allow {
                step.tier = Tier::Allow;
                step.reason = format!(
                    "looks like a command in the arguments of `{p}`; on its own it would be asked \
                     about ({}), not denied, so it is not held against `{p}`",
                    step.reason
                );
            }
        }
        if inv.unknown_program && step.tier < Tier::Ask {
            if let Some(s) = self.unknown_touches_protected(inv, ctx) {
                return s;
            }
        }
        step
    }

    /// An unknown program given a path that rules protect from writes: it may write it.
    fn unknown_touches_protected(&self, inv: &Invocation, ctx: &Context<'_>) -> Option<Step> {
        let mut probe = inv.clone();
        let named: Vec<_> = inv
            .reads
            .iter()
            .chain(inv.path_args.iter())
            .chain(inv.flags.iter().filter_map(|(_, v)| v.as_ref()))
            .filter(|w| crate::pathname::looks_like_path(w) || w.text.contains("/"))
            .cloned()
            .collect();
        if named.is_empty() {
            return None;
        }
        probe.writes.extend(named);
        let mctx = self.match_ctx(ctx, &self.settings.git_owners);
        let rule = self.rules.iter().find(|r| {
            r.tier >= Tier::Ask
                && r.is_path_rule()
                && !UNKNOWN_PROGRAM_NOT_PROTECTED.contains(&r.id.as_str())
                && r.match_invocation(&probe, &mctx) != Match::No
        })?;
        Some(Step {
            argv: inv.display_argv(),
            origin: inv.origin.clone(),
            tier: Tier::Ask,
            rule: rule_name(rule),
            reason: format!(
                "`{}` is a program airlock does not know, and it is given a protected path \
                 (rule: {}); it may change it, so a person decides",
                inv.program.replace(crate::ir::DYN, "…"),
                rule.reason
            ),
            uncertain: true,
        })
    }

    /// The most severe rule matching `inv`, or the defaults; with `local` (every destination
    /// is this machine) the rules about sending data off it do not apply.
    fn decide_rules(&self, inv: &Invocation, ctx: &Context<'_>, local: bool) -> Step {
        let mctx = self.match_ctx(ctx, &self.settings.git_owners);
        let mut best: Option<(Tier, &Rule, bool)> = None;
        for rule in &self.rules {
            if local && rule.source == "builtin" && LOOPBACK_EXEMPT.contains(&rule.id.as_str()) {
                continue;
            }
            let m = rule.match_invocation(inv, &mctx);
            let (tier, uncertain) = match m {
                Match::No => continue,
                Match::Yes => (rule.tier, false),
                Match::Possible => match rule.tier {
                    Tier::Allow => continue,
                    Tier::Review => (Tier::Review, true),
                    Tier::Ask | Tier::Deny => (Tier::Ask, true),
                },
            };
            if best.is_none_or(|(t, _, _)| tier > t) {
                best = Some((tier, rule, uncertain));
                if tier == Tier::Deny {
                    break;
                }
            }
        }
        let argv = inv.display_argv();
        let origin = inv.origin.clone();
        if let Some((tier, rule, uncertain)) = best {
            let reason = if uncertain {
                format!(
                    "{} (a word only known when the command runs could make this apply)",
                    rule.reason
                )
            } else {
                rule.reason.clone()
            };
            return Step {
                argv,
                origin,
                tier,
                rule: rule_name(rule),
                reason,
                uncertain,
            };
        }
        let s = &self.settings;
        let mut step = Step {
            argv,
            origin,
            tier: s.default,
            rule: "default".into(),
            reason: default_reason(s.default),
            uncertain: false,
        };
        if inv.network && s.default_network > step.tier {
            step.tier = s.default_network;
            step.rule = "default:network".into();
            step.reason = "reaches the network and no rule allows it".into();
        }
        if s.default_write_outside > step.tier {
            let cwd = inv.cwd.as_deref();
            let outside = inv
                .writes
                .iter()
                .map(|w| {
                    let c = categorize(w, cwd, &mctx);
                    if c.names().contains(&"outside-workspace") {
                        Match::Yes
                    } else if matches!(
                        crate::pathname::resolve(w, cwd, &ctx.home),
                        crate::pathname::PathRef::Unknown
                    ) {
                        Match::Possible
                    } else {
                        Match::No
                    }
                })
                .max()
                .unwrap_or(Match::No);
            if outside != Match::No {
                step.tier = s.default_write_outside;
                step.rule = "default:write-outside".into();
                step.reason = if outside == Match::Yes {
                    "writes outside the workspace and no rule allows it".into()
                } else {
                    "writes to a path only known when the command runs".into()
                };
                step.uncertain = outside == Match::Possible;
            }
        }
        step
    }

    /// Decides a non-Bash tool touching a file.
    pub fn classify_file(&self, tool: &str, path: &str, ctx: &Context<'_>) -> Verdict {
        let literal = self.classify_file_as_written(tool, path, ctx);
        // A look-alike name (`.clаude/settings.json`, a zero-width space): also judged as the
        // name it imitates; the stricter decision wins.
        match crate::paths::fold_lookalikes(path) {
            Some(folded) => {
                let mut v = self.classify_file_as_written(tool, &folded, ctx);
                if v.tier > literal.tier {
                    v.reason = format!(
                        "{} ({path:?} imitates {folded:?} with look-alike or invisible characters)",
                        v.reason
                    );
                    v
                } else {
                    literal
                }
            }
            None => literal,
        }
    }

    /// [`Engine::classify_file`] on the path as written and as its links resolve.
    fn classify_file_as_written(&self, tool: &str, path: &str, ctx: &Context<'_>) -> Verdict {
        let abs = abs_path(path, ctx);
        let literal = self.classify_abs_file(tool, &abs, ctx);
        // The hook runs where the file is: decide on where a symbolic link leads as well, and
        // keep the stricter decision.
        match crate::paths::resolve_for(&abs, ctx) {
            Some(real) if real != abs => {
                let mut v = self.classify_abs_file(tool, &real, ctx);
                if v.tier > literal.tier {
                    v.reason = format!("{} ({abs} is a link to {real})", v.reason);
                    v
                } else {
                    literal
                }
            }
            _ => literal,
        }
    }

    fn classify_abs_file(&self, tool: &str, abs: &str, ctx: &Context<'_>) -> Verdict {
        let abs = abs.to_string();
        let write = is_write_tool(tool);
        let mut best: Option<(Tier, &Rule)> = None;
        for rule in &self.rules {
            if rule.match_file(tool, &abs, write) == Match::Yes
                && best.is_none_or(|(t, _)| rule.tier > t)
            {
                best = Some((rule.tier, rule));
            }
        }
        let argv = vec![tool.to_string(), abs.clone()];
        let step = match best {
            Some((tier, rule)) => Step {
                argv,
                origin: String::new(),
                tier,
                rule: rule_name(rule),
                reason: rule.reason.clone(),
                uncertain: false,
            },
            None => {
                let mctx = self.match_ctx(ctx, &self.settings.git_owners);
                let outside = write
                    && categorize(&crate::ir::Word::lit(&abs), Some(&ctx.cwd), &mctx)
                        .names()
                        .contains(&"outside-workspace");
                if outside && self.settings.default_write_outside > self.settings.default {
                    Step {
                        argv,
                        origin: String::new(),
                        tier: self.settings.default_write_outside,
                        rule: "default:write-outside".into(),
                        reason: "writes outside the workspace and no rule allows it".into(),
                        uncertain: false,
                    }
                } else {
                    Step {
                        argv,
                        origin: String::new(),
                        tier: self.settings.default,
                        rule: "default".into(),
                        reason: default_reason(self.settings.default),
                        uncertain: false,
                    }
                }
            }
        };
        Verdict::from_steps(vec![step])
    }

    /// Decides one Claude Code tool call from its name and `tool_input`: on the field the tool
    /// documents (`file_path`, `notebook_path`, `path`, …) and, for the tools that touch
    /// files, on every other string in `tool_input` that looks like a path (a `file_path`
    /// given to NotebookEdit, an unknown key, a Glob `pattern` such as `~/.ssh/*`); the
    /// strictest decision wins.
    pub fn classify_tool(
        &self,
        tool: &str,
        input: &serde_json::Value,
        ctx: &Context<'_>,
    ) -> Verdict {
        let main = self.classify_tool_main(tool, input, ctx);
        if !FILE_TOOLS.contains(&tool) || main.tier == Tier::Deny {
            return main;
        }
        // The documented field was judged above.
        let judged = match tool {
            "Grep" | "Glob" | "LS" => "path",
            "NotebookEdit" | "NotebookRead" if input.get("notebook_path").is_some() => {
                "notebook_path"
            }
            _ => "file_path",
        };
        let mut best = main;
        for p in crate::paths::tool_input_paths(tool, input, &ctx.cwd, judged) {
            let v = self.classify_file(tool, &p, ctx);
            if v.tier > best.tier {
                best = v;
            }
        }
        best
    }

    fn classify_tool_main(
        &self,
        tool: &str,
        input: &serde_json::Value,
        ctx: &Context<'_>,
    ) -> Verdict {
        let str_field = |k: &str| input.get(k).and_then(|v| v.as_str());
        match tool {
            "Bash" => match str_field("command") {
                Some(c) => self.classify_command(c, ctx),
                None => Verdict::single(
                    Tier::Deny,
                    "malformed-input",
                    "Bash tool input has no string `command`",
                ),
            },
            "Write" | "Edit" | "MultiEdit" | "Read" => match str_field("file_path") {
                Some(p) if !p.is_empty() => self.classify_file(tool, p, ctx),
                _ => Verdict::single(
                    Tier::Deny,
                    "malformed-input",
                    format!("{tool} tool input has no string `file_path`"),
                ),
            },
            "NotebookEdit" | "NotebookRead" => {
                match str_field("notebook_path").or_else(|| str_field("file_path")) {
                    Some(p) if !p.is_empty() => self.classify_file(tool, p, ctx),
                    _ => Verdict::single(
                        Tier::Deny,
                        "malformed-input",
                        format!("{tool} tool input has no string `notebook_path`"),
                    ),
                }
            }
            "Grep" | "Glob" | "LS" => match input.get("path") {
                None | Some(serde_json::Value::Null) => self.classify_file(tool, &ctx.cwd, ctx),
                Some(serde_json::Value::String(p)) => self.classify_file(tool, p, ctx),
                Some(_) => Verdict::single(
                    Tier::Deny,
                    "malformed-input",
                    format!("{tool} tool input has a `path` that is not a string"),
                ),
            },
            "TodoWrite" | "Task" | "WebSearch" | "ExitPlanMode" | "BashOutput" | "KillShell"
            | "KillBash" | "SlashCommand" => Verdict::single(
                Tier::Allow,
                "tool:no-side-effects",
                format!("{tool} does not touch files or run commands"),
            ),
            "WebFetch" => match str_field("url") {
                Some(url) if self.normalizer.is_doc_url(url) => Verdict::single(
                    self.settings.default,
                    "tool:webfetch-docs",
                    format!("WebFetch reads a documentation page ({url}) without sending data"),
                ),
                _ => Verdict::single(
                    self.settings.default_network.max(self.settings.default),
                    "default:network",
                    "WebFetch reaches a site that is not on the documentation list; ask the user",
                ),
            },
            other => Verdict::single(
                Tier::Ask,
                "tool:unknown",
                format!("the command gate does not know the tool {other:?}; ask the user"),
            ),
        }
    }
}

/// The path of the program running the gate (the hook's own binary), as written and as it
/// resolves, when it is named `airlock` (not a test binary).
fn own_binary() -> Vec<String> {
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    if exe.file_name().and_then(|n| n.to_str()) != Some("airlock") {
        return Vec::new();
    }
    let mut v = vec![exe.to_string_lossy().into_owned()];
    if let Ok(real) = std::fs::canonicalize(&exe) {
        let real = real.to_string_lossy().into_owned();
        if !v.contains(&real) {
            v.push(real);
        }
    }
    v
}

/// The reason given when no rule applies.
fn default_reason(tier: Tier) -> String {
    match tier {
        Tier::Allow => "no rule applies: it stays in the workspace and off the network, which is \
                        allowed by default"
            .into(),
        t => format!("no rule applies, and the policy's default for such commands is {t}"),
    }
}

/// Whether `command` holds anything but blank lines and comments.
fn has_code(command: &str) -> bool {
    command.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

fn rule_name(rule: &Rule) -> String {
    if rule.source == "builtin" {
        format!("builtin:{}", rule.id)
    } else {
        format!("{}:{}", rule.source, rule.id)
    }
}

fn is_write_tool(tool: &str) -> bool {
    matches!(tool, "Write" | "Edit" | "MultiEdit" | "NotebookEdit")
}

fn abs_path(path: &str, ctx: &Context<'_>) -> String {
    let p = if path == "~" {
        ctx.home.clone()
    } else if let Some(r) = path.strip_prefix("~/") {
        format!("{}/{r}", ctx.home)
    } else {
        path.to_string()
    };
    if p.starts_with('/') {
        crate::pathname::lexical(&p)
    } else {
        crate::pathname::lexical(&format!("{}/{p}", ctx.cwd))
    }
}

/// An untrusted layer may only add deny/ask rules, protected branches and stricter defaults.
fn check_narrowing(
    cfg: &CommandsConfig,
    cur: &Settings,
    path: &std::path::Path,
) -> Result<(), GateError> {
    let widen = |key: &str| {
        Err(GateError::Widening {
            path: path.to_path_buf(),
            key: key.to_string(),
        })
    };
    for (key, new, old) in [
        ("commands.default", cfg.default, cur.default),
        (
            "commands.default_network",
            cfg.default_network,
            cur.default_network,
        ),
        (
            "commands.default_write_outside",
            cfg.default_write_outside,
            cur.default_write_outside,
        ),
    ] {
        if new.is_some_and(|n| n < old) {
            return widen(key);
        }
    }
    if !cfg.git_owners.is_empty() {
        return widen("commands.git_owners");
    }
    if !cfg.disable.is_empty() {
        return widen("commands.disable");
    }
    if cfg.review.is_some() {
        return widen("commands.review");
    }
    for r in &cfg.rule {
        if matches!(r.tier, Some(Tier::Allow | Tier::Review)) {
            return widen(&format!(
                "commands.rule {} (tier {})",
                r.id,
                r.tier.map(Tier::as_str).unwrap_or("")
            ));
        }
    }
    Ok(())
}

/// Counts per tier, for summaries.
pub fn tally<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> BTreeMap<Tier, usize> {
    let mut m = BTreeMap::new();
    for v in verdicts {
        *m.entry(v.tier).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(text: &str, trusted: bool) -> CommandLayer {
        CommandLayer {
            source: PathBuf::from("/p/policy.toml"),
            table: toml::from_str(text).expect("toml"),
            trusted,
        }
    }

    /// The program list build.rs makes for the hook is the one loading the rules would build:
    /// same data, same names, same order.
    #[test]
    fn builtin_known_programs_match_the_loaded_rules() {
        let data: DataFile = toml::from_str(DEFAULT_RULES).expect("rules");
        let (tables, _, specs) = data.into_parts();
        let rules: Vec<Rule> = specs
            .into_iter()
            .map(|s| Rule::compile(s, "builtin", "/root").expect("rule"))
            .collect();
        let names = rules.iter().flat_map(|r| r.program_names());
        let loaded = crate::normalize::known_programs(&tables, names);
        assert_eq!(BUILTIN_KNOWN_PROGRAMS, loaded.as_slice());
        assert!(
            BUILTIN_KNOWN_PROGRAMS.len() > 300,
            "{}",
            BUILTIN_KNOWN_PROGRAMS.len()
        );
    }

    /// The hook's engine (the JSON copy, the build-time program list) decides like the one
    /// loaded from the TOML, whose program list is built when it loads.
    #[test]
    fn hook_engine_decides_like_the_loaded_one() {
        let fast = Engine::builtin().expect("builtin");
        let full = Engine::builtin_with_examples("/root").expect("builtin with examples");
        assert!(matches!(fast.normalizer.known(), KnownPrograms::Builtin(_)));
        // Every entry of the tables the hook parses on first use parses.
        let programs: SpecTable<crate::schema::FlagSpec> = SpecTable::lazy(DEFAULT_PROGRAMS);
        let wrappers: SpecTable<crate::schema::WrapperSpec> = SpecTable::lazy(DEFAULT_WRAPPERS);
        assert!(DEFAULT_PROGRAMS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(DEFAULT_WRAPPERS.windows(2).all(|w| w[0].0 < w[1].0));
        programs.check_all().expect("every program entry parses");
        wrappers.check_all().expect("every wrapper entry parses");
        let data: DataFile = toml::from_str(DEFAULT_RULES).expect("rules");
        let (tables, _, _) = data.into_parts();
        assert!(tables.programs.keys().eq(programs.keys()));
        assert!(tables.wrappers.keys().eq(wrappers.keys()));
        assert!(programs.keys().count() > 150 && wrappers.keys().count() > 80);
        assert!(matches!(full.normalizer.known(), KnownPrograms::Loaded(_)));
        let git = StaticGit::default();
        let ctx = Context {
            cwd: "/root/project".into(),
            home: "/root".into(),
            workspace: Some("/root/project".into()),
            git: &git,
        };
        for cmd in [
            "ls -la",
            "rm -rf ~",
            "/bin/r? -rf /",
            "mkfs.ext4 /dev/sda1",
            "l? ~/.ssh",
            "git push --force origin main",
            "frobnicate sudo id",
            "sh -c 'find src -name \"*.rs\" | xargs grep -l unsafe' | head -5",
            "cat ~/.ss?/id_*",
            "NODE_OPTIONS=\"$X\" node app.js",
            "sudo -n true",
        ] {
            let a = fast.classify_command(cmd, &ctx);
            let b = full.classify_command(cmd, &ctx);
            assert_eq!(
                (a.tier, &a.rule, &a.reason),
                (b.tier, &b.rule, &b.reason),
                "{cmd}"
            );
        }
    }

    /// A home under /tmp is the home: mounting it (or a part of it) into a container leaves the
    /// box, while other scratch paths may be mounted.
    #[test]
    fn containers_may_not_mount_a_home_under_tmp() {
        let engine = Engine::builtin().expect("builtin");
        let git = StaticGit::default();
        let ctx = Context {
            cwd: "/tmp/h/project".into(),
            home: "/tmp/h".into(),
            workspace: Some("/tmp/h/project".into()),
            git: &git,
        };
        for cmd in [
            "docker run -v /tmp/h:/h alpine",
            "docker run -v /tmp/h/.ssh:/k alpine",
            "podman run --volume /tmp/h/.aws:/a:ro alpine",
            "docker run -v ~/.config:/c alpine",
            "docker run --mount type=bind,src=/tmp/h,dst=/h alpine",
            "docker run -v \"$HOME\":/h alpine",
        ] {
            let v = engine.classify_command(cmd, &ctx);
            assert_ne!(v.tier, Tier::Allow, "{cmd}: {}", v.reason);
        }
        for cmd in [
            "docker run -v /tmp/cache:/cache alpine",
            "docker run -v /var/tmp/x:/x alpine",
            "docker run -v /tmp/h/project:/src alpine",
        ] {
            let v = engine.classify_command(cmd, &ctx);
            assert_eq!(v.tier, Tier::Allow, "{cmd}: {}", v.reason);
        }
    }

    fn decide(engine: &Engine, cmd: &str) -> Verdict {
        let git = StaticGit::default();
        let ctx = Context {
            cwd: "/home/u/w".into(),
            home: "/home/u".into(),
            workspace: Some("/home/u/w".into()),
            git: &git,
        };
        engine.classify_command(cmd, &ctx)
    }

    #[test]
    fn user_rules_come_first_and_examples_are_checked() {
        let e = Engine::load(
            &[layer(
                "[[rule]]\nid='no-make'\ntier='deny'\nprogram=['make']\nreason='use just'\nexamples=['make all']\n",
                true,
            )],
            "/home/u",
            false,
        )
        .expect("load");
        let v = decide(&e, "make all");
        assert_eq!(
            (v.tier, v.rule.as_str()),
            (Tier::Deny, "/p/policy.toml:no-make")
        );
        let err = Engine::load(
            &[layer("[[rule]]\nid='bad'\ntier='deny'\nprogram=['make']\nreason='x'\nexamples=['mkae']\n", true)],
            "/home/u",
            false,
        )
        .expect_err("example does not match");
        assert!(
            err.to_string().contains("bad") && err.to_string().contains("mkae"),
            "{err}"
        );
        let err = Engine::load(
            &[layer("[[rule]]\nid='x'\ntier='deny'\nreason='r'\n", true)],
            "/home/u",
            false,
        )
        .expect_err("matches everything");
        assert!(err.to_string().contains("matches everything"), "{err}");
        let err =
            Engine::load(&[layer("typo = 1\n", true)], "/home/u", false).expect_err("unknown key");
        assert!(err.to_string().contains("typo"), "{err}");
    }

    #[test]
    fn untrusted_layers_only_narrow() {
        for bad in [
            "default = 'allow'\ndefault_network = 'allow'\n",
            "git_owners = ['me']\n",
            "disable = ['privilege']\n",
            "[[rule]]\nid='a'\ntier='allow'\nprogram=['sudo']\nreason='x'\n",
            "[review]\nenabled = true\n",
        ] {
            let e = Engine::load(&[layer(bad, false)], "/home/u", false).expect_err(bad);
            assert!(matches!(e, GateError::Widening { .. }), "{bad}: {e}");
        }
        let e = Engine::load(
            &[layer(
                "default = 'ask'\n[[rule]]\nid='a'\ntier='deny'\nprogram=['ls']\nreason='x'\n",
                false,
            )],
            "/home/u",
            false,
        )
        .expect("narrowing is fine");
        assert_eq!(decide(&e, "ls").tier, Tier::Deny);
        assert_eq!(decide(&e, "cat x").tier, Tier::Ask);
    }

    #[test]
    fn disable_and_defaults() {
        let e = Engine::load(
            &[layer(
                "disable = ['privilege']\ndefault_network = 'allow'\n",
                true,
            )],
            "/home/u",
            false,
        )
        .expect("load");
        assert_eq!(decide(&e, "sudo ls").tier, Tier::Allow);
        assert_eq!(decide(&e, "curl https://example.com").tier, Tier::Allow);
        let e = Engine::builtin().expect("load");
        assert_eq!(
            decide(&e, "curl https://example.com").rule,
            "default:network"
        );
        assert_eq!(
            decide(&e, "echo x > /home/u/notes").rule,
            "default:write-outside"
        );
        assert_eq!(decide(&e, "echo x > \"$OUT\"").tier, Tier::Ask);
        // A possible match of a deny rule asks, and says why.
        let v = decide(&e, "rm -rf \"$DIR\"");
        assert_eq!(v.tier, Tier::Ask);
        assert!(
            v.steps[0].uncertain && v.reason.contains("only known when"),
            "{}",
            v.reason
        );
        assert_eq!(decide(&e, "").tier, Tier::Allow);
    }
}
