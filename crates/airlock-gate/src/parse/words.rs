//! Words: quote removal, escapes, `$'…'`, `~`, brace expansion and the static part of
//! expansions, with [`DYN`] where the value is only known at run time.

use brush_parser::word::{
    BraceExpressionMember, BraceExpressionOrText, TildeExpr, WordPiece, WordPieceWithSource,
};

use crate::ir::{Word, DYN};

use super::{guarded, has_digit_run, ParseError, Walker, MAX_BRACE, MAX_BRACES_IN_WORD, MAX_WORDS};

impl Walker<'_> {
    /// Expands one raw word: brace expansion, then pieces, then `$IFS` splitting.
    pub(super) fn words(&mut self, raw: &str) -> Result<Vec<Word>, ParseError> {
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
    pub(super) fn words_nosplit(&mut self, raw: &str) -> Result<Vec<Word>, ParseError> {
        self.one_word(raw, raw)
    }

    pub(super) fn one_word(&mut self, text: &str, raw: &str) -> Result<Vec<Word>, ParseError> {
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

    pub(super) fn piece(
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
}

/// Where a `$(` that brush-parser left as text starts (the byte index of its `$`), if any.
pub(super) fn unparsed_substitution(pieces: &[WordPieceWithSource]) -> Option<usize> {
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

/// Builds words out of pieces, handling unquoted splitting on `$IFS` and glob detection.
#[derive(Default)]
pub(super) struct Builder {
    words: Vec<(String, bool)>,
    cur: String,
    glob: bool,
    started: bool,
    quoted_seen: bool,
}

impl Builder {
    pub(super) fn push_str(&mut self, s: &str) {
        self.started = true;
        self.cur.push_str(s);
    }
    pub(super) fn push_unquoted(&mut self, s: &str) {
        self.started = true;
        let class = s.find('[').is_some_and(|i| s[i + 1..].contains(']'));
        if s.contains(['*', '?']) || class {
            self.glob = true;
        }
        self.cur.push_str(s);
    }
    pub(super) fn push_dyn(&mut self) {
        self.started = true;
        if !self.cur.ends_with(DYN) {
            self.cur.push(DYN);
        }
    }
    /// An unquoted variable's value: split on whitespace like the default IFS.
    pub(super) fn push_split(&mut self, v: &str) {
        let mut first = true;
        for part in v.split([' ', '\t', '\n']) {
            if !first {
                self.split();
            }
            first = false;
            self.push_unquoted(part);
        }
    }
    pub(super) fn split(&mut self) {
        if self.started && !self.cur.is_empty() {
            let w = std::mem::take(&mut self.cur);
            self.words.push((w, self.glob));
        }
        self.glob = false;
        self.started = false;
    }
    pub(super) fn finish(mut self, raw: &str) -> Vec<Word> {
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
pub(super) fn join_words(words: &[Word], raw: &str) -> Word {
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

/// Brace expansion of an unquoted raw word (`{rm,-rf,/}`, `a{1..3}`), bounded.
pub(super) fn brace_expand(raw: &str) -> Vec<String> {
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

pub(super) fn expand_parts(parts: &[BraceExpressionOrText], acc: &mut Vec<String>) -> bool {
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

pub(super) fn unescape_backquote(s: &str) -> String {
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
