//! Simple commands: their assignments, words and redirections, the variables they set and the
//! directory they change to.

use brush_parser::ast;

use crate::ir::{KnownVar, Redirect, SimpleCmd, Stdin, Upstream, Word, DYN};

use super::words::join_words;
use super::{ansi_c, ParseError, Var, Walker, MAX_COMMANDS};

impl Walker<'_> {
    /// A simple command: its words, assignments and redirections become a [`SimpleCmd`]
    /// (with the variables, directory and files known when it runs); what it sets, the
    /// directory it changes to and the files it writes are remembered for later commands.
    pub(super) fn simple(
        &mut self,
        s: &ast::SimpleCommand,
        stdin: Stdin,
    ) -> Result<Upstream, ParseError> {
        if self.out.len() >= MAX_COMMANDS {
            return Err(ParseError::TooLarge);
        }
        let parts = self.simple_parts(s, stdin)?;
        self.set_assigned_vars(&parts.assigns, &parts.argv);
        let output = static_output(&parts.argv, &parts.stdin);
        let summary = Upstream {
            argv: parts.argv.clone(),
            output,
            opaque: false,
        };
        let cmd = SimpleCmd {
            assigns: parts.assigns,
            argv: parts.argv,
            redirects: parts.redirects,
            stdin: parts.stdin,
            cwd: self.cwd.clone(),
            origin: self.origin.clone(),
            depth: self.depth,
            downstream: Vec::new(),
            downstream_argv: Vec::new(),
            files: self.files.clone(),
            vars: self.known_vars(),
        };
        self.track_cd(&cmd);
        self.track_files(&cmd, summary.output.as_deref());
        self.out.push(cmd);
        Ok(summary)
    }

    /// The command's prefix items (assignments, redirections), its name, then its suffix
    /// items (arguments, redirections), in order.
    fn simple_parts(
        &mut self,
        s: &ast::SimpleCommand,
        stdin: Stdin,
    ) -> Result<SimpleParts, ParseError> {
        let mut p = SimpleParts {
            assigns: Vec::new(),
            argv: Vec::new(),
            redirects: Vec::new(),
            stdin,
        };
        for item in s.prefix.iter().flat_map(|p| p.0.iter()) {
            self.item(
                item,
                true,
                &mut p.assigns,
                &mut p.argv,
                &mut p.redirects,
                &mut p.stdin,
            )?;
        }
        if let Some(w) = &s.word_or_name {
            p.argv.extend(self.words(&w.value)?);
        }
        for item in s.suffix.iter().flat_map(|p| p.0.iter()) {
            self.item(
                item,
                false,
                &mut p.assigns,
                &mut p.argv,
                &mut p.redirects,
                &mut p.stdin,
            )?;
        }
        Ok(p)
    }

    /// Bare assignments and `export`/`declare`/`local`/`readonly` set variables for later
    /// commands in the same script.
    fn set_assigned_vars(&mut self, assigns: &[(String, Word)], argv: &[Word]) {
        if argv.is_empty() {
            for (name, value) in assigns {
                self.set_var(name, value);
            }
        } else if let Some(p) = argv[0].as_static() {
            if matches!(p, "export" | "declare" | "local" | "readonly" | "typeset") {
                for a in &argv[1..] {
                    if let Some((n, v)) = a.text.split_once('=') {
                        let w = Word {
                            text: v.to_string(),
                            ..Word::lit(v)
                        };
                        self.set_var(n, &w);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn item(
        &mut self,
        item: &ast::CommandPrefixOrSuffixItem,
        in_prefix: bool,
        assigns: &mut Vec<(String, Word)>,
        argv: &mut Vec<Word>,
        redirects: &mut Vec<Redirect>,
        stdin: &mut Stdin,
    ) -> Result<(), ParseError> {
        match item {
            ast::CommandPrefixOrSuffixItem::IoRedirect(io) => {
                self.redirect(io, redirects, stdin)?
            }
            ast::CommandPrefixOrSuffixItem::Word(w) => argv.extend(self.words(&w.value)?),
            ast::CommandPrefixOrSuffixItem::AssignmentWord(a, w) => {
                let value = self.assignment_value(a)?;
                if in_prefix {
                    assigns.push((assignment_name(a), value));
                } else {
                    // `declare x=1`, `export PATH=…`: an argument; its value still expands.
                    let mut word = Word::lit(&w.value);
                    word.text = format!("{}={}", assignment_name(a), value.text);
                    argv.push(word);
                }
            }
            ast::CommandPrefixOrSuffixItem::ProcessSubstitution(kind, sub) => {
                argv.push(self.procsub(kind, sub)?);
            }
        }
        Ok(())
    }

    pub(super) fn track_cd(&mut self, cmd: &SimpleCmd) {
        let Some(prog) = cmd.argv.first().and_then(Word::as_static) else {
            return;
        };
        match prog {
            "cd" | "pushd" => {
                let args: Vec<&Word> = cmd
                    .argv
                    .iter()
                    .skip(1)
                    .filter(|w| !w.text.starts_with('-') || w.text == "-")
                    .collect();
                self.cwd = match args.first() {
                    None => Some(self.env.home.clone()),
                    Some(w) => match (w.as_static(), &self.cwd) {
                        (Some("-"), _) => None,
                        (Some(p), _) if p.starts_with('/') => Some(crate::pathname::lexical(p)),
                        (Some(p), Some(cwd)) => {
                            Some(crate::pathname::lexical(&format!("{cwd}/{p}")))
                        }
                        (None, Some(cwd)) => subdir_of(cwd, &w.text),
                        _ => None,
                    },
                };
            }
            "popd" => self.cwd = None,
            _ => {}
        }
    }

    /// The variables known now, for commands that run code in this shell later.
    pub(super) fn known_vars(&self) -> Vec<(String, KnownVar)> {
        if self.vars.is_empty() {
            return Vec::new();
        }
        let mut v: Vec<(String, KnownVar)> = self
            .vars
            .iter()
            .filter_map(|(n, v)| match v {
                Var::Known(s) => Some((n.clone(), KnownVar::Value(s.clone()))),
                Var::Prefix(s) => Some((n.clone(), KnownVar::Prefix(s.clone()))),
                Var::Unknown => None,
            })
            .take(32)
            .collect();
        v.sort();
        v
    }

    pub(super) fn set_var(&mut self, name: &str, value: &Word) {
        // A variable assigned twice may hold either value: treat it as unknown.
        let v = match (self.vars.get(name), value.as_static()) {
            (None, Some(s)) => Var::Known(s.to_string()),
            // `T=$(mktemp)`, `T=$(mktemp -d)`: a new name under /tmp (mktemp(1)).
            (None, None) if is_mktemp(&value.raw) => Var::Prefix("/tmp/".to_string()),
            _ => Var::Unknown,
        };
        self.vars.insert(name.to_string(), v);
    }

    pub(super) fn assignment_value(&mut self, a: &ast::Assignment) -> Result<Word, ParseError> {
        match &a.value {
            ast::AssignmentValue::Scalar(w) => {
                let words = self.words_nosplit(&w.value)?;
                Ok(join_words(&words, &w.value))
            }
            ast::AssignmentValue::Array(items) => {
                for (k, v) in items {
                    if let Some(k) = k {
                        self.words(&k.value)?;
                    }
                    self.words(&v.value)?;
                }
                Ok(Word::dynamic("(…)"))
            }
        }
    }
}

/// Whether an assignment's value is only `$(mktemp …)` with no directory of its own (`-p`,
/// `--tmpdir=`, a template with a `/`): the name is then under /tmp.
pub(super) fn is_mktemp(raw: &str) -> bool {
    let r = raw.trim_matches('"');
    let Some(inner) = r
        .strip_prefix("$(")
        .and_then(|s| s.strip_suffix(')'))
        .or_else(|| r.strip_prefix('`').and_then(|s| s.strip_suffix('`')))
    else {
        return false;
    };
    let mut words = inner.split_whitespace();
    words.next() == Some("mktemp")
        && words.all(|w| {
            matches!(
                w,
                "-d" | "--directory" | "-u" | "--dry-run" | "-q" | "--quiet" | "-t"
            ) || (!w.starts_with('-') && !w.contains(['/', '$', '`', '~']))
        })
}

pub(super) fn assignment_name(a: &ast::Assignment) -> String {
    match &a.name {
        ast::AssignmentName::VariableName(n) => n.clone(),
        ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
    }
}

/// What a command prints when that is obvious: `echo`/`printf` of static words, `cat` of a
/// static here-document.
pub(super) fn static_output(argv: &[Word], stdin: &Stdin) -> Option<String> {
    let prog = argv.first()?.as_static()?;
    let prog = prog.rsplit('/').next().unwrap_or(prog);
    let args = &argv[1..];
    let all_static = || args.iter().all(|w| !w.is_dynamic());
    match prog {
        "echo" => {
            if !all_static() {
                return None;
            }
            let mut escapes = false;
            let mut rest = args;
            while let Some(first) = rest.first() {
                match first.text.as_str() {
                    "-e" => escapes = true,
                    "-n" | "-E" | "-ne" | "-en" => escapes |= first.text.contains('e'),
                    _ => break,
                }
                rest = &rest[1..];
            }
            let joined = rest
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            Some(if escapes { ansi_c(&joined) } else { joined })
        }
        "printf" => {
            if !all_static() || args.is_empty() {
                return None;
            }
            let fmt = ansi_c(&args[0].text);
            let mut out = String::new();
            let mut vals = args[1..].iter().map(|w| w.text.as_str());
            let mut chars = fmt.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '%' {
                    match chars.next() {
                        Some('%') => out.push('%'),
                        Some(_) => out.push_str(vals.next().unwrap_or("")),
                        None => {}
                    }
                } else {
                    out.push(c);
                }
            }
            for v in vals {
                out.push(' ');
                out.push_str(v);
            }
            Some(out)
        }
        "cat" if args.is_empty() => match stdin {
            Stdin::Text(w) if !w.is_dynamic() => Some(w.text.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `cd "$d"` where `$d` is a `for` variable over `*/` (its value starts with `./`, see
/// [`loop_prefix`]): some subdirectory of `cwd`, written `cwd/…/<DYN>` (one unknown
/// component; a file read under it is code airlock cannot see). `None` for anything else.
pub(super) fn subdir_of(cwd: &str, text: &str) -> Option<String> {
    let t = text.strip_suffix('/').unwrap_or(text);
    let prefix = t.strip_suffix(DYN)?;
    let static_dir = prefix.is_empty()
        || prefix.ends_with('/')
            && !prefix.starts_with(['/', '~'])
            && !prefix.contains(DYN)
            && !prefix.split('/').any(|c| c == "..");
    if !static_dir || prefix.is_empty() {
        return None;
    }
    Some(crate::pathname::lexical(&format!(
        "{}/{prefix}{DYN}",
        cwd.trim_end_matches('/')
    )))
}

/// A simple command's parts as parsed.
#[derive(Debug)]
struct SimpleParts {
    assigns: Vec<(String, Word)>,
    argv: Vec<Word>,
    redirects: Vec<Redirect>,
    stdin: Stdin,
}
