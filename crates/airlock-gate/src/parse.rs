//! Bash source → a flat list of simple commands with static or dynamic words (our small IR).
//!
//! brush-parser gives the AST; this module walks every place a simple command can hide
//! (pipelines, lists, subshells, groups, loops, functions, command and process substitutions,
//! parameter-expansion defaults, arithmetic) and turns each word into its static value where the
//! shell would compute it without running anything (quotes, escapes, `$'…'`, `~`, `$HOME`,
//! brace expansion, variables assigned earlier in the same script). Anything else is marked
//! dynamic with [`DYN`](crate::ir::DYN) in place of the unknown text.

use std::collections::HashMap;

use brush_parser::ast;

use crate::ir::{Env, KnownVar, SimpleCmd, Stdin, Upstream, Word, Written};

mod compound;
mod expansions;
mod redirections;
mod simple;
mod words;
mod writes;

pub use words::ansi_c;

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
            ast::Command::Compound(c, redirs) => self.redirected_compound(c, redirs, stdin),
            ast::Command::Function(f) => self.function_definition(f),
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

    /// A compound command: its redirections (and the input it is given) apply to every
    /// command inside it that has none of its own.
    fn redirected_compound(
        &mut self,
        c: &ast::CompoundCommand,
        redirs: &Option<ast::RedirectList>,
        stdin: Stdin,
    ) -> Result<Upstream, ParseError> {
        let start = self.out.len();
        self.compound(c)?;
        if let Some(r) = redirs {
            let mut extra = Vec::new();
            let mut inner_stdin = stdin;
            for io in &r.0 {
                self.redirect(io, &mut extra, &mut inner_stdin)?;
            }
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

    /// A function body is analysed where it is defined, whether or not it is called; a
    /// function that pipes into or backgrounds itself is a fork bomb (the pseudo-program
    /// `(fork-bomb)`).
    fn function_definition(&mut self, f: &ast::FunctionDefinition) -> Result<Upstream, ParseError> {
        let name = f.fname.value.clone();
        let origin = format!("function {name}");
        let saved = std::mem::replace(&mut self.origin, origin);
        self.compound(&f.body.0)?;
        self.origin = saved;
        let body = f.body.to_string();
        if body.matches(name.as_str()).count() >= 2 && body.contains('|') && body.contains('&') {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::FileContent;

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
