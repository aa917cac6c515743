//! Compound commands: `if`, loops (a `for` over words known here is walked once per value),
//! `case`, functions, subshells and groups, arithmetic and `[[ … ]]` tests.

use brush_parser::ast;

use crate::ir::{Stdin, Word};

use super::{ParseError, Var, Walker, MAX_LOOP_VALUES};

impl Walker<'_> {
    /// A compound command: every list, word and nested command in it is walked.
    pub(super) fn compound(&mut self, c: &ast::CompoundCommand) -> Result<(), ParseError> {
        use ast::CompoundCommand as C;
        match c {
            C::Arithmetic(a) => self.arithmetic_command(a),
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
            C::ForClause(f) => self.for_clause(f),
            C::CaseClause(cc) => self.case_clause(cc),
            C::IfClause(i) => self.if_clause(i),
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

    /// `(( … ))`. brush-parser takes `( ( cmd ) )` for it too and flattens its text (a
    /// here-document's newlines become spaces): when it is not arithmetic, the source is walked
    /// as bash does, as `( ( … ) )`. Written `( (` (apart), it is never arithmetic in bash,
    /// whatever the text.
    fn arithmetic_command(&mut self, a: &ast::ArithmeticCommand) -> Result<(), ParseError> {
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

    /// `for NAME in WORDS`: over a few words known here (`for n in 1 2 3`) the body is walked
    /// once for each value, with the variable known; otherwise once, with the variable known
    /// only if there is one value (or its known prefix).
    fn for_clause(&mut self, f: &ast::ForClauseCommand) -> Result<(), ParseError> {
        let Some(values) = &f.values else {
            self.vars.insert(f.variable_name.clone(), Var::Unknown);
            return self.compound_list(&f.body.list);
        };
        let mut all = Vec::new();
        for v in values {
            all.extend(self.words(&v.value)?);
        }
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
        let var = match all.as_slice() {
            [one] if !one.is_dynamic() && !one.glob => Var::Known(one.text.clone()),
            _ => loop_prefix(&all),
        };
        self.vars.insert(f.variable_name.clone(), var);
        self.compound_list(&f.body.list)
    }

    /// `case WORD in PATTERN) …;; esac`: the word, every pattern and every branch.
    fn case_clause(&mut self, cc: &ast::CaseClauseCommand) -> Result<(), ParseError> {
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

    /// `if …; then …; elif …; else …; fi`: every condition and every branch.
    fn if_clause(&mut self, i: &ast::IfClauseCommand) -> Result<(), ParseError> {
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

    /// Arithmetic text may hold `$(…)` or backquotes, which run. And text that is not an
    /// arithmetic expression is commands: brush-parser reads `( ( cat x ) )` (nested subshells)
    /// as `(( … ))`, where bash falls back to subshells; so walk it as a script too.
    pub(super) fn arith(&mut self, text: &str) -> Result<(), ParseError> {
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

    pub(super) fn ext_test(&mut self, e: &ast::ExtendedTestExpr) -> Result<(), ParseError> {
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
}

/// What every value of a `for` loop over static words starts with, up to a `/`: `dir/` for
/// `dir/*.txt dir/b`, `./` for relative names in the current directory (`*.rs`).
pub(super) fn loop_prefix(values: &[Word]) -> Var {
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
pub(super) fn is_arithmetic(text: &str) -> bool {
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
