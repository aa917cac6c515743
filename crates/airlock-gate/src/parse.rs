//! Bash source → a flat list of simple commands with static or dynamic words (our small IR).
//!
//! brush-parser gives the AST; this module walks every place a simple command can hide
//! (pipelines, lists, subshells, groups, loops, functions, command and process substitutions,
//! parameter-expansion defaults, arithmetic) and turns each word into its static value where the
//! shell would compute it without running anything (quotes, escapes, `$'…'`, `~`, `$HOME`,
//! brace expansion, variables assigned earlier in the same script). Anything else is marked
//! dynamic with [`DYN`] in place of the unknown text.

use std::collections::HashMap;

use crate::ir::{
    Env, FileContent, KnownVar, RedirKind, Redirect, SimpleCmd, Stdin, Upstream, Word, Written, DYN,
};
use brush_parser::ast;
use brush_parser::word::{
    BraceExpressionMember, BraceExpressionOrText, Parameter, ParameterExpr, SpecialParameter,
    TildeExpr, WordPiece, WordPieceWithSource,
};

/// Most nested scripts (`bash -c "$(…)"` inside `eval` …) analysed before giving up.
pub const MAX_DEPTH: usize = 12;
/// Most simple commands collected from one input before giving up.
const MAX_COMMANDS: usize = 4096;
/// Most values of a `for` loop over words known here whose body is walked once per value.
const MAX_LOOP_VALUES: usize = 8;
/// Most extra walks of loop bodies in one script (bounds `for a in …; do for b in …` nests).
const MAX_LOOP_WALKS: usize = 16;
/// Most bytes of written-file text copied while tracking one script's writes; past it the
/// files keep their names but their content becomes unknown (a later run of one asks).
const MAX_TRACKED_COPY: usize = 8 * 1024 * 1024;
/// Deepest parenthesis nesting parsed (brush-parser slows down exponentially past ~20).
const MAX_PAREN_DEPTH: usize = 16;
/// Most `{` in one word before brace expansion is not attempted.
const MAX_BRACES_IN_WORD: usize = 8;
/// Most commands in one pipeline (each reader keeps what feeds it: quadratic).
const MAX_PIPELINE: usize = 64;
/// Most words in one input.
const MAX_WORDS: usize = 20_000;
/// Most words one brace expansion may produce.
const MAX_BRACE: usize = 64;

/// Why a script could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("cannot parse shell syntax: {0}")]
    Syntax(String),
    #[error("command is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("command has more than {MAX_COMMANDS} simple commands")]
    TooLarge,
    #[error("a pipeline has more than {MAX_PIPELINE} commands")]
    PipelineTooLong,
    #[error("command has more than {MAX_WORDS} words")]
    TooManyWords,
    #[error("command hides too many commands inside other commands to analyse them all")]
    TooMuchNesting,
}

/// Parses `src` and returns every simple command in it, in source order.
pub fn parse(
    src: &str,
    env: &Env,
    origin: &str,
    depth: usize,
) -> Result<Vec<SimpleCmd>, ParseError> {
    parse_with(src, env, origin, depth, &[])
}

/// [`parse`] with variables already known (code run by `trap` or `eval` in the same shell;
/// for `sh -c` they hold only if exported, and an unset one is empty: no less strict).
pub fn parse_with(
    src: &str,
    env: &Env,
    origin: &str,
    depth: usize,
    known: &[(String, KnownVar)],
) -> Result<Vec<SimpleCmd>, ParseError> {
    let vars = known
        .iter()
        .map(|(n, v)| {
            let v = match v {
                KnownVar::Value(s) => Var::Known(s.clone()),
                KnownVar::Prefix(s) => Var::Prefix(s.clone()),
            };
            (n.clone(), v)
        })
        .collect();
    let mut w = Walker {
        env,
        words_seen: 0,
        files: Written::default(),
        out: Vec::new(),
        vars,
        cwd: Some(env.cwd.clone()),
        origin: origin.to_string(),
        depth,
        src: String::new(),
        loop_walks: MAX_LOOP_WALKS,
        copy_budget: MAX_TRACKED_COPY,
    };
    w.script(src)?;
    Ok(w.out)
}

/// Parses `src` into a brush AST.
pub fn parse_ast(src: &str) -> Result<ast::Program, ParseError> {
    // brush-parser 0.4 unwraps `parse::<i32>()` of a redirect's fd number: `9999999999>x` panics.
    if digit_run_before(src, 10, ['<', '>']) {
        return Err(ParseError::Syntax(
            "file descriptor number too large".into(),
        ));
    }
    // Its grammar also backtracks exponentially on deeply nested parentheses (`((((…`).
    if paren_depth(src) > MAX_PAREN_DEPTH {
        return Err(ParseError::Syntax(format!(
            "parentheses nested more than {MAX_PAREN_DEPTH} deep"
        )));
    }
    let opts = brush_parser::ParserOptions::default();
    guarded(|| {
        let mut parser = brush_parser::Parser::new(std::io::Cursor::new(src.as_bytes()), &opts);
        parser
            .parse_program()
            .map_err(|e| ParseError::Syntax(e.to_string()))
    })
}

/// Runs a brush-parser call, turning a panic inside it into a parse error (defence in depth:
/// the known panics are avoided up front).
fn guarded<T>(f: impl FnOnce() -> Result<T, ParseError>) -> Result<T, ParseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(ParseError::Syntax(
            "the shell parser failed on this input".into(),
        ))
    })
}

/// Whether `s` has a run of at least `min` ASCII digits directly followed by one of `next`.
fn digit_run_before<const N: usize>(s: &str, min: usize, next: [char; N]) -> bool {
    let mut run = 0usize;
    for c in s.chars() {
        if c.is_ascii_digit() {
            run += 1;
        } else {
            if run >= min && next.contains(&c) {
                return true;
            }
            run = 0;
        }
    }
    false
}

/// Deepest nesting of `(` outside single quotes (a cheap over-estimate of the shell's).
fn paren_depth(s: &str) -> usize {
    let (mut depth, mut max, mut single, mut escaped) = (0usize, 0usize, false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' => single = !single,
            '(' if !single => {
                depth += 1;
                max = max.max(depth);
            }
            ')' if !single => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Whether an assignment's value is only `$(mktemp …)` with no directory of its own (`-p`,
/// `--tmpdir=`, a template with a `/`): the name is then under /tmp.
fn is_mktemp(raw: &str) -> bool {
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

/// What every value of a `for` loop over static words starts with, up to a `/`: `dir/` for
/// `dir/*.txt dir/b`, `./` for relative names in the current directory (`*.rs`).
fn loop_prefix(values: &[Word]) -> Var {
    if values.is_empty() || values.iter().any(Word::is_dynamic) {
        return Var::Unknown;
    }
    let dir = |w: &Word| -> String {
        let t = &w.text;
        let stop = if w.glob {
            t.find(['*', '?', '[']).unwrap_or(t.len())
        } else {
            t.len()
        };
        match t[..stop].rfind('/') {
            Some(i) => t[..=i].to_string(),
            None => String::new(),
        }
    };
    let first = dir(&values[0]);
    if values.iter().any(|w| dir(w) != first) {
        return Var::Unknown;
    }
    if first.is_empty() {
        // Names in the current directory: `-rf` or `/` cannot be one of them unless written.
        if values
            .iter()
            .any(|w| w.text.starts_with(['-', '/', '~']) || w.text.split('/').any(|c| c == ".."))
        {
            return Var::Unknown;
        }
        return Var::Prefix("./".to_string());
    }
    if first.starts_with("../") || first.contains("/../") {
        return Var::Unknown;
    }
    Var::Prefix(first)
}

/// Whether `text` (the inside of `(( … ))` or `$(( … ))`) parses as an arithmetic expression.
/// Expansions (`$x`, `${x}`, `$(…)`) are replaced by a number first: they are walked apart.
fn is_arithmetic(text: &str) -> bool {
    let mut s = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            s.push(c);
            continue;
        }
        match chars.peek() {
            Some('{') | Some('(') => {
                let (open, close) = if chars.peek() == Some(&'{') {
                    ('{', '}')
                } else {
                    ('(', ')')
                };
                let mut depth = 0usize;
                for d in chars.by_ref() {
                    if d == open {
                        depth += 1;
                    } else if d == close {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            break;
                        }
                    }
                }
            }
            _ => {
                while chars.peek().is_some_and(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '_' | '#' | '?' | '@' | '*' | '!' | '-')
                }) {
                    chars.next();
                }
            }
        }
        s.push('1');
    }
    if s.trim().is_empty() {
        return true;
    }
    std::panic::catch_unwind(|| brush_parser::arithmetic::parse(&s).is_ok()).unwrap_or(false)
}

