//! Code a shell or interpreter reads on standard input: pipes from fetchers and decoders,
//! here-documents, scripts written earlier in the same command.

use crate::files::{read_text, FileText};
use crate::ir::{CodeFrom, Env, FileContent, SimpleCmd, Stdin, Upstream, Word, DYN};
use crate::pathname::{basename, lexical};

use super::{Analysis, Normalizer, MAX_STDIN_LINES};

impl Normalizer {
    /// Network or decoded code upstream of a pipe (a fetcher or decoder anywhere in it).
    pub(super) fn upstream_kind(&self, up: &[Upstream]) -> Option<CodeFrom> {
        let words: Vec<String> = up
            .iter()
            .flat_map(|u| u.argv.iter())
            .filter(|w| !w.is_dynamic())
            .map(|w| basename(&w.text))
            .collect();
        if words.iter().any(|w| self.fetchers.contains(w)) {
            return Some(CodeFrom::Network);
        }
        let base_decode = up.iter().any(|u| {
            u.argv
                .iter()
                .any(|w| matches!(w.text.as_str(), "-d" | "--decode" | "-r" | "-D"))
                && u.argv
                    .first()
                    .is_some_and(|p| basename(&p.text).contains("base"))
        });
        if words.iter().any(|w| self.decoders.contains(w)) || base_decode {
            return Some(CodeFrom::Decoded);
        }
        None
    }

    /// The content of `script` if this command wrote it earlier: analysed like inline code.
    pub(super) fn written_script(
        &self,
        cmd: &SimpleCmd,
        script: &Word,
        env: &Env,
        out: &mut Analysis,
    ) -> Option<CodeFrom> {
        if cmd.files.is_empty() {
            return None;
        }
        let t = script.as_static()?;
        let path = if t.starts_with('/') {
            lexical(t)
        } else {
            lexical(&format!("{}/{t}", cmd.cwd.as_deref()?))
        };
        let (_, content) = cmd.files.iter().find(|(p, _)| *p == path)?;
        Some(match content {
            FileContent::Network => CodeFrom::Network,
            FileContent::Unknown => CodeFrom::Unseen,
            FileContent::Text(text) => {
                let base = basename(t);
                let is_shell =
                    base.ends_with(".sh") || base.ends_with(".bash") || !base.contains('.');
                if is_shell && self.nested_code(text, &format!("script {base}"), cmd, env, out) {
                    CodeFrom::Seen
                } else if is_shell {
                    CodeFrom::Unseen
                } else {
                    // Another language: the caller scans it like inline code.
                    CodeFrom::NotCode
                }
            }
        })
    }

    /// A shell or interpreter reading its code from stdin.
    pub(super) fn stdin_code(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        match &cmd.stdin {
            Stdin::Inherited => CodeFrom::NotCode,
            Stdin::Text(w) => self.code_word(w, &format!("{prog} <<…"), cmd, env, out),
            Stdin::File(_) => CodeFrom::Unseen,
            Stdin::Pipe(up) => self.upstream_code(up, cmd, &format!("… | {prog}"), env, out),
        }
    }

    pub(super) fn upstream_code(
        &self,
        up: &[Upstream],
        cmd: &SimpleCmd,
        origin: &str,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let progs: Vec<String> = up
            .iter()
            .flat_map(|u| u.argv.first())
            .map(|w| {
                if w.is_dynamic() {
                    DYN.to_string()
                } else {
                    basename(&w.text)
                }
            })
            .collect();
        // Look through wrappers and `tee`: any fetcher or decoder upstream counts.
        let words: Vec<String> = up
            .iter()
            .flat_map(|u| u.argv.iter())
            .filter(|w| !w.is_dynamic())
            .map(|w| basename(&w.text))
            .collect();
        if words.iter().any(|w| self.fetchers.contains(w)) {
            return CodeFrom::Network;
        }
        if words.iter().any(|w| self.decoders.contains(w))
            || up.iter().any(|u| {
                u.argv
                    .iter()
                    .any(|w| matches!(w.text.as_str(), "-d" | "--decode" | "-r" | "-D"))
                    && u.argv
                        .first()
                        .is_some_and(|p| basename(&p.text).contains("base"))
            })
        {
            return CodeFrom::Decoded;
        }
        match up.last() {
            Some(u) if !u.opaque && progs.len() == up.len() => match &u.output {
                Some(text) => {
                    if self.nested_code(text, origin, cmd, env, out) {
                        CodeFrom::Seen
                    } else {
                        CodeFrom::Unseen
                    }
                }
                None => CodeFrom::Unseen,
            },
            _ => CodeFrom::Unseen,
        }
    }

    /// The lines of a command's standard input as values of a `stdin` code row (at most
    /// [`MAX_STDIN_LINES`]); `Some(empty)` when nothing is fed in, `None` when what is fed in
    /// cannot be seen (a variable, another command's output, an unreadable file).
    pub(super) fn stdin_lines(&self, cmd: &SimpleCmd, env: &Env) -> Option<Vec<(String, Word)>> {
        let text = match &cmd.stdin {
            Stdin::Inherited => return Some(Vec::new()),
            Stdin::File(w) => {
                let path =
                    super::runfiles::absolute(w.as_static()?, cmd.cwd.as_deref(), &env.home)?;
                match read_text(&path) {
                    FileText::Text(t) => t,
                    FileText::Missing => return Some(Vec::new()),
                    _ => return None,
                }
            }
            other => super::runfiles::stdin_text(other)?,
        };
        Some(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .take(MAX_STDIN_LINES)
                .map(|l| ("<stdin>".to_string(), Word::lit(l)))
                .collect(),
        )
    }
}
