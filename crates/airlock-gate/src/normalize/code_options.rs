//! Options and arguments whose value is code (the `[[code_option]]` table): shell command
//! lines, editor and database meta-commands, makefiles on stdin, shells named in options.

use crate::ir::{CodeFrom, Env, Invocation, SimpleCmd, Stdin, Word};
use crate::pathname::basename;
use crate::schema::{CodeOption, CodeRuns};

use super::{Analysis, Normalizer, MAX_EACH_ARG, MAX_STDIN_LINES, SHELLS};

impl Normalizer {
    /// Options and arguments whose value is code (the `[[code_option]]` table): the value is
    /// parsed and judged like `sh -c`; a value only known at run time is code airlock cannot see.
    pub(super) fn code_options(
        &self,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        for co in &self.tables.code_option {
            if !row_applies(co, inv) {
                continue;
            }
            let label = match &inv.subcommand {
                Some(s) => format!("{} {s}", inv.program),
                None => inv.program.clone(),
            };
            let mut values = code_option_values(co, args);
            if co.stdin {
                match self.stdin_lines(cmd, env) {
                    Some(lines) => values.extend(lines),
                    None => inv.code_from = CodeFrom::Unseen,
                }
            }
            for (what, value) in values {
                let origin = format!("{label} {what}");
                if co.runs == CodeRuns::Shell && !co.options.is_empty() {
                    self.shell_in_option(&value, &origin, cmd, env, out);
                }
                if self.code_of_value(co.runs, &value, &origin, cmd, inv, env, out)
                    == CodeFrom::Unseen
                {
                    inv.code_from = CodeFrom::Unseen;
                }
            }
            if co.runs == CodeRuns::Argv || !co.after.is_empty() {
                self.code_rests(co, args, &label, cmd, inv, env, out, hops);
            }
        }
    }

    /// Judges one value of a code option by what runs it (the row's `runs`).
    #[allow(clippy::too_many_arguments)]
    fn code_of_value(
        &self,
        runs: CodeRuns,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        match runs {
            CodeRuns::Shell => self.code_value(value, origin, cmd, env, out),
            CodeRuns::MakefileText => self.makefile_text(value, origin, cmd, env, out),
            CodeRuns::Sqlite => self.sqlite_value(value, origin, cmd, env, out),
            CodeRuns::ScriptFile => self.script_file_value(value, origin, cmd, env, out),
            CodeRuns::Editor => self.editor_code(value, origin, cmd, env, out),
            CodeRuns::Makefile => self.makefile_code(value, origin, cmd, env, out),
            CodeRuns::Inline => self.inline_value(value, origin, cmd, inv, env, out),
            CodeRuns::DbMeta => self.db_meta_code(value, origin, cmd, env, out),
            // Argv rows have no single value: see `code_option_rests`.
            CodeRuns::Argv => CodeFrom::NotCode,
        }
    }

    /// The words after an option that form a command line (`git bisect run CMD ARGS…`, the
    /// row's `after`): judged as an argv, or, for inline code, joined as the code.
    #[allow(clippy::too_many_arguments)]
    fn code_rests(
        &self,
        co: &CodeOption,
        args: &[Word],
        label: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        for (what, rest) in code_option_rests(co, args) {
            let origin = format!("{label} {what}");
            if co.runs == CodeRuns::Inline {
                let code = Word {
                    text: rest
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    ..Word::lit("")
                };
                if self.inline_value(&code, &origin, cmd, inv, env, out) == CodeFrom::Unseen {
                    inv.code_from = CodeFrom::Unseen;
                }
            } else {
                self.argv_code(&rest, &origin, cmd, inv, env, out, hops);
            }
        }
    }

