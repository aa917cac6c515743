//! The rules-file schema: the tiers, rule specs and normalisation tables as
//! `rules/default.toml` and the `[commands]` policy layers spell them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The four tiers, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Allow,
    /// Ask the LLM reviewer (when configured; otherwise ask the user).
    Review,
    Ask,
    Deny,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Allow => "allow",
            Tier::Review => "review",
            Tier::Ask => "ask",
            Tier::Deny => "deny",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule as written in TOML.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub tier: Option<Tier>,
    /// Shown to the agent (and the user) when the rule decides.
    #[serde(default)]
    pub reason: String,
    /// Program base names (globs).
    #[serde(default)]
    pub program: Vec<String>,
    /// Subcommands (`push`, `publish`), globs.
    #[serde(default)]
    pub subcommand: Vec<String>,
    /// Canonical flag names; any of them.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Canonical flag names; all of them.
    #[serde(default)]
    pub all_flags: Vec<String>,
    /// Canonical flag names none of which may be present (`crontab` but not `crontab -l`).
    #[serde(default)]
    pub not_flags: Vec<String>,
    /// Globs over positional arguments; any positional matching any glob.
    #[serde(default)]
    pub args: Vec<String>,
    /// Globs over every argument word after quote removal (flags as written too).
    #[serde(default)]
    pub words: Vec<String>,
    /// Globs over the source text of every word as written (`*$GITHUB_TOKEN*`).
    #[serde(default)]
    pub raw: Vec<String>,
    /// Path categories of file arguments: `root`, `system`, `home`, `outside-workspace`,
    /// `workspace-root`.
    #[serde(default)]
    pub target: Vec<String>,
    /// Globs over absolute paths read (`~/` is the home directory; a glob not starting with `/`
    /// or `~` matches at any depth).
    #[serde(default)]
    pub reads: Vec<String>,
    /// Globs over absolute paths written, created or deleted.
    #[serde(default)]
    pub writes: Vec<String>,
    /// Globs over paths read or written.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Names of `NAME=value` assignments in front of the command (globs).
    #[serde(default)]
    pub env: Vec<String>,
    /// `git -c key=value` settings (globs over `key=value`, key lowercased).
    #[serde(default)]
    pub git_config: Vec<String>,
    /// Claude Code tools this rule applies to besides Bash (`Write`, `Edit`, `Read`).
    #[serde(default)]
    pub tool: Vec<String>,
    /// A built-in predicate (see docs/gate.md).
    #[serde(default)]
    pub check: Option<String>,
    /// Matches only when the command has no arguments at all.
    #[serde(default)]
    pub no_args: bool,
    /// Globs over the arguments as written (static words after the program, joined by single
    /// spaces): a command matching one is not matched by this rule (`sudo -n true`, a probe
    /// that runs nothing with privileges, is not `privilege`).
    #[serde(default)]
    pub unless: Vec<String>,
    /// Commands this rule must match; checked when the rules load.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Commands this rule must not match; checked when the rules load.
    #[serde(default)]
    pub not_examples: Vec<String>,
}

/// The built-in data file: normalisation tables and rules. (Spelled out rather than
/// `#[serde(flatten)]`ing [`Tables`]: flatten buffers the whole document and is slow.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataFile {
    #[serde(default)]
    pub programs: BTreeMap<String, crate::schema::FlagSpec>,
    #[serde(default)]
    pub wrappers: BTreeMap<String, crate::schema::WrapperSpec>,
    #[serde(default)]
    pub interpreters: BTreeMap<String, crate::schema::InterpreterSpec>,
    #[serde(default)]
    pub code_scan: crate::schema::CodeScan,
    #[serde(default)]
    pub fetchers: Vec<String>,
    #[serde(default)]
    pub decoders: Vec<String>,
    #[serde(default)]
    pub exec_env: Vec<String>,
    #[serde(default)]
    pub git_exec_keys: Vec<String>,
    #[serde(default)]
    pub secret_env: Vec<String>,
    #[serde(default)]
    pub code_option: Vec<crate::schema::CodeOption>,
    #[serde(default)]
    pub inert: Vec<String>,
    #[serde(default)]
    pub code_option_names: Vec<String>,
    #[serde(default)]
    pub webfetch_docs: Vec<String>,
    #[serde(default)]
    pub speculate: Vec<String>,
    #[serde(default)]
    pub registry_runners: Vec<String>,
    #[serde(default)]
    pub registry_tools: Vec<String>,
    #[serde(default, deserialize_with = "presized")]
    pub rule: Vec<RuleSpec>,
}