/// Whether `s` has a run of at least `min` ASCII digits anywhere.
fn has_digit_run(s: &str, min: usize) -> bool {
    let mut run = 0usize;
    for c in s.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= min {
            return true;
        }
    }
    false
}

#[derive(Debug, Clone)]
enum Var {
    Known(String),
    /// A value known to start with this text (a `for` variable over `dir/*.txt`: `dir/`).
    Prefix(String),
    Unknown,
}

struct Walker<'a> {
    env: &'a Env,
    words_seen: usize,
    files: Written,
    out: Vec<SimpleCmd>,
    vars: HashMap<String, Var>,
    cwd: Option<String>,
    origin: String,
    depth: usize,
    /// The text of the script being walked (AST locations index into it).
    src: String,
    /// Extra walks of `for` loop bodies left (one per loop value past the first).
    loop_walks: usize,
    /// Bytes of written-file text left to copy when a command writes another file (see
    /// [`MAX_TRACKED_COPY`]).
    copy_budget: usize,
}

impl Walker<'_> {
    fn script(&mut self, src: &str) -> Result<(), ParseError> {
        if self.depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        let program = parse_ast(src)?;
        let saved = std::mem::replace(&mut self.src, src.to_string());
        let r = program
            .complete_commands
            .iter()
            .try_for_each(|cc| self.compound_list(cc));
        self.src = saved;
        r
    }

    /// Parses and walks nested source (command substitution etc.) with its own origin.
    fn nested(&mut self, src: &str, origin: &str) -> Result<(), ParseError> {
        let saved_origin = std::mem::replace(&mut self.origin, origin.to_string());
        self.depth += 1;
        let r = self.script(src);
        self.depth -= 1;
        self.origin = saved_origin;
        r
    }

    fn compound_list(&mut self, list: &ast::CompoundList) -> Result<(), ParseError> {
        for item in &list.0 {
            self.and_or(&item.0)?;
        }
        Ok(())
    }

    fn and_or(&mut self, list: &ast::AndOrList) -> Result<(), ParseError> {
        self.pipeline(&list.first)?;
        for next in &list.additional {
            match next {
                ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p)?,
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &ast::Pipeline) -> Result<(), ParseError> {
        if p.seq.len() > MAX_PIPELINE {
            return Err(ParseError::PipelineTooLong);
        }
        let mut upstream: Vec<Upstream> = Vec::new();
        let mut ranges = Vec::with_capacity(p.seq.len());
        for (i, cmd) in p.seq.iter().enumerate() {
            let stdin = if i == 0 {
                Stdin::Inherited
            } else {
                Stdin::Pipe(upstream.clone())
            };
            let before = self.out.len();
            let summary = self.command(cmd, stdin)?;
            ranges.push(before..self.out.len());
            upstream.push(summary);
        }
        // Tell each command which programs read its output.
        for (i, r) in ranges.iter().enumerate() {
            let later: Vec<String> = upstream[i + 1..]
                .iter()
                .flat_map(|u| u.argv.first())
                .filter(|w| !w.is_dynamic())
                .map(|w| w.text.rsplit('/').next().unwrap_or(&w.text).to_string())
                .collect();
            let later_argv: Vec<String> = upstream[i + 1..]
                .iter()
                .filter(|u| u.argv.iter().all(|w| !w.is_dynamic()))
                .map(|u| {
                    let v: Vec<&str> = u.argv.iter().map(|w| w.text.as_str()).collect();
                    v.join(" ")
                })
                .collect();
            if !later.is_empty() {
                for c in &mut self.out[r.clone()] {
                    c.downstream.extend(later.iter().cloned());
                    c.downstream_argv.extend(later_argv.iter().cloned());
                }
            }
        }
        Ok(())
    }

    /// Walks one command; returns what it looks like to a pipe reader downstream.
    fn command(&mut self, cmd: &ast::Command, stdin: Stdin) -> Result<Upstream, ParseError> {
        match cmd {
            ast::Command::Simple(s) => self.simple(s, stdin),
            ast::Command::Compound(c, redirs) => {
                let start = self.out.len();
                self.compound(c)?;
                if let Some(r) = redirs {
                    let mut extra = Vec::new();
                    let mut inner_stdin = stdin;
                    for io in &r.0 {
                        self.redirect(io, &mut extra, &mut inner_stdin)?;
                    }
                    // Redirects of a compound apply to every command inside it.
                    for c in &mut self.out[start..] {
                        c.redirects.extend(extra.iter().cloned());
                        if c.stdin == Stdin::Inherited {
                            c.stdin = inner_stdin.clone();
                        }
                    }
                } else if stdin != Stdin::Inherited {
                    for c in &mut self.out[start..] {
                        if c.stdin == Stdin::Inherited {
                            c.stdin = stdin.clone();
                        }
                    }
                }
                Ok(self.opaque_summary(start))
            }
            ast::Command::Function(f) => {
                // A function body is analysed where it is defined, whether or not it is called.
                let name = f.fname.value.clone();
                let origin = format!("function {name}");
                let saved = std::mem::replace(&mut self.origin, origin);
                self.compound(&f.body.0)?;
                self.origin = saved;
                // A function that pipes into or backgrounds itself: a fork bomb.
                let body = f.body.to_string();
                if body.matches(name.as_str()).count() >= 2
                    && body.contains('|')
                    && body.contains('&')
                {
                    self.out.push(SimpleCmd {
                        assigns: Vec::new(),
                        argv: vec![Word::lit("(fork-bomb)"), Word::lit(&name)],
                        redirects: Vec::new(),
                        stdin: Stdin::Inherited,
                        cwd: self.cwd.clone(),
                        origin: format!("function {name}"),
                        depth: self.depth,
                        downstream: Vec::new(),
                        downstream_argv: Vec::new(),
                        files: Written::default(),
                        vars: Vec::new(),
                    });
                }
                Ok(Upstream {
                    argv: Vec::new(),
                    output: Some(String::new()),
                    opaque: false,
                })
            }
            ast::Command::ExtendedTest(t, _) => {
                self.ext_test(&t.expr)?;
                Ok(Upstream {
                    argv: vec![Word::lit("[[")],
                    output: Some(String::new()),
                    opaque: false,
                })
            }
        }
    }

    fn opaque_summary(&self, start: usize) -> Upstream {
        // A compound's output is what its commands print: summarise it by its commands so a
        // reader can still see e.g. `{ curl …; } | sh`.
        let argv = self.out[start..]
            .iter()
            .filter_map(|c| c.argv.first().cloned())
            .collect();
        Upstream {
            argv,
            output: None,
            opaque: true,
        }
    }

    fn ext_test(&mut self, e: &ast::ExtendedTestExpr) -> Result<(), ParseError> {
        use ast::ExtendedTestExpr as E;
        match e {
            E::And(a, b) | E::Or(a, b) => {
                self.ext_test(a)?;
                self.ext_test(b)
            }
            E::Not(a) | E::Parenthesized(a) => self.ext_test(a),
            E::UnaryTest(_, w) => self.words(&w.value).map(|_| ()),
            E::BinaryTest(_, a, b) => {
                self.words(&a.value)?;
                self.words(&b.value).map(|_| ())
            }
        }
    }

    fn compound(&mut self, c: &ast::CompoundCommand) -> Result<(), ParseError> {
        use ast::CompoundCommand as C;
        match c {
            C::Arithmetic(a) => {
                // brush-parser takes `( ( cmd ) )` for `(( … ))` and flattens its text (a
                // here-document's newlines become spaces): when it is not arithmetic, walk the
                // source as bash does, as `( ( … ) )`.
                // Written `( (` (apart), it is never arithmetic in bash, whatever the text.
                let written = self.src.get(a.loc.start.index..a.loc.end.index);
                let apart = written.is_some_and(|s| !s.starts_with("(("));
                let span = written
                    .and_then(|s| s.strip_prefix('('))
                    .and_then(|s| s.strip_suffix(')'))
                    .map(str::to_string);
                match span {
                    Some(inner) if apart || !is_arithmetic(&a.expr.value) => {
                        let saved_cwd = self.cwd.clone();
                        let origin = self.origin.clone();
                        let r = self.nested(&inner, &origin);
                        self.cwd = saved_cwd;
                        r
                    }
                    _ => self.arith(&a.expr.value),
                }
            }
            C::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater]
                    .into_iter()
                    .flatten()
                {
                    self.arith(&e.value)?;
                }
                self.compound_list(&f.body.list)
            }
            C::BraceGroup(b) => self.compound_list(&b.list),
            C::Subshell(s) => {
                let saved = self.cwd.clone();
                let r = self.compound_list(&s.list);
                self.cwd = saved;
                r
            }
            C::ForClause(f) => {
                if let Some(values) = &f.values {
                    let mut all = Vec::new();
                    for v in values {
                        all.extend(self.words(&v.value)?);
                    }
                    // Over a few words known here (`for n in 1 2 3`), the body is walked once
                    // for each value, with the variable known.
                    let listed = all.len() >= 2
                        && all.len() <= MAX_LOOP_VALUES
                        && all.len() - 1 <= self.loop_walks
                        && all.iter().all(|w| !w.is_dynamic() && !w.glob);
                    if listed {
                        self.loop_walks -= all.len() - 1;
                        for v in &all {
                            self.vars
                                .insert(f.variable_name.clone(), Var::Known(v.text.clone()));
                            self.compound_list(&f.body.list)?;
                        }
                        return Ok(());
                    }
                    // The loop variable takes each value: known only if there is one.
                    let var = match all.as_slice() {
                        [one] if !one.is_dynamic() && !one.glob => Var::Known(one.text.clone()),
                        _ => loop_prefix(&all),
                    };
                    self.vars.insert(f.variable_name.clone(), var);
                } else {
                    self.vars.insert(f.variable_name.clone(), Var::Unknown);
                }
                self.compound_list(&f.body.list)
            }
            C::CaseClause(cc) => {
                self.words(&cc.value.value)?;
                for item in &cc.cases {
                    for p in &item.patterns {
                        self.words(&p.value)?;
                    }
                    if let Some(cmd) = &item.cmd {
                        self.compound_list(cmd)?;
                    }
                }
                Ok(())
            }
            C::IfClause(i) => {
                self.compound_list(&i.condition)?;
                self.compound_list(&i.then)?;
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        self.compound_list(c)?;
                    }
                    self.compound_list(&e.body)?;
                }
                Ok(())
            }
            C::WhileClause(w) | C::UntilClause(w) => {
                self.compound_list(&w.0)?;
                self.compound_list(&w.1.list)
            }
            C::Coprocess(c) => {
                self.command(&c.body, Stdin::Inherited)?;
                Ok(())
            }
        }
    }

    /// Arithmetic text may hold `$(…)` or backquotes, which run. And text that is not an
    /// arithmetic expression is commands: brush-parser reads `( ( cat x ) )` (nested subshells)
    /// as `(( … ))`, where bash falls back to subshells; so walk it as a script too.
    fn arith(&mut self, text: &str) -> Result<(), ParseError> {
        if text.contains("$(") || text.contains('`') || text.contains("${") {
            let quoted = format!("\"{}\"", text.replace('"', "\\\""));
            self.words(&quoted)?;
        }
        if !is_arithmetic(text) {
            let saved_cwd = self.cwd.clone();
            let origin = self.origin.clone();
            let r = self.nested(text, &origin);
            self.cwd = saved_cwd;
            r?;
        }
        Ok(())
    }

    fn simple(&mut self, s: &ast::SimpleCommand, stdin: Stdin) -> Result<Upstream, ParseError> {
        if self.out.len() >= MAX_COMMANDS {
            return Err(ParseError::TooLarge);
        }
        let mut assigns = Vec::new();
        let mut argv: Vec<Word> = Vec::new();
        let mut redirects = Vec::new();
        let mut stdin = stdin;
        for item in s.prefix.iter().flat_map(|p| p.0.iter()) {
            self.item(
                item,
                true,
                &mut assigns,
                &mut argv,
                &mut redirects,
                &mut stdin,
            )?;
        }
        if let Some(w) = &s.word_or_name {
            argv.extend(self.words(&w.value)?);
        }
        for item in s.suffix.iter().flat_map(|p| p.0.iter()) {
            self.item(
                item,
                false,
                &mut assigns,
                &mut argv,
                &mut redirects,
                &mut stdin,
            )?;
        }
        // Bare assignments and `export`/`declare`/`local`/`readonly` set variables for later
        // commands in the same script.
        if argv.is_empty() {
            for (name, value) in &assigns {
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
        let output = static_output(&argv, &stdin);
        let summary = Upstream {
            argv: argv.clone(),
            output,
            opaque: false,
        };
        let cmd = SimpleCmd {
            assigns,
            argv,
            redirects,
            stdin,
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

    #[allow(clippy::too_many_arguments)]
    fn item(
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

    fn track_cd(&mut self, cmd: &SimpleCmd) {
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

    /// Remembers files this command writes, for a later `bash x.sh` / `./x.sh` in the script.
    fn track_files(&mut self, cmd: &SimpleCmd, output: Option<&str>) {
        let abs = |w: &Word, cwd: &Option<String>| -> Option<String> {
            let t = w.as_static()?;
            if t.starts_with('/') {
                Some(crate::pathname::lexical(t))
            } else {
                cwd.as_ref()
                    .map(|c| crate::pathname::lexical(&format!("{c}/{t}")))
            }
        };
        // Each write copies the texts tracked so far: past the budget they become unknown.
        let held: usize = self
            .files
            .iter()
            .map(|(_, c)| match c {
                FileContent::Text(t) => t.len(),
                _ => 0,
            })
            .sum();
        // What a file held before this command (for `>>` and `tee -a`).
        let before = self.files.clone();
        let prior = |p: &str| prior_content(&before, p);
        let mut record = |path: Option<String>, content: FileContent| {
            if let Some(p) = path {
                if held > self.copy_budget {
                    let names: Vec<(String, FileContent)> = self
                        .files
                        .iter()
                        .map(|(p, _)| (p.clone(), FileContent::Unknown))
                        .collect();
                    self.files = std::sync::Arc::new(names);
                    self.copy_budget = 0;
                } else {
                    self.copy_budget -= held;
                }
                let content = if self.copy_budget == 0 {
                    FileContent::Unknown
                } else {
                    content
                };
                let files = std::sync::Arc::make_mut(&mut self.files);
                files.retain(|(q, _)| *q != p);
                if files.len() < 64 {
                    files.push((p, content));
                }
            }
        };
        for r in &cmd.redirects {
            if r.kind == RedirKind::Write {
                let path = abs(&r.target, &cmd.cwd);
                let content = match output {
                    Some(t) if r.append => path
                        .as_deref()
                        .map_or(FileContent::Unknown, |p| appended(&prior(p), t)),
                    Some(t) => FileContent::Text(t.to_string()),
                    None => FileContent::Unknown,
                };
                record(path, content);
            }
        }
        let Some(prog) = cmd.argv.first().and_then(Word::as_static) else {
            return;
        };
        let prog = prog.rsplit('/').next().unwrap_or(prog);
        let args = &cmd.argv[1..];
        match prog {
            "curl" | "wget" | "aria2c" | "fetch" | "http" | "xh" => {
                for (i, a) in args.iter().enumerate() {
                    let t = a.text.as_str();
                    let next = args.get(i + 1);
                    if matches!(t, "-o" | "--output" | "-O" | "--output-document") {
                        if let Some(n) = next.filter(|n| n.text != "-" && !n.text.contains("://")) {
                            record(abs(n, &cmd.cwd), FileContent::Network);
                        }
                    } else if let Some(v) = t
                        .strip_prefix("--output=")
                        .or_else(|| t.strip_prefix("--output-document="))
                    {
                        record(abs(&Word::lit(v), &cmd.cwd), FileContent::Network);
                    } else if t.contains("://") {
                        // `curl -O URL`, `wget URL`: saved under the URL's last segment.
                        let name = t
                            .split(['?', '#'])
                            .next()
                            .unwrap_or(t)
                            .rsplit('/')
                            .next()
                            .unwrap_or("");
                        if !name.is_empty() {
                            record(abs(&Word::lit(name), &cmd.cwd), FileContent::Network);
                        }
                    }
                }
            }
            // In-place editors: the files they edit hold what airlock cannot see.
            "sed" | "gsed" | "perl" | "ruby"
                if args.iter().any(|a| {
                    a.text == "-i"
                        || a.text.starts_with("--in-place")
                        || (a.text.starts_with('-')
                            && !a.text.starts_with("--")
                            && a.text[1..].contains('i'))
                }) =>
            {
                for a in args.iter().filter(|a| !a.text.starts_with('-')) {
                    record(abs(a, &cmd.cwd), FileContent::Unknown);
                }
            }
            // Inline interpreter code that writes (`python3 -c "open('Makefile','w')…"`, a
            // heredoc on stdin): each quoted name in it may now hold what airlock cannot see.
            _ if is_interpreter(prog) => {
                let code: Vec<&str> = args
                    .iter()
                    .map(|a| a.text.as_str())
                    .chain(match &cmd.stdin {
                        Stdin::Text(w) => Some(w.text.as_str()),
                        _ => None,
                    })
                    .collect();
                if code.iter().any(|c| writes_files(c)) {
                    for c in &code {
                        for name in quoted_names(c) {
                            record(abs(&Word::lit(&name), &cmd.cwd), FileContent::Unknown);
                        }
                    }
                }
            }
            // `npm pkg set scripts.x=…`: package.json gets content airlock does not compute.
            "npm" | "pnpm" | "yarn" | "bun"
                if args.iter().any(|a| a.text == "pkg")
                    && args
                        .iter()
                        .any(|a| matches!(a.text.as_str(), "set" | "delete" | "fix")) =>
            {
                record(
                    abs(&Word::lit("package.json"), &cmd.cwd),
                    FileContent::Unknown,
                );
            }
            "tee" | "cp" | "mv" | "install" | "dd" | "touch" | "ln" | "rsync" => {
                for a in args.iter().filter(|a| !a.text.starts_with('-')) {
                    let t = a.text.strip_prefix("of=").unwrap_or(&a.text);
                    if prog == "tee" {
                        let append = args.iter().any(|a| a.text == "-a" || a.text == "--append");
                        let path = abs(&Word::lit(t), &cmd.cwd);
                        let c = match (output_of_stdin(&cmd.stdin), path.as_deref()) {
                            (Some(t), Some(p)) if append => appended(&prior(p), &t),
                            (Some(t), _) => FileContent::Text(t),
                            (None, _) => FileContent::Unknown,
                        };
                        record(path, c);
                    } else if prog != "touch" {
                        record(abs(&Word::lit(t), &cmd.cwd), FileContent::Unknown);
                    }
                }
            }
            _ => {}
        }
    }

    /// The variables known now, for commands that run code in this shell later.
    fn known_vars(&self) -> Vec<(String, KnownVar)> {
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

    fn set_var(&mut self, name: &str, value: &Word) {
        // A variable assigned twice may hold either value: treat it as unknown.
        let v = match (self.vars.get(name), value.as_static()) {
            (None, Some(s)) => Var::Known(s.to_string()),
            // `T=$(mktemp)`, `T=$(mktemp -d)`: a new name under /tmp (mktemp(1)).
            (None, None) if is_mktemp(&value.raw) => Var::Prefix("/tmp/".to_string()),
            _ => Var::Unknown,
        };
        self.vars.insert(name.to_string(), v);
    }

    fn assignment_value(&mut self, a: &ast::Assignment) -> Result<Word, ParseError> {
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

    fn procsub(
        &mut self,
        kind: &ast::ProcessSubstitutionKind,
        sub: &ast::SubshellCommand,
    ) -> Result<Word, ParseError> {
        let start = self.out.len();
        let origin = match kind {
            ast::ProcessSubstitutionKind::Read => "<(…)",
            ast::ProcessSubstitutionKind::Write => ">(…)",
        };
        let saved = std::mem::replace(&mut self.origin, origin.to_string());
        let saved_cwd = self.cwd.clone();
        self.depth += 1;
        let r = self.compound_list(&sub.list);
        self.depth -= 1;
        self.cwd = saved_cwd;
        self.origin = saved;
        r?;
        let sources = self.out[start..]
            .iter()
            .map(|c| Upstream {
                argv: c.argv.clone(),
                output: None,
                opaque: false,
            })
            .collect();
        let mut w = Word::dynamic(origin);
        w.procsub = Some(sources);
        Ok(w)
    }

    fn redirect(
        &mut self,
        io: &ast::IoRedirect,
        out: &mut Vec<Redirect>,
        stdin: &mut Stdin,
    ) -> Result<(), ParseError> {
        use ast::{IoFileRedirectKind as K, IoFileRedirectTarget as T, IoRedirect as R};
        let fd_is_stdin = |fd: &Option<ast::IoFd>, default_in: bool| match fd {
            None => default_in,
            Some(n) => *n == 0,
        };
        match io {
            R::File(fd, kind, target) => {
                let kind2 = match kind {
                    K::Read => RedirKind::Read,
                    K::Write | K::Append | K::Clobber | K::ReadAndWrite => RedirKind::Write,
                    K::DuplicateInput | K::DuplicateOutput => {
                        // `2>&1`, `>&-`: no file unless the target is a word that is not a number.
                        if let T::Duplicate(w) | T::Filename(w) = target {
                            let words = self.words(&w.value)?;
                            for word in words {
                                let t = word.text.trim_end_matches('-');
                                if !t.is_empty() && !t.bytes().all(|b| b.is_ascii_digit()) {
                                    out.push(Redirect {
                                        kind: RedirKind::Write,
                                        target: word,
                                        append: false,
                                    });
                                }
                            }
                        }
                        return Ok(());
                    }
                };
                let word = match target {
                    T::Filename(w) | T::Duplicate(w) => {
                        join_words(&self.words_nosplit(&w.value)?, &w.value)
                    }
                    T::Fd(_) => return Ok(()),
                    T::ProcessSubstitution(k, sub) => self.procsub(k, sub)?,
                };
                if kind2 == RedirKind::Read && fd_is_stdin(fd, true) {
                    *stdin = match &word.procsub {
                        Some(src) => Stdin::Pipe(src.clone()),
                        None => Stdin::File(word.clone()),
                    };
                }
                out.push(Redirect {
                    kind: kind2,
                    target: word,
                    append: matches!(kind, K::Append),
                });
            }
            R::HereDocument(fd, doc) => {
                let word = if doc.requires_expansion {
                    self.heredoc(&doc.doc.value)?
                } else {
                    Word::lit(&doc.doc.value)
                };
                if fd_is_stdin(fd, true) {
                    *stdin = Stdin::Text(word);
                }
            }
            R::HereString(fd, w) => {
                let word = join_words(&self.words_nosplit(&w.value)?, &w.value);
                if fd_is_stdin(fd, true) {
                    *stdin = Stdin::Text(word);
                }
            }
            R::OutputAndError(w, _) => {
                let word = join_words(&self.words_nosplit(&w.value)?, &w.value);
                out.push(Redirect {
                    kind: RedirKind::Write,
                    target: word,
                    append: false,
                });
            }
        }
        Ok(())
    }

    fn heredoc(&mut self, body: &str) -> Result<Word, ParseError> {
        let opts = brush_parser::ParserOptions::default();
        let pieces = guarded(|| {
            brush_parser::word::parse_heredoc(body, &opts)
                .map_err(|e| ParseError::Syntax(e.to_string()))
        })?;
        let mut b = Builder::default();
        for p in &pieces {
            self.piece(&p.piece, body, p, true, &mut b)?;
        }
        let mut words = b.finish(body);
        Ok(words.pop().unwrap_or_else(|| Word::lit("")))
    }

    /// Expands one raw word: brace expansion, then pieces, then `$IFS` splitting.
    fn words(&mut self, raw: &str) -> Result<Vec<Word>, ParseError> {
        // brush-parser 0.4 unwraps the numbers of `{1..N}`: a huge N panics. Many braces make
        // its grammar backtrack exponentially.
        if raw.matches('{').count() > MAX_BRACES_IN_WORD
            || raw.contains('{') && has_digit_run(raw, 18)
        {
            // brush's brace-expansion grammar backtracks exponentially on many braces: do not
            // expand, and treat the word as unknown (it could expand to anything).
            let mut w = self.one_word(raw, raw)?;
            for x in &mut w {
                x.text.push(DYN);
            }
            return Ok(w);
        }
        let mut out = Vec::new();
        for variant in brace_expand(raw) {
            out.extend(self.one_word(&variant, raw)?);
        }
        Ok(out)
    }

    /// Like [`Walker::words`] without brace expansion (assignment values, redirect targets).
    fn words_nosplit(&mut self, raw: &str) -> Result<Vec<Word>, ParseError> {
        self.one_word(raw, raw)
    }

    fn one_word(&mut self, text: &str, raw: &str) -> Result<Vec<Word>, ParseError> {
        self.words_seen += 1;
        if self.words_seen > MAX_WORDS {
            return Err(ParseError::TooManyWords);
        }
        // brush-parser 0.4 unwraps the number of `~N`, `~+N` / `~-N`: a huge N panics.
        if text.contains('~') && has_digit_run(text, 18) {
            return Err(ParseError::Syntax("directory stack index too large".into()));
        }
        let opts = brush_parser::ParserOptions::default();
        let pieces = guarded(|| {
            brush_parser::word::parse(text, &opts).map_err(|e| ParseError::Syntax(e.to_string()))
        })?;
        let mut b = Builder::default();
        for p in &pieces {
            self.piece(&p.piece, text, p, false, &mut b)?;
        }
        // brush-parser leaves `$( … )` as plain text when the substitution holds an unbalanced
        // parenthesis (in a here-document or a comment: `$( bash <<'EOF'\nsudo id # (\nEOF\n)`),
        // where bash runs it. Walk the rest of the word as the substitution's script.
        if let Some(at) = unparsed_substitution(&pieces) {
            let tail = text.get(at + 2..).unwrap_or("");
            let tail = tail.trim_end_matches('"');
            let tail = tail.strip_suffix(')').unwrap_or(tail);
            self.nested(tail, "$(…)")?;
            b.push_dyn();
        }
        Ok(b.finish(raw))
    }

    fn piece(
        &mut self,
        piece: &WordPiece,
        src: &str,
        at: &WordPieceWithSource,
        quoted: bool,
        b: &mut Builder,
    ) -> Result<(), ParseError> {
        match piece {
            WordPiece::Text(t) => {
                if quoted {
                    b.push_str(t);
                } else {
                    b.push_unquoted(t);
                }
            }
            WordPiece::SingleQuotedText(t) => b.push_str(t),
            WordPiece::AnsiCQuotedText(t) => b.push_str(&ansi_c(t)),
            WordPiece::DoubleQuotedSequence(ps) | WordPiece::GettextDoubleQuotedSequence(ps) => {
                b.quoted_seen = true;
                for p in ps {
                    self.piece(&p.piece, src, p, true, b)?;
                }
            }
            WordPiece::TildeExpansion(t) => match t {
                TildeExpr::Home => b.push_str(&self.env.home.clone()),
                TildeExpr::UserHome(u) if u == "root" => b.push_str("/root"),
                TildeExpr::UserHome(u) => b.push_str(&format!("/home/{u}")),
                TildeExpr::WorkingDir => match &self.cwd {
                    Some(c) => b.push_str(&c.clone()),
                    None => b.push_dyn(),
                },
                _ => b.push_dyn(),
            },
            WordPiece::ParameterExpansion(p) => self.param(p, src, at, quoted, b)?,
            WordPiece::CommandSubstitution(s) => {
                self.nested(s, "$(…)")?;
                b.push_dyn();
            }
            WordPiece::BackquotedCommandSubstitution(s) => {
                self.nested(&unescape_backquote(s), "`…`")?;
                b.push_dyn();
            }
            WordPiece::EscapeSequence(s) => {
                let c = s.strip_prefix('\\').unwrap_or(s);
                if c != "\n" {
                    b.push_str(c);
                }
            }
            WordPiece::ArithmeticExpression(e) => {
                self.arith(&e.value)?;
                b.push_dyn();
            }
        }
        Ok(())
    }

    fn param(
        &mut self,
        p: &ParameterExpr,
        src: &str,
        at: &WordPieceWithSource,
        quoted: bool,
        b: &mut Builder,
    ) -> Result<(), ParseError> {
        if let ParameterExpr::Parameter {
            parameter,
            indirect: false,
        } = p
        {
            match parameter {
                Parameter::Named(name) => {
                    match (name.as_str(), self.vars.get(name)) {
                        (_, Some(Var::Known(v))) => {
                            let v = v.clone();
                            if quoted {
                                b.push_str(&v);
                            } else if self.vars.contains_key("IFS") {
                                // Split on a custom IFS (`IFS=,; $cmd`): words unknown.
                                b.push_dyn();
                            } else {
                                b.push_split(&v);
                            }
                        }
                        (_, Some(Var::Prefix(p))) => {
                            let p = p.clone();
                            b.push_str(&p);
                            b.push_dyn();
                        }
                        (_, Some(Var::Unknown)) => b.push_dyn(),
                        ("HOME", None) => b.push_str(&self.env.home.clone()),
                        // The scratch directory (`mktemp`'s default); set in this command, it
                        // is tracked above like any variable.
                        ("TMPDIR", None) => b.push_str("/tmp"),
                        // Directories under the home directory by their defaults (the XDG
                        // base directory spec; Claude Code's config dir): where the agent's
                        // settings and airlock's config live.
                        ("XDG_CONFIG_HOME", None) => {
                            b.push_str(&format!("{}/.config", self.env.home))
                        }
                        ("XDG_STATE_HOME", None) => {
                            b.push_str(&format!("{}/.local/state", self.env.home))
                        }
                        ("XDG_DATA_HOME", None) => {
                            b.push_str(&format!("{}/.local/share", self.env.home))
                        }
                        ("CLAUDE_CONFIG_DIR", None) => {
                            b.push_str(&format!("{}/.claude", self.env.home))
                        }
                        ("PWD", None) => match &self.cwd {
                            Some(c) => b.push_str(&c.clone()),
                            None => b.push_dyn(),
                        },
                        ("IFS", None) if !quoted => b.split(),
                        ("IFS", None) => b.push_str(" "),
                        _ => b.push_dyn(),
                    }
                    return Ok(());
                }
                Parameter::Special(SpecialParameter::ProcessId) => {
                    b.push_dyn();
                    return Ok(());
                }
                _ => {
                    b.push_dyn();
                    return Ok(());
                }
            }
        }
        // `${t%.txt}`: removing a suffix keeps what the value starts with.
        if let ParameterExpr::RemoveSmallestSuffixPattern {
            parameter: Parameter::Named(name),
            indirect: false,
            ..
        }
        | ParameterExpr::RemoveLargestSuffixPattern {
            parameter: Parameter::Named(name),
            indirect: false,
            ..
        } = p
        {
            if let Some(Var::Prefix(pre)) = self.vars.get(name) {
                let pre = pre.clone();
                b.push_str(&pre);
            }
        }
        // `${HOME:0:5}`, `${HOME%/*}`, `${HOME/x/y}`: a path built from the home directory is
        // judged as the home directory (stricter than "somewhere").
        let raw = src.get(at.start_index..at.end_index).unwrap_or("");
        if raw
            .strip_prefix("${HOME")
            .and_then(|r| r.chars().next())
            .is_some_and(|c| matches!(c, ':' | '#' | '%' | '/' | '^' | ',' | '@'))
            && !self.vars.contains_key("HOME")
        {
            b.push_str(&self.env.home.clone());
            return Ok(());
        }
        // `${TMPDIR:-/tmp}`: the scratch directory either way (see `TMPDIR` above), when the
        // default runs nothing.
        if let Some(default) = raw
            .strip_prefix("${TMPDIR:-")
            .or_else(|| raw.strip_prefix("${TMPDIR-"))
            .and_then(|r| r.strip_suffix('}'))
        {
            if !default.contains(['$', '`']) && !self.vars.contains_key("TMPDIR") {
                b.push_str("/tmp");
                return Ok(());
            }
        }
        // Anything fancier (`${X:-$(cmd)}`, `${X/a/b}`, `${!X}`): the value is dynamic, but
        // the text inside may hold substitutions that run: walk it as a word.
        let raw = src.get(at.start_index..at.end_index).unwrap_or("");
        let inner = raw
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or("");
        if inner.contains("$(")
            || inner.contains('`')
            || inner.contains("${")
            || inner.contains("<(")
        {
            let quoted_inner = format!("\"{}\"", inner.replace('"', "\\\""));
            // The inner text is not always a valid word (patterns): ignore what doesn't parse,
            // but only after scanning the substitutions it holds.
            if self.words_nosplit(&quoted_inner).is_err() {
                self.scan_substitutions(inner)?;
            }
        }
        b.push_dyn();
        Ok(())
    }

    /// Last resort for text that is not a word: walk every `$(…)` and backquoted part in it.
    fn scan_substitutions(&mut self, text: &str) -> Result<(), ParseError> {
        let mut rest = text;
        while let Some(i) = rest.find("$(") {
            let after = &rest[i + 2..];
            let mut depth = 1usize;
            let mut end = None;
            for (j, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                return Err(ParseError::Syntax("unterminated $( in expansion".into()));
            };
            self.nested(&after[..end], "$(…)")?;
            rest = &after[end + 1..];
        }
        let parts: Vec<&str> = text.split('`').collect();
        if parts.len() % 2 == 0 {
            return Err(ParseError::Syntax(
                "unterminated backquote in expansion".into(),
            ));
        }
        for (i, part) in parts.iter().enumerate() {
            if i % 2 == 1 {
                self.nested(part, "`…`")?;
            }
        }
        Ok(())
    }
}

/// Where a `$(` that brush-parser left as text starts (the byte index of its `$`), if any.
fn unparsed_substitution(pieces: &[WordPieceWithSource]) -> Option<usize> {
    let mut flat: Vec<(&str, usize)> = Vec::new();
    for p in pieces {
        match &p.piece {
            WordPiece::Text(s) => flat.push((s, p.start_index)),
            WordPiece::DoubleQuotedSequence(inner)
            | WordPiece::GettextDoubleQuotedSequence(inner) => {
                for q in inner {
                    if let WordPiece::Text(s) = &q.piece {
                        flat.push((s, q.start_index));
                    } else {
                        flat.push(("", q.start_index));
                    }
                }
            }
            _ => flat.push(("", p.start_index)),
        }
    }
    for (k, (s, start)) in flat.iter().enumerate() {
        if let Some(i) = s.find("$(") {
            return Some(start + i);
        }
        if s.ends_with('$') && flat.get(k + 1).is_some_and(|(n, _)| n.starts_with('(')) {
            return Some(start + s.len() - 1);
        }
    }
    None
}

fn assignment_name(a: &ast::Assignment) -> String {
    match &a.name {
        ast::AssignmentName::VariableName(n) => n.clone(),
        ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
    }
}

/// Builds words out of pieces, handling unquoted splitting on `$IFS` and glob detection.
#[derive(Default)]
struct Builder {
    words: Vec<(String, bool)>,
    cur: String,
    glob: bool,
    started: bool,
    quoted_seen: bool,
}

impl Builder {
    fn push_str(&mut self, s: &str) {
        self.started = true;
        self.cur.push_str(s);
    }
    fn push_unquoted(&mut self, s: &str) {
        self.started = true;
        let class = s.find('[').is_some_and(|i| s[i + 1..].contains(']'));
        if s.contains(['*', '?']) || class {
            self.glob = true;
        }
        self.cur.push_str(s);
    }
    fn push_dyn(&mut self) {
        self.started = true;
        if !self.cur.ends_with(DYN) {
            self.cur.push(DYN);
        }
    }
    /// An unquoted variable's value: split on whitespace like the default IFS.
    fn push_split(&mut self, v: &str) {
        let mut first = true;
        for part in v.split([' ', '\t', '\n']) {
            if !first {
                self.split();
            }
            first = false;
            self.push_unquoted(part);
        }
    }
    fn split(&mut self) {
        if self.started && !self.cur.is_empty() {
            let w = std::mem::take(&mut self.cur);
            self.words.push((w, self.glob));
        }
        self.glob = false;
        self.started = false;
    }
    fn finish(mut self, raw: &str) -> Vec<Word> {
        if (self.started || self.quoted_seen) && (!self.cur.is_empty() || self.words.is_empty()) {
            let w = std::mem::take(&mut self.cur);
            self.words.push((w, self.glob));
        }
        self.words
            .into_iter()
            .map(|(text, glob)| Word {
                text,
                raw: raw.to_string(),
                glob,
                procsub: None,
            })
            .collect()
    }
}

/// Joins split words back into one (assignment values are not split).
fn join_words(words: &[Word], raw: &str) -> Word {
    match words {
        [one] => one.clone(),
        _ => Word {
            text: words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            raw: raw.to_string(),
            glob: words.iter().any(|w| w.glob),
            procsub: None,
        },
    }
}

/// What a command prints when that is obvious: `echo`/`printf` of static words, `cat` of a
/// static here-document.
fn static_output(argv: &[Word], stdin: &Stdin) -> Option<String> {
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

/// The static text on a command's stdin, if any.
fn output_of_stdin(stdin: &Stdin) -> Option<String> {
    match stdin {
        Stdin::Text(w) if !w.is_dynamic() => Some(w.text.clone()),
        Stdin::Pipe(up) => up.last().and_then(|u| u.output.clone()),
        _ => None,
    }
}

/// Brace expansion of an unquoted raw word (`{rm,-rf,/}`, `a{1..3}`), bounded.
fn brace_expand(raw: &str) -> Vec<String> {
    if !raw.contains('{') {
        return vec![raw.to_string()];
    }
    let opts = brush_parser::ParserOptions::default();
    let parsed =
        std::panic::catch_unwind(|| brush_parser::word::parse_brace_expansions(raw, &opts));
    match parsed.unwrap_or(Ok(None)) {
        Ok(Some(parts)) => {
            let mut out = vec![String::new()];
            if expand_parts(&parts, &mut out) {
                out
            } else {
                vec![raw.to_string()]
            }
        }
        _ => vec![raw.to_string()],
    }
}

fn expand_parts(parts: &[BraceExpressionOrText], acc: &mut Vec<String>) -> bool {
    for part in parts {
        match part {
            BraceExpressionOrText::Text(t) => acc.iter_mut().for_each(|a| a.push_str(t)),
            BraceExpressionOrText::Expr(members) => {
                let mut alts: Vec<String> = Vec::new();
                for m in members {
                    match m {
                        BraceExpressionMember::Child(children) => {
                            let mut sub = vec![String::new()];
                            if !expand_parts(children, &mut sub) {
                                return false;
                            }
                            alts.extend(sub);
                        }
                        BraceExpressionMember::NumberSequence {
                            start,
                            end,
                            increment,
                        } => {
                            let step = increment.unsigned_abs().max(1);
                            let n = start.abs_diff(*end) / step + 1;
                            if n > MAX_BRACE as u64 {
                                return false;
                            }
                            let mut v = *start;
                            for _ in 0..n {
                                alts.push(v.to_string());
                                v = if start <= end {
                                    v.saturating_add(step.try_into().unwrap_or(i64::MAX))
                                } else {
                                    v.saturating_sub(step.try_into().unwrap_or(i64::MAX))
                                };
                            }
                        }
                        BraceExpressionMember::CharSequence { start, end, .. } => {
                            let (a, z) = (*start as u32, *end as u32);
                            let (lo, hi) = (a.min(z), a.max(z));
                            if hi - lo > 64 {
                                return false;
                            }
                            alts.extend((lo..=hi).filter_map(char::from_u32).map(String::from));
                        }
                    }
                }
                if alts.len() * acc.len() > MAX_BRACE {
                    return false;
                }
                let mut next = Vec::with_capacity(alts.len() * acc.len());
                for a in acc.iter() {
                    for alt in &alts {
                        next.push(format!("{a}{alt}"));
                    }
                }
                *acc = next;
            }
        }
    }
    true
}

/// Decodes the inside of `$'…'` (and `echo -e`/`printf` escapes).
pub fn ansi_c(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'e' | 'E' => out.push('\u{1b}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            '?' => out.push('?'),
            'x' | 'u' | 'U' => {
                let max = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v = 0u32;
                let mut n = 0;
                while n < max {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            chars.next();
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push('\\');
                    out.push(e);
                } else if let Some(c) = char::from_u32(v) {
                    out.push(c);
                }
            }
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                if let Some(c) = char::from_u32(v) {
                    out.push(c);
                }
            }
            'c' => {
                if let Some(x) = chars.next() {
                    if let Some(c) = char::from_u32((x as u32) & 0x1f) {
                        out.push(c);
                    }
                }
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

fn unescape_backquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if matches!(n, '$' | '`' | '\\') {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// `cd "$d"` where `$d` is a `for` variable over `*/` (its value starts with `./`, see
/// [`loop_prefix`]): some subdirectory of `cwd`, written `cwd/…/<DYN>` (one unknown
/// component; a file read under it is code airlock cannot see). `None` for anything else.
fn subdir_of(cwd: &str, text: &str) -> Option<String> {
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

/// Interpreters whose inline code may write files (for [`Walker::track_files`]).
fn is_interpreter(prog: &str) -> bool {
    let p = prog.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    matches!(
        p,
        "python" | "pypy" | "node" | "nodejs" | "deno" | "bun" | "perl" | "ruby" | "php" | "lua"
    )
}

/// Whether inline code looks like it writes, moves or copies files.
fn writes_files(code: &str) -> bool {
    const WORDS: &[&str] = &[
        "write",
        "put_contents",
        "rename",
        "copy",
        "symlink",
        "move",
        "shutil",
        "'w",
        "\"w",
        "'a'",
        "\"a\"",
        "'a+",
        "\"a+",
        "'x'",
        "\"x\"",
        "'>",
        "\">",
        "'+<",
        "\"+<",
        "Sync(",
    ];
    WORDS.iter().any(|w| code.contains(w))
}

/// The quoted strings of inline code that could name a file (no whitespace, at most 255
/// bytes, at most 32 of them).
fn quoted_names(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in ['\'', '"', '`'] {
        let mut parts = code.split(q).skip(1).step_by(2);
        for p in parts.by_ref() {
            // Perl's `open(F, ">>file")`: the mode is part of the string.
            let p = p.trim_start_matches(['+', '<', '>', '|']);
            if !p.is_empty() && p.len() < 256 && !p.contains(char::is_whitespace) {
                out.push(p.to_string());
            }
            if out.len() >= 32 {
                return out;
            }
        }
    }
    out
}

/// What `path` held before the command being tracked: the text written earlier in the same
/// script, else the file on disk (bounded read), else nothing (a new file).
fn prior_content(files: &[(String, FileContent)], path: &str) -> Option<FileContent> {
    if let Some((_, c)) = files.iter().find(|(p, _)| p == path) {
        return Some(c.clone());
    }
    match crate::files::read_text(path) {
        crate::files::FileText::Missing => Some(FileContent::Text(String::new())),
        crate::files::FileText::Text(t) => Some(FileContent::Text(t)),
        _ => None,
    }
}

/// `prior` with `added` at its end: unknown when either part is.
fn appended(prior: &Option<FileContent>, added: &str) -> FileContent {
    match prior {
        // Larger than the gate reads: unknown either way.
        Some(FileContent::Text(t))
            if u64::try_from(t.len() + added.len())
                .map_or(true, |n| n > crate::files::MAX_FILE_BYTES) =>
        {
            FileContent::Unknown
        }
        Some(FileContent::Text(t)) => {
            let mut t = t.clone();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(added);
            FileContent::Text(t)
        }
        _ => FileContent::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            home: "/home/u".into(),
            cwd: "/work/p".into(),
        }
    }

    /// The content the last command of `src` sees for `path`.
    fn seen(src: &str, path: &str) -> Option<FileContent> {
        let cmds = parse(src, &env(), "", 0).expect("parses");
        let last = cmds.last().expect("a command");
        last.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| c.clone())
    }

    #[test]
    fn written_files_are_tracked_within_bounds() {
        // Visible text, `>>` adding to it, unseen writers.
        let text = |t: &str| Some(FileContent::Text(t.to_string()));
        assert_eq!(seen("echo 'a' > x.sh; true", "/work/p/x.sh"), text("a"));
        assert_eq!(
            seen("echo 'a' > x.sh; echo 'b' >> x.sh; true", "/work/p/x.sh"),
            text("a\nb")
        );
        for unseen in [
            "cp /tmp/y x.sh; true",
            "sed -i s/a/b/ x.sh; true",
            "python3 -c \"open('x.sh','w').write(X)\"; true",
            "echo \"$X\" > x.sh; true",
        ] {
            assert_eq!(
                seen(unseen, "/work/p/x.sh"),
                Some(FileContent::Unknown),
                "{unseen}"
            );
        }
        assert_eq!(
            seen("npm pkg set scripts.test=x; true", "/work/p/package.json"),
            Some(FileContent::Unknown)
        );
        // Appends past what the gate reads: unknown.
        let unknown = |c: Option<FileContent>| matches!(c, Some(FileContent::Unknown));
        let full = "x".repeat(usize::try_from(crate::files::MAX_FILE_BYTES).expect("fits") - 2);
        let src = format!("cat > a.sh <<'EOF'\n{full}\nEOF\necho y >> a.sh; echo z >> a.sh\ntrue");
        assert!(
            unknown(seen(&src, "/work/p/a.sh")),
            "appended past the read limit"
        );
        let big = "x".repeat(200 * 1024);
        // Many writes while a large text is tracked: past the copy budget, content unknown.
        let mut src = format!("cat > a.sh <<'EOF'\n{big}\nEOF\n");
        for i in 0..(MAX_TRACKED_COPY / big.len() + 2) {
            src.push_str(&format!("echo {i} > f{i}.txt\n"));
        }
        src.push_str("true");
        assert!(unknown(seen(&src, "/work/p/a.sh")), "past the copy budget");
        assert!(
            unknown(seen(&src, "/work/p/f0.txt")),
            "past the copy budget"
        );
    }

    fn argvs(src: &str) -> Vec<Vec<String>> {
        parse(src, &env(), "", 0)
            .expect("parse")
            .into_iter()
            .map(|c| c.argv.iter().map(Word::display).collect())
            .collect()
    }

    #[test]
    fn finds_commands_everywhere() {
        let got =
            argvs("a && b || c; (d | e) & { f; }; g $(h `i`) <(j) ; k() { l; }; if m; then n; fi");
        let progs: Vec<&str> = got.iter().map(|c| c[0].as_str()).collect();
        for p in [
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "l", "m", "n",
        ] {
            assert!(progs.contains(&p), "{p} missing from {progs:?}");
        }
    }

    #[test]
    fn removes_quotes_and_decodes() {
        assert_eq!(argvs(r#"'r'"m" -\r\f /"#), vec![vec!["rm", "-rf", "/"]]);
        assert_eq!(argvs(r"$'\x72\x6d' -rf /"), vec![vec!["rm", "-rf", "/"]]);
        assert_eq!(argvs("{rm,-rf,/}"), vec![vec!["rm", "-rf", "/"]]);
        assert_eq!(argvs("rm${IFS}-rf${IFS}/"), vec![vec!["rm", "-rf", "/"]]);
        assert_eq!(argvs("X=/etc; rm -rf $X")[1], vec!["rm", "-rf", "/etc"]);
        assert_eq!(
            argvs("rm -rf ~ $HOME")[0],
            vec!["rm", "-rf", "/home/u", "/home/u"]
        );
        assert_eq!(argvs("rm -rf $X")[0], vec!["rm", "-rf", "…"]);
    }

    #[test]
    fn heredoc_and_pipe_sources() {
        let cmds = parse("bash <<EOF\nrm -rf /\nEOF\n", &env(), "", 0).expect("parse");
        assert!(matches!(&cmds[0].stdin, Stdin::Text(w) if w.text.contains("rm -rf /")));
        let cmds = parse("echo 'rm -rf /' | sh", &env(), "", 0).expect("parse");
        match &cmds[1].stdin {
            Stdin::Pipe(up) => assert_eq!(up[0].output.as_deref(), Some("rm -rf /")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tracks_cd() {
        let cmds = parse("cd /etc && rm -rf *", &env(), "", 0).expect("parse");
        assert_eq!(cmds[1].cwd.as_deref(), Some("/etc"));
    }

    #[test]
    fn inputs_that_panic_brush_are_errors_or_dynamic() {
        for src in [
            "echo 99999999999>x",
            "cat ~+99999999999999999999",
            "sh -c \"rm -rf ~1111111111111111111111111111111111\"",
            "ls ~99999999999999999999",
            "echo {1..99999999999999999999}",
            "rm -rf {99999999999999999999..1}/",
        ] {
            // Must return (not panic); a result that parses must not hide a static target.
            if let Ok(cmds) = parse(src, &env(), "", 0) {
                assert!(cmds[0].argv.iter().skip(1).any(Word::is_dynamic), "{src}");
            }
        }
    }

    #[test]
    fn huge_tilde_numbers_are_refused_before_brush_panics() {
        // brush-parser unwraps the number of `~N`: refused up front (the fuzzer's panic hook
        // aborts even on a panic that `guarded` would catch).
        for src in [
            "ls ~99999999999999999999",
            "rm -rf ~1111111111111111111111111111111111",
        ] {
            assert_eq!(
                parse(src, &env(), "", 0),
                Err(ParseError::Syntax("directory stack index too large".into())),
                "{src}"
            );
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        assert!(parse("echo 'unterminated", &env(), "", 0).is_err());
        assert!(parse("if then fi (", &env(), "", 0).is_err());
    }
}