    /// An option whose value is a command, given a shell or interpreter with its own code
    /// (`git clone -u 'sh -c …'`, `tar -I 'bash -c …'`): these options name a tool in ordinary
    /// use, so the code is asked about as well as judged (the pseudo-program
    /// `(shell-in-option)`, rule `shell-in-option`).
    pub(super) fn shell_in_option(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) {
        let mut words = value.text.split_whitespace();
        let Some(first) = words.next() else {
            return;
        };
        let prog = basename(first.trim_matches(['\'', '"']));
        if !(SHELLS.contains(&prog.as_str()) || self.interpreter(&prog).is_some()) {
            return;
        }
        let mut pseudo = self.invocation(cmd, "(shell-in-option)", false, &[], env);
        pseudo.subcommand = Some(origin.to_string());
        pseudo.positionals = vec![value.clone()];
        pseudo.words = vec![value.clone()];
        out.invocations.push(pseudo);
    }

    /// Words that form a command line (`git bisect run CMD ARGS…`): one word with spaces is
    /// shell code.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn argv_code(
        &self,
        rest: &[Word],
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        match rest {
            [] => {}
            [one] if one.is_dynamic() || one.text.contains(char::is_whitespace) => {
                if self.code_word(one, origin, cmd, env, out) == CodeFrom::Unseen {
                    inv.code_from = CodeFrom::Unseen;
                }
            }
            many => {
                let mut c = cmd.clone();
                c.origin = if cmd.origin.is_empty() {
                    origin.to_string()
                } else {
                    format!("{} › {origin}", cmd.origin)
                };
                c.redirects.clear();
                c.stdin = Stdin::Inherited;
                self.argv(&c, many, env, out, hops + 1);
            }
        }
    }

    /// psql/mysql input: the shell commands of its meta-commands, line by line (see
    /// [`CodeRuns::DbMeta`]).
    pub(super) fn db_meta_code(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        let mut from = CodeFrom::NotCode;
        for line in value.text.lines().take(MAX_STDIN_LINES) {
            let l = line.trim();
            let code = l
                .strip_prefix("\\!")
                .or_else(|| l.strip_prefix("system "))
                .or_else(|| l.strip_prefix("\\system "))
                .or_else(|| {
                    ["\\o", "\\g", "\\w", "\\out", "tee"]
                        .iter()
                        .find_map(|m| l.strip_prefix(m))
                        .and_then(|r| r.trim_start().strip_prefix('|'))
                });
            if let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) {
                if self.code_word(&Word::lit(code), origin, cmd, env, out) == CodeFrom::Unseen {
                    from = CodeFrom::Unseen;
                } else if from == CodeFrom::NotCode {
                    from = CodeFrom::Seen;
                }
            }
        }
        from
    }

    /// An editor or pager command: what follows `!` (or gdb's `shell `) runs in a shell.
    pub(super) fn editor_code(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        let v = value.text.trim().trim_start_matches([':', ' ', '.']);
        let lower = v.to_ascii_lowercase();
        let shell = if let Some(rest) = lower
            .strip_prefix("shell ")
            .or_else(|| lower.strip_prefix("system "))
        {
            Some(v[v.len() - rest.len()..].to_string())
        } else {
            v.split_once('!').map(|(_, rest)| rest.to_string())
        };
        let mut from = CodeFrom::NotCode;
        if let Some(code) = shell.filter(|c| !c.trim().is_empty()) {
            from = self.code_word(&Word::lit(&code), origin, cmd, env, out);
        }
        let opaque = [
            "system(",
            "systemlist(",
            "terminal",
            "jobstart",
            "execute",
            "py ",
            "py3",
            "python",
            "lua ",
            "perl ",
            "ruby ",
            "source",
            "so ",
        ];
        if opaque.iter().any(|o| lower.contains(o)) {
            from = CodeFrom::Unseen;
        }
        from
    }

    /// `make -f -`: the makefile is on stdin; its recipe lines and `$(shell …)` are shell code.
    pub(super) fn makefile_code(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        if !matches!(value.text.as_str(), "-" | "/dev/stdin" | "/dev/fd/0") {
            return CodeFrom::NotCode;
        }
        let text = match &cmd.stdin {
            Stdin::Text(w) if !w.is_dynamic() => Some(w.text.clone()),
            Stdin::Pipe(up) => up.last().and_then(|u| u.output.clone()),
            _ => None,
        };
        let Some(text) = text else {
            return CodeFrom::Unseen;
        };
        let mut code = Vec::new();
        for line in text.lines() {
            if let Some(recipe) = line.strip_prefix('\t') {
                code.push(recipe.trim_start_matches(['@', '-', '+']).to_string());
            } else if let Some((_, recipe)) = line
                .split_once(':')
                .and_then(|(_, rest)| rest.split_once(';'))
            {
                // `target: prerequisites ; recipe`
                code.push(recipe.trim_start_matches([' ', '@', '-', '+']).to_string());
            }
            let mut rest = line;
            while let Some(i) = rest.find("$(shell ") {
                let after = &rest[i + 8..];
                let end = after.find(')').unwrap_or(after.len());
                code.push(after[..end].to_string());
                rest = &after[end..];
            }
        }
        let script = code.join("\n").replace("$$", "$");
        if script.trim().is_empty() {
            return CodeFrom::Seen;
        }
        self.code_word(&Word::lit(&script), origin, cmd, env, out)
    }
}