/// Deserialises a list into a `Vec` sized up front (for at least 256 items): JSON gives no
/// length, and growing a `Vec` of ~160 rules of ~500 bytes by doubling copies it six times, on
/// every hook call.
fn presized<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Items<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Items<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).clamp(256, 4096));
            while let Some(item) = seq.next_element()? {
                v.push(item);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Items(std::marker::PhantomData))
}

impl DataFile {
    /// Splits the file into the normalisation tables, the secret-variable globs and the rules.
    pub(crate) fn into_parts(self) -> (Tables, Vec<String>, Vec<RuleSpec>) {
        (
            Tables {
                programs: self.programs.into(),
                wrappers: self.wrappers.into(),
                interpreters: self.interpreters,
                code_scan: self.code_scan,
                fetchers: self.fetchers,
                decoders: self.decoders,
                exec_env: self.exec_env,
                git_exec_keys: self.git_exec_keys,
                code_option: self.code_option,
                inert: self.inert,
                code_option_names: self.code_option_names,
                webfetch_docs: self.webfetch_docs,
                speculate: self.speculate,
                registry_runners: self.registry_runners,
                registry_tools: self.registry_tools,
            },
            self.secret_env,
            self.rule,
        )
    }
}

/// How one program spells its options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    /// Short letter → canonical name.
    #[serde(default)]
    pub short: BTreeMap<String, String>,
    /// Long name (or alias) → canonical name.
    #[serde(default)]
    pub long: BTreeMap<String, String>,
    /// Canonical names of options that take a value.
    #[serde(default)]
    pub values: Vec<String>,
    /// The first positional is a subcommand (`git push`), whose own spec is `"git push"`.
    #[serde(default)]
    pub subcommands: bool,
    /// Options are long names after one dash (`find -exec`, `dd if=`).
    #[serde(default)]
    pub single_dash_long: bool,
    /// Every positional names a file (`rm`, `chmod`), not only the path-looking ones.
    #[serde(default)]
    pub path_args: bool,
    /// The positionals are written (deleted, created, modified): `rm`, `touch`, `tee`.
    #[serde(default)]
    pub writes_args: bool,
    /// The last positional is written (`cp`, `mv`, `ln`, `install`).
    #[serde(default)]
    pub writes_last: bool,
    /// Skip this many leading positionals when collecting paths (`chmod MODE FILE…`).
    #[serde(default)]
    pub skip_args: usize,
    /// Canonical names of options whose value is a path that is written (`-o FILE`).
    #[serde(default)]
    pub write_values: Vec<String>,
    /// Reaches the network.
    #[serde(default)]
    pub network: bool,
    /// Words starting with `+` before the subcommand select a toolchain (`cargo +nightly`).
    #[serde(default)]
    pub selectors: bool,
}

