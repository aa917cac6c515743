//! The command IR: the parser's simple commands and words ([`crate::parse`] makes them) and the
//! normalised invocations ([`crate::normalize`] makes them) that rules match.

/// Stands in for text only known when the command runs (`$X`, `$(…)`).
pub const DYN: char = '\u{0}';

/// One word after quote removal and the static part of expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The value, with [`DYN`] where a run-time expansion sits.
    pub text: String,
    /// The word as written.
    pub raw: String,
    /// Contains an unquoted glob character (`*`, `?`, `[`).
    pub glob: bool,
    /// Came from a process substitution `<(…)` / `>(…)`: `sources` holds its commands.
    pub procsub: Option<Vec<Upstream>>,
}

impl Word {
    /// A static word.
    pub fn lit(s: &str) -> Word {
        Word {
            text: s.to_string(),
            raw: s.to_string(),
            glob: false,
            procsub: None,
        }
    }

    /// A word whose value is not known before the command runs.
    pub fn dynamic(raw: &str) -> Word {
        Word {
            text: DYN.to_string(),
            raw: raw.to_string(),
            glob: false,
            procsub: None,
        }
    }

    /// Whether any part of the value is only known at run time.
    pub fn is_dynamic(&self) -> bool {
        self.text.contains(DYN)
    }

    /// The value if fully static and free of globs.
    pub fn as_static(&self) -> Option<&str> {
        (!self.is_dynamic() && !self.glob).then_some(self.text.as_str())
    }

    /// For display: the static value, with `…` for dynamic parts.
    pub fn display(&self) -> String {
        if self.is_dynamic() {
            self.text.replace(DYN, "…")
        } else {
            self.text.clone()
        }
    }
}

/// A command upstream in a pipeline (or inside a process substitution) feeding this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its argv (first word the program as written).
    pub argv: Vec<Word>,
    /// What it prints, when that is known statically (`echo`, `printf`, `cat <<EOF`).
    pub output: Option<String>,
    /// Whether it is a compound command we cannot summarise.
    pub opaque: bool,
}

/// Where a command's standard input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Stdin {
    /// The caller's (a terminal, or nothing).
    #[default]
    Inherited,
    /// A here-document or here-string with this value.
    Text(Word),
    /// A pipe from these commands (nearest last).
    Pipe(Vec<Upstream>),
    /// A file redirect `< path`.
    File(Word),
}

/// Direction of a file redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirKind {
    Read,
    Write,
}

/// One file redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirKind,
    pub target: Word,
    /// `>>`: the file keeps what it held and gets the output added at its end.
    pub append: bool,
}

/// One simple command as the shell would run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCmd {
    /// `NAME=value` words before the command.
    pub assigns: Vec<(String, Word)>,
    /// The command words; empty for a bare assignment.
    pub argv: Vec<Word>,
    pub redirects: Vec<Redirect>,
    pub stdin: Stdin,
    /// The working directory the command runs in, when known.
    pub cwd: Option<String>,
    /// Where it was found: `""` at top level, else e.g. `$(…)`, `bash -c`.
    pub origin: String,
    /// Nesting depth of the script it was found in.
    pub depth: usize,
    /// Programs later in the same pipeline (this command's output flows to them).
    pub downstream: Vec<String>,
    /// The same commands' static words joined by spaces (`gh auth login --with-token`); a
    /// command with a word only known at run time is left out.
    pub downstream_argv: Vec<String>,
    /// Files written earlier in the same script, by absolute path, with what they hold.
    pub files: Written,
    /// Variables known when it runs (for code it runs in the same shell: `trap`, `eval`).
    pub vars: Vec<(String, KnownVar)>,
}

/// A variable whose value (or the start of it) is known statically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KnownVar {
    /// The whole value.
    Value(String),
    /// The value starts with this (`T=$(mktemp)`: `/tmp/`; a `for` variable over `dir/*`).
    Prefix(String),
}

/// Files written earlier in a script (absolute path, content), shared between the commands
/// that follow (copied only when a command writes another).
pub type Written = std::sync::Arc<Vec<(String, FileContent)>>;