/// The values of a [`CodeOption`] row's options in `args`, each with the option as written.
pub(super) fn code_option_values(co: &CodeOption, args: &[Word]) -> Vec<(String, Word)> {
    let mut found = Vec::new();
    if co.runs != CodeRuns::Argv {
        for (i, a) in args.iter().enumerate() {
            for o in &co.options {
                found.extend(option_value(co, o, args, i));
            }
            if let Some(p) = &co.prefix {
                found.extend(prefixed_value(p, a));
            }
        }
        found.extend(positional_commands(co, args));
    }
    // `ssh -o ProxyCommand=CMD`: only the value after the key is code.
    if let Some(key) = &co.key {
        found = keyed_values(key, found);
    }
    found
}

/// `a` with its text replaced by `text` (a part of it).
fn with_text(a: &Word, text: &str) -> Word {
    Word {
        text: text.to_string(),
        ..a.clone()
    }
}

/// The value `args[i]` gives option `o` of the row: `+CMD` for the option `+`, the next word
/// after `-o`/`--opt` (unless the row's values are only attached), the rest of a short bundle
/// (`rsync -ae CMD`), or a value written in the word (`--opt=V`, `-oV`, `go test -exec=CMD`).
fn option_value(co: &CodeOption, o: &str, args: &[Word], i: usize) -> Option<(String, Word)> {
    let a = &args[i];
    let t = a.text.as_str();
    if o == "+" {
        let v = t.strip_prefix('+').filter(|v| !v.is_empty())?;
        return Some((
            format!("+{}", v.chars().take(1).collect::<String>()),
            with_text(a, v),
        ));
    }
    if t == o {
        if co.attached {
            return None;
        }
        return args.get(i + 1).map(|n| (o.to_string(), n.clone()));
    }
    if let Some(at) = bundled_short(t, o) {
        // `rsync -ae CMD`, `ssh -vo ProxyCommand=…`: a short option at the end of
        // (or inside) a bundle of flags.
        return match t.get(at + 1..).filter(|r| !r.is_empty()) {
            Some(rest) => Some((o.to_string(), with_text(a, rest))),
            None if !co.attached => args.get(i + 1).map(|n| (o.to_string(), n.clone())),
            None => None,
        };
    }
    let rest = t.strip_prefix(o)?;
    let v = if o.starts_with("--") {
        rest.strip_prefix('=')
    } else if o.len() > 2 {
        // A long option after one dash (`go test -exec=CMD`).
        Some(rest.strip_prefix('=').unwrap_or(rest))
    } else {
        Some(rest)
    };
    v.map(|v| (o.to_string(), with_text(a, v)))
}

