//! Programs airlock does not know: commands guessed in their arguments (`frob sudo id`) and
//! options named like code, judged as commands that may run.

use crate::ir::{Env, SimpleCmd, Stdin, Word};
use crate::parse::ParseError;
use crate::pathname::basename;

use super::{Analysis, Normalizer, GLOB_HOPS, SPECULATION_WORDS};

impl Normalizer {
    /// A program airlock does not know may run what its arguments name: the head of a
    /// dangerous command (the `speculate` list) followed by arguments (`prlimit … sudo id`), a
    /// quoted command line starting with one (`frob 'rm -rf ~'`)
    /// or the value of an option named like code (`--exec CMD`, `--on-success=CMD`). Those are
    /// judged as commands, marked speculative (a deny becomes ask: it may not run them).
    pub(super) fn speculate(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let mut budget = MAX_GUESSES;
        let mut probe = Analysis {
            work: out.work,
            ..Analysis::default()
        };
        let label = format!("{prog} argument");
        let c = guess_cmd(cmd, &label);
        let mut i = 0;
        while i < args.len() {
            if budget == 0 {
                // More candidates than are worth judging: say so rather than guess.
                probe
                    .errors
                    .push((c.origin.clone(), ParseError::TooMuchNesting));
                break;
            }
            let Some(t) = args[i].as_static() else {
                i += 1;
                continue;
            };
            if let Some(opt) = t.strip_prefix('-').filter(|o| !o.is_empty() && *o != "-") {
                let took_value = self.guess_option(prog, opt, args, i, &c, env, &mut probe);
                if let Some(took_next) = took_value {
                    budget -= 1;
                    i += usize::from(took_next);
                }
                i += 1;
                continue;
            }
            if self.guess_word(t, &label, args, i, &c, env, &mut probe, hops) {
                budget -= 1;
            }
            i += 1;
        }
        keep_guesses(prog, probe, out);
    }

    /// An option of an unknown program named like code (`code_option_names`: `--exec CMD`,
    /// `--on-success=CMD`): its static value is judged as shell code. `None` when nothing was
    /// judged, else whether the value was the next word.
    #[allow(clippy::too_many_arguments)]
    fn guess_option(
        &self,
        prog: &str,
        opt: &str,
        args: &[Word],
        i: usize,
        c: &SimpleCmd,
        env: &Env,
        probe: &mut Analysis,
    ) -> Option<bool> {
        let opt = opt.trim_start_matches('-');
        let (name, attached) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        if !self.code_option_names.iter().any(|g| g.matches(name)) {
            return None;
        }
        let value = match attached {
            Some(v) => Some(Word {
                text: v.to_string(),
                ..args[i].clone()
            }),
            None => args.get(i + 1).cloned(),
        };
        let v = value.filter(|v| !v.is_dynamic() && !v.text.is_empty())?;
        self.nested_code(&v.text, &format!("{prog} -{opt}"), c, env, probe);
        Some(attached.is_none())
    }

    /// A word of an unknown program's arguments that starts a dangerous command: a quoted
    /// command line (`'rm -rf ~'`, parsed as code) or a program of the `speculate` list
    /// followed by more words (judged on its next [`SPECULATION_WORDS`] words). True when one
    /// was judged.
    #[allow(clippy::too_many_arguments)]
    fn guess_word(
        &self,
        t: &str,
        label: &str,
        args: &[Word],
        i: usize,
        c: &SimpleCmd,
        env: &Env,
        probe: &mut Analysis,
        hops: usize,
    ) -> bool {
        let first_word = t.split_whitespace().next().unwrap_or("");
        if t.contains(char::is_whitespace) && self.speculate.contains(&basename(first_word)) {
            self.nested_code(t, label, c, env, probe);
            return true;
        }
        if i + 1 < args.len() && self.speculate.contains(&basename(t)) {
            // A guessed command is judged on its next words only (bounded work).
            let end = args.len().min(i + SPECULATION_WORDS);
            self.argv(c, &args[i..end], env, probe, hops.max(GLOB_HOPS - 2) + 1);
            return true;
        }
        false
    }
}

/// Most guesses judged in one program's arguments.
const MAX_GUESSES: usize = 8;

/// The command guesses run in: `cmd` with the guess's origin, without its redirections and
/// input (those belong to the unknown program).
fn guess_cmd(cmd: &SimpleCmd, label: &str) -> SimpleCmd {
    let mut c = cmd.clone();
    c.origin = if cmd.origin.is_empty() {
        label.to_string()
    } else {
        format!("{} › {label}", cmd.origin)
    };
    c.redirects.clear();
    c.stdin = Stdin::Inherited;
    c
}

/// What the guesses found, marked speculative and added to `out`. Parse failures of guessed
/// code are not the command's: only what was found counts (and running out of budget).
fn keep_guesses(prog: &str, probe: Analysis, out: &mut Analysis) {
    out.work = probe.work;
    if let Some(e) = probe
        .errors
        .into_iter()
        .find(|(_, e)| *e == ParseError::TooMuchNesting)
    {
        out.errors.push(e);
    }
    for mut inv in probe.invocations {
        inv.speculative.get_or_insert_with(|| prog.to_string());
        out.invocations.push(inv);
    }
}