/// A program that runs another command given in its arguments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapperSpec {
    /// Option names (short letters or long names) that take a value.
    #[serde(default)]
    pub values: Vec<String>,
    /// Positionals before the command (`timeout DURATION cmd`, `chroot DIR cmd`).
    #[serde(default)]
    pub skip: usize,
    /// Option whose value is a shell string (`su -c`, `flock -c`, `env -S`).
    #[serde(default)]
    pub code_flags: Vec<String>,
    /// The rest of the arguments form one shell string (`watch`, `ssh host cmd`).
    #[serde(default)]
    pub joins: bool,
    /// Options that mean "no command is run" (`command -v`).
    #[serde(default)]
    pub no_run_flags: Vec<String>,
    /// `NAME=value` words before the command are environment (`env`).
    #[serde(default)]
    pub assigns: bool,
    /// Arguments come from stdin and are appended (`xargs`).
    #[serde(default)]
    pub appends_input: bool,
    /// Options after which the rest of the arguments is the command (`nix develop -c CMD…`).
    #[serde(default)]
    pub argv_flags: Vec<String>,
    /// The command is what follows `--`; positionals before it are not run (`mise exec
    /// node@20 -- CMD`).
    #[serde(default)]
    pub dashdash: bool,
    /// Positionals are never a command; only `code_flags` and `argv_flags` run code
    /// (`nix-shell -p pkg --run CMD`).
    #[serde(default)]
    pub no_command: bool,
}

/// An option or argument whose value is code the program runs (`git rebase --exec CMD`,
/// `tar --to-command=CMD`, `ssh -o ProxyCommand=CMD`, `vim -c '!CMD'`): one row of the
/// `[[code_option]]` table in `rules/default.toml`. The value is parsed and judged like `sh -c`;
/// a value only known at run time is code airlock cannot see (ask).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeOption {
    /// Program base names.
    pub program: Vec<String>,
    /// Subcommands (for subcommand programs such as git); empty: any.
    #[serde(default)]
    pub subcommand: Vec<String>,
    /// Options as written (`--exec`, `-x`); `+` stands for `+VALUE` words (`vim +CMD`).
    #[serde(default)]
    pub options: Vec<String>,
    /// The value is code only after `KEY=` or `KEY ` (case-insensitive): `ProxyCommand`.
    #[serde(default)]
    pub key: Option<String>,
    /// Only a value attached to the option counts (`-Ocmd`, `--opt=cmd`): the option's value
    /// is optional.
    #[serde(default)]
    pub attached: bool,
    /// The arguments after one of these words are the code (`git bisect run CMD…`).
    #[serde(default)]
    pub after: Vec<String>,
    /// An argument starting with this prefix is code after it (`ext::CMD` URLs).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The first argument is code (`trap CMD SIGNAL…`).
    #[serde(default)]
    pub first_arg: bool,
    /// Every argument that is not an option is code (`hyperfine CMD…`, `tmux send-keys`).
    #[serde(default)]
    pub each_arg: bool,
    /// Each line of the program's standard input (a here-document or here-string, the text
    /// piped in, or a `< FILE` read where the hook runs) is a value: `ed file <<< '!CMD'`.
    #[serde(default)]
    pub stdin: bool,
    /// How the value runs.
    pub runs: CodeRuns,
    /// A command this row must catch (`sudo id` as the code): checked by the test suite (left
    /// out of the hook's copy of the rules).
    #[serde(default)]
    pub example: String,
}

/// How the value of a [`CodeOption`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodeRuns {
    /// Shell code, as with `sh -c VALUE`.
    Shell,
    /// An editor, pager or debugger command (vim `-c`, less `+`, gdb `-ex`): the text after `!`
    /// (or gdb's `shell `) is shell code; `system(`, `:terminal` and the like are code airlock
    /// cannot see.
    Editor,
    /// A makefile: when the value is `-` or `/dev/stdin`, the recipe lines (and `$(shell …)`)
    /// of the makefile on stdin are shell code.
    Makefile,
    /// A command line (`git bisect run CMD ARGS…`); a single word with spaces is shell code.
    Argv,
    /// Code in another language (`deno eval CODE`): scanned like `python -c`.
    Inline,
    /// Makefile text (`make --eval TEXT`): its recipe lines and `$(shell …)` are shell code.
    MakefileText,
    /// sqlite3 input (`-cmd`, the SQL arguments, a here-document): `.shell`/`.system` and
    /// `'|CMD'` outputs are shell code; `.load` and `.read FILE` are code airlock cannot see.
    Sqlite,
    /// The value names a file of shell code (`bash --rcfile FILE`): read and judged (a
    /// process substitution's code is judged like `sh -c`); a file that cannot be read is code
    /// airlock cannot see.
    ScriptFile,
    /// Database client input (psql(1), mysql(1)): the text after a `\!` (or mysql's `system`)
    /// meta-command, and the command after `\o |`, `\g |`, `\w |`, is shell code; SQL is not.
    DbMeta,
}

