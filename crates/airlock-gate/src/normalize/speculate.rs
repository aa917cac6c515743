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
        const BUDGET: usize = 8;
        let mut budget = BUDGET;
        let mut probe = Analysis {
            work: out.work,
            ..Analysis::default()
        };
        let label = format!("{prog} argument");
        let mut c = cmd.clone();
        c.origin = if cmd.origin.is_empty() {
            label.clone()
        } else {
            format!("{} › {label}", cmd.origin)
        };
        c.redirects.clear();
        c.stdin = Stdin::Inherited;
        let mut i = 0;
        while i < args.len() {
            if budget == 0 {
                // More candidates than are worth judging: say so rather than guess.
                probe
                    .errors
                    .push((c.origin.clone(), ParseError::TooMuchNesting));
                break;
            }
            let a = &args[i];
            let Some(t) = a.as_static() else {
                i += 1;
                continue;
            };
            if let Some(opt) = t.strip_prefix('-').filter(|o| !o.is_empty() && *o != "-") {
                let opt = opt.trim_start_matches('-');
                let (name, attached) = match opt.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (opt, None),
                };
                if self.code_option_names.iter().any(|g| g.matches(name)) {
                    let value = match attached {
                        Some(v) => Some(Word {
                            text: v.to_string(),
                            ..a.clone()
                        }),
                        None => args.get(i + 1).cloned(),
                    };
                    if let Some(v) = value.filter(|v| !v.is_dynamic() && !v.text.is_empty()) {
                        budget -= 1;
                        self.nested_code(&v.text, &format!("{prog} -{opt}"), &c, env, &mut probe);
                        if attached.is_none() {
                            i += 1;
                        }
                    }
                }
                i += 1;
                continue;
            }
            let first_word = t.split_whitespace().next().unwrap_or("");
            if t.contains(char::is_whitespace) && self.speculate.contains(&basename(first_word)) {
                budget -= 1;
                self.nested_code(t, &label, &c, env, &mut probe);
            } else if i + 1 < args.len() && self.speculate.contains(&basename(t)) {
                budget -= 1;
                // A guessed command is judged on its next words only (bounded work).
                let end = args.len().min(i + SPECULATION_WORDS);
                self.argv(
                    &c,
                    &args[i..end],
                    env,
                    &mut probe,
                    hops.max(GLOB_HOPS - 2) + 1,
                );
            }
            i += 1;
        }
        // Parse failures of guessed code are not the command's: only what was found counts.
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
}