/// `ext::CMD` (the row's `prefix`), also as an option's value (`--remote=ext::CMD`); git's
/// ext:: URLs escape spaces as `% `.
fn prefixed_value(p: &str, a: &Word) -> Option<(String, Word)> {
    let t = a.text.as_str();
    let valued = t
        .strip_prefix('-')
        .and_then(|o| o.split_once('='))
        .map(|(_, v)| v);
    let v = t
        .strip_prefix(p)
        .or_else(|| valued.and_then(|v| v.strip_prefix(p)))?;
    Some((p.to_string(), with_text(a, &v.replace("% ", " "))))
}

/// Positionals that are commands: the first argument (`first_arg`, after `--`), or each
/// argument that is not an option (`each_arg`, at most [`MAX_EACH_ARG`]).
fn positional_commands(co: &CodeOption, args: &[Word]) -> Vec<(String, Word)> {
    let mut found = Vec::new();
    if co.first_arg {
        let mut it = args.iter().skip_while(|a| a.text == "--");
        if let Some(a) = it
            .next()
            .filter(|a| !a.text.starts_with('-') || a.is_dynamic())
        {
            found.push(("command".to_string(), a.clone()));
        }
    }
    if co.each_arg && co.after.is_empty() {
        for a in args
            .iter()
            .filter(|a| !a.text.starts_with('-'))
            .take(MAX_EACH_ARG)
        {
            found.push(("command".to_string(), a.clone()));
        }
    }
    found
}

/// Of values written `KEY=VALUE` or `KEY VALUE` (`-o ProxyCommand=CMD`), the values after
/// `key` (any case); other values are dropped.
fn keyed_values(key: &str, found: Vec<(String, Word)>) -> Vec<(String, Word)> {
    found
        .into_iter()
        .filter_map(|(what, w)| {
            let t = w.text.trim_start();
            let head = t.get(..key.len())?;
            let rest = &t[key.len()..];
            let sep = rest.chars().next()?;
            if head.eq_ignore_ascii_case(key) && (sep == '=' || sep.is_whitespace()) {
                let value = rest[sep.len_utf8()..].trim_start();
                Some((format!("{what} {key}"), with_text(&w, value)))
            } else {
                None
            }
        })
        .collect()
}

/// Where the letter of the short option `opt` (`-e`) sits in a bundle of short flags (`-ave`),
/// if it is not the first letter (that case is a plain prefix match).
pub(super) fn bundled_short(word: &str, opt: &str) -> Option<usize> {
    let letter = opt.strip_prefix('-').filter(|l| l.chars().count() == 1)?;
    let body = word.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
    let pos = body.find(letter)?;
    if pos == 0 || !body[..pos].chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(pos + 1)
}

/// The command lines after a [`CodeOption`] row's `after` words (leading options skipped):
/// `git bisect run CMD…`; with `each_arg`, every remaining non-option word alone.
pub(super) fn code_option_rests(co: &CodeOption, args: &[Word]) -> Vec<(String, Vec<Word>)> {
    let mut out = Vec::new();
    let Some(at) = args.iter().position(|a| {
        a.as_static()
            .is_some_and(|t| co.after.iter().any(|x| x == t))
    }) else {
        return out;
    };
    let what = args[at].text.clone();
    let mut rest = &args[at + 1..];
    while rest.first().is_some_and(|a| a.text.starts_with('-')) {
        let dashdash = rest[0].text == "--";
        rest = &rest[1..];
        if dashdash {
            break;
        }
    }
    if co.each_arg {
        for a in rest
            .iter()
            .filter(|a| !a.text.starts_with('-'))
            .take(MAX_EACH_ARG)
        {
            out.push((what.clone(), vec![a.clone()]));
        }
    } else if !rest.is_empty() {
        out.push((what, rest.to_vec()));
    }
    out
}

/// Whether a `[[code_option]]` row is about this invocation: its program, and its subcommand
/// when the row names some.
fn row_applies(co: &CodeOption, inv: &Invocation) -> bool {
    co.program.contains(&inv.program)
        && (co.subcommand.is_empty()
            || inv
                .subcommand
                .as_ref()
                .is_some_and(|s| co.subcommand.contains(s)))
}