/// A language runtime that can be given code inline or on stdin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterpreterSpec {
    /// Program name globs.
    pub programs: Vec<String>,
    /// Options whose value is code (`-c`, `-e`, `--eval`).
    #[serde(default)]
    pub code_flags: Vec<String>,
    /// Options that take a (non-code) value.
    #[serde(default)]
    pub values: Vec<String>,
    /// The first positional is the code (`awk PROGRAM`), unless `file_flags` is given.
    #[serde(default)]
    pub code_positional: bool,
    /// Options naming a code file (`awk -f`).
    #[serde(default)]
    pub file_flags: Vec<String>,
    /// Options after which the interpreter reads no code at all (`python -m`, `--version`).
    #[serde(default)]
    pub no_code_flags: Vec<String>,
    /// The code is shell (`sh -c`): parse and analyse it; otherwise scan it heuristically.
    #[serde(default)]
    pub shell: bool,
}

/// What the text of inline code in another language does, as far as a scan can tell.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CodeScan {
    /// Substrings that run other programs (`os.system`, `child_process`, `system(`).
    pub exec: Vec<String>,
    /// Substrings that open network connections.
    pub network: Vec<String>,
    /// Substrings that delete or overwrite files.
    pub delete: Vec<String>,
    /// Substrings that list or walk a directory tree (`os.walk`, `readdirSync`): with one of
    /// them, the code's paths (the home directory when it names only that) count as listed.
    #[serde(default)]
    pub walk: Vec<String>,
    /// Substrings that write, copy, move, link or chmod files (`writeFileSync`, `write_text`):
    /// with one of them, the path literals of the code count as written.
    #[serde(default)]
    pub write: Vec<String>,
    /// String literals that are file modes for writing (`'w'`, `">>"`): same effect.
    #[serde(default)]
    pub write_modes: Vec<String>,
    /// Text of standard output/error writes, removed before looking for `write` (printing is
    /// not writing a file).
    #[serde(default)]
    pub not_write: Vec<String>,
    /// Substrings that build code or names at run time (`getattr`, `b64decode`, string
    /// concatenation): with one of them, a program run by the code is not known from its
    /// literals alone.
    #[serde(default)]
    pub opaque: Vec<String>,
    /// Substrings that name the home directory (`Path.home()`, `os.homedir()`): relative path
    /// literals may then be under it.
    #[serde(default)]
    pub home: Vec<String>,
    /// Keywords followed by a command written without quotes (`spawn `, `qw(`): the text up
    /// to `;`, a newline or a closing bracket is a command string.
    #[serde(default)]
    pub command_words: Vec<String>,
}

/// A table of specs by program name (`programs`, `wrappers`): either parsed whole (from the
/// TOML), or, in the hook's copy of the built-in rules, kept as JSON text and parsed entry by
/// entry the first time a command names that program (a hook call names a few of ~300).
#[derive(Debug, Clone)]
pub struct SpecTable<T> {
    parsed: BTreeMap<String, T>,
    /// Sorted by name: each entry's JSON text, and its value once parsed.
    lazy: &'static [(&'static str, &'static str)],
    parsed_lazy: Vec<OnceLock<T>>,
}

impl<T> Default for SpecTable<T> {
    fn default() -> Self {
        SpecTable {
            parsed: BTreeMap::new(),
            lazy: &[],
            parsed_lazy: Vec::new(),
        }
    }
}