/// What a file written earlier in the same script holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// Text known statically (`echo '…' > x.sh`, `cat > x.sh <<EOF`).
    Text(String),
    /// Downloaded (`curl -o x.sh …`, `wget …/x.sh`).
    Network,
    /// Written, but with content not known here.
    Unknown,
}

/// Facts the parser uses to make words static.
#[derive(Debug, Clone)]
pub struct Env {
    pub home: String,
    pub cwd: String,
}

/// Where the code a shell or interpreter runs comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFrom {
    /// Not a shell or interpreter, or one running a named script file.
    NotCode,
    /// Inline or piped code we could read and analysed.
    Seen,
    /// Code we cannot see: `cat x | sh`, `sh < file`, `eval "$X"`.
    Unseen,
    /// Code fetched from the network (`curl … | sh`, `bash <(wget …)`).
    Network,
    /// Code decoded from an opaque blob (`base64 -d | sh`).
    Decoded,
}

/// Kinds of behaviour found by scanning inline code in another language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InlineKind {
    Exec,
    Network,
    Delete,
    /// A name it calls or imports, or a string it runs, is built at run time (`getattr(os,
    /// 'sys' + 'tem')`, a decoded literal) while it writes, runs or sends: see [`crate::inline`].
    Opaque,
    /// It lists or walks a directory tree (`os.walk`, `readdirSync`, `Dir.glob`).
    Walk,
}

/// One program invocation, normalised.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Program base name (`rm` for `/bin/rm`); [`DYN`] when not static; empty for a bare
    /// assignment or redirect.
    pub program: String,
    /// The program word was a glob (`/bin/r?`) and this is one program it could name.
    pub program_glob: bool,
    pub subcommand: Option<String>,
    /// Canonical flag names with their values.
    pub flags: Vec<(String, Option<Word>)>,
    pub positionals: Vec<Word>,
    /// Every argument after the program, as given (quotes removed).
    pub words: Vec<Word>,
    pub assigns: Vec<(String, Word)>,
    /// Paths read and written (redirects, known readers and writers, path-looking arguments).
    pub reads: Vec<Word>,
    pub writes: Vec<Word>,
    /// Arguments that name files (for `target` matching).
    pub path_args: Vec<Word>,
    /// Raw source of every word, for matching what was written (`$GITHUB_TOKEN`).
    pub raw: Vec<String>,
    pub cwd: Option<String>,
    pub origin: String,
    pub code_from: CodeFrom,
    pub inline: Vec<InlineKind>,
    /// `git -c key=value` pairs.
    pub git_config: Vec<(String, String)>,
    pub network: bool,
    /// Nested code that could not be parsed (shown in the reason).
    pub unparsed: Option<String>,
    /// Programs this command's output is piped to.
    pub downstream: Vec<String>,
    /// Those commands' static words joined by spaces (see [`crate::ir::SimpleCmd`]).
    pub downstream_argv: Vec<String>,
    /// The program is not one airlock knows (no table, no rule, not inert): its path arguments
    /// may be written and its arguments may hide a command.
    pub unknown_program: bool,
    /// Found in the arguments of this program, which airlock does not know: it may run it.
    pub speculative: Option<String>,
    /// Files written earlier in the same tool call (absolute path, content), for rule
    /// predicates that read project files (`compose-host-access`).
    pub written: Written,
}

impl Invocation {
    /// The normalised argv for display: program, subcommand, flags, positionals.
    pub fn display_argv(&self) -> Vec<String> {
        let mut v = Vec::new();
        let prog = if self.program.is_empty() {
            "(assignment)".to_string()
        } else {
            self.program.replace(DYN, "…")
        };
        v.push(prog);
        if let Some(s) = &self.subcommand {
            v.push(s.replace(DYN, "…"));
        }
        for (name, val) in &self.flags {
            let short = name.chars().count() == 1;
            match (val, short) {
                (Some(w), true) => {
                    v.push(format!("-{name}"));
                    v.push(w.display());
                }
                (Some(w), false) => v.push(format!("--{name}={}", w.display())),
                (None, true) => v.push(format!("-{name}")),
                (None, false) => v.push(format!("--{name}")),
            }
        }
        v.extend(self.positionals.iter().map(Word::display));
        v
    }

    /// Whether a flag with canonical `name` is present.
    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }
}
