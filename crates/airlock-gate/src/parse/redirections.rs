//! Redirections, here-documents and process substitutions.

use brush_parser::ast;

use crate::ir::{RedirKind, Redirect, Stdin, Upstream, Word};

use super::words::join_words;
use super::words::Builder;
use super::{guarded, ParseError, Walker};

impl Walker<'_> {
    /// One redirection: a file read or written (`<`, `>`, `>>`, `&>`), a here-document or
    /// here-string as standard input, a duplicated descriptor that names a file.
    pub(super) fn redirect(
        &mut self,
        io: &ast::IoRedirect,
        out: &mut Vec<Redirect>,
        stdin: &mut Stdin,
    ) -> Result<(), ParseError> {
        use ast::IoRedirect as R;
        match io {
            R::File(fd, kind, target) => self.file_redirect(fd, kind, target, out, stdin)?,
            R::HereDocument(fd, doc) => {
                let word = if doc.requires_expansion {
                    self.heredoc(&doc.doc.value)?
                } else {
                    Word::lit(&doc.doc.value)
                };
                if reads_stdin(fd) {
                    *stdin = Stdin::Text(word);
                }
            }
            R::HereString(fd, w) => {
                let word = join_words(&self.words_nosplit(&w.value)?, &w.value);
                if reads_stdin(fd) {
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

    /// `< file`, `> file`, `>> file`, `<> file`, `< <(cmd)`: the file read or written; read
    /// on standard input it is the command's input.
    fn file_redirect(
        &mut self,
        fd: &Option<ast::IoFd>,
        kind: &ast::IoFileRedirectKind,
        target: &ast::IoFileRedirectTarget,
        out: &mut Vec<Redirect>,
        stdin: &mut Stdin,
    ) -> Result<(), ParseError> {
        use ast::{IoFileRedirectKind as K, IoFileRedirectTarget as T};
        let kind2 = match kind {
            K::Read => RedirKind::Read,
            K::Write | K::Append | K::Clobber | K::ReadAndWrite => RedirKind::Write,
            K::DuplicateInput | K::DuplicateOutput => return self.duplicate_redirect(target, out),
        };
        let word = match target {
            T::Filename(w) | T::Duplicate(w) => {
                join_words(&self.words_nosplit(&w.value)?, &w.value)
            }
            T::Fd(_) => return Ok(()),
            T::ProcessSubstitution(k, sub) => self.procsub(k, sub)?,
        };
        if kind2 == RedirKind::Read && reads_stdin(fd) {
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
        Ok(())
    }

    /// `2>&1`, `>&-`: no file unless the target is a word that is not a number (`>&file`
    /// writes the file).
    fn duplicate_redirect(
        &mut self,
        target: &ast::IoFileRedirectTarget,
        out: &mut Vec<Redirect>,
    ) -> Result<(), ParseError> {
        use ast::IoFileRedirectTarget as T;
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
        Ok(())
    }

    pub(super) fn heredoc(&mut self, body: &str) -> Result<Word, ParseError> {
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

    pub(super) fn procsub(
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
}

/// Whether a redirection with descriptor `fd` (none written: standard input) is standard input.
fn reads_stdin(fd: &Option<ast::IoFd>) -> bool {
    match fd {
        None => true,
        Some(n) => *n == 0,
    }
}