impl<T> From<BTreeMap<String, T>> for SpecTable<T> {
    fn from(parsed: BTreeMap<String, T>) -> Self {
        SpecTable {
            parsed,
            lazy: &[],
            parsed_lazy: Vec::new(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SpecTable<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(SpecTable::from)
    }
}

impl<T: serde::de::DeserializeOwned> SpecTable<T> {
    /// A table kept as the JSON text of each entry, sorted by name (`build.rs` writes it from
    /// the TOML). An entry that does not parse when it is first used is a bug of the build (the
    /// test suite parses every entry): that panics, and the hook denies.
    pub(crate) fn lazy(entries: &'static [(&'static str, &'static str)]) -> SpecTable<T> {
        SpecTable {
            parsed: BTreeMap::new(),
            lazy: entries,
            parsed_lazy: entries.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    /// The spec of `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        if let Some(t) = self.parsed.get(name) {
            return Some(t);
        }
        let i = self.lazy.binary_search_by(|e| e.0.cmp(name)).ok()?;
        let (key, json) = self.lazy[i];
        Some(
            self.parsed_lazy[i].get_or_init(|| match serde_json::from_str(json) {
                Ok(t) => t,
                Err(e) => panic!("the built-in table entry {key:?} does not parse: {e}"),
            }),
        )
    }

    /// Parses every entry not parsed yet; the first failure names the entry.
    pub fn check_all(&self) -> Result<(), String> {
        for (key, json) in self.lazy {
            serde_json::from_str::<T>(json).map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(())
    }
}

impl<T> SpecTable<T> {
    /// Every name, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.parsed
            .keys()
            .map(String::as_str)
            .chain(self.lazy.iter().map(|e| e.0))
    }
}

/// The normalisation tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    #[serde(default)]
    pub programs: SpecTable<FlagSpec>,
    #[serde(default)]
    pub wrappers: SpecTable<WrapperSpec>,
    #[serde(default)]
    pub interpreters: BTreeMap<String, InterpreterSpec>,
    #[serde(default)]
    pub code_scan: CodeScan,
    /// Programs whose output, piped into a shell, is code from elsewhere: fetchers.
    #[serde(default)]
    pub fetchers: Vec<String>,
    /// Programs that decode or unpack their input (`base64 -d`, `xxd -r`, `gunzip`).
    #[serde(default)]
    pub decoders: Vec<String>,
    /// Environment variables whose value is run as a command (`GIT_SSH_COMMAND`, `PAGER`).
    #[serde(default)]
    pub exec_env: Vec<String>,
    /// `git -c`/`git config` keys whose value is run as a command.
    #[serde(default)]
    pub git_exec_keys: Vec<String>,
    /// Options and arguments whose value is code (see [`CodeOption`]).
    #[serde(default)]
    pub code_option: Vec<CodeOption>,
    /// Programs whose arguments are text, never commands (`echo`, `grep`, `man`): not searched
    /// for hidden commands even though airlock has no table for them.
    #[serde(default)]
    pub inert: Vec<String>,
    /// Option names (globs, without dashes) of programs airlock does not know whose value is
    /// judged as a command that may run (`--exec`, `--on-success`, `--pre-cmd`).
    #[serde(default)]
    pub code_option_names: Vec<String>,
    /// Hosts (globs) whose pages WebFetch may read without asking (documentation).
    #[serde(default)]
    pub webfetch_docs: Vec<String>,
    /// Programs looked for in the arguments of a program airlock does not know (`frob sudo
    /// id`): the heads of dangerous commands, not words that are also common verbs (`format`,
    /// `test`, `build`).
    #[serde(default)]
    pub speculate: Vec<String>,
    /// Runners that fetch a package from a registry and run it (`npx`, `uvx`, `pnpm dlx`):
    /// keys of `wrappers`.
    #[serde(default)]
    pub registry_runners: Vec<String>,
    /// Packages those runners may fetch without asking (well-known development tools).
    #[serde(default)]
    pub registry_tools: Vec<String>,
}
