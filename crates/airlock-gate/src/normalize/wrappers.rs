//! Wrappers: programs that run another command from their arguments (`sudo`, `env`, `xargs`,
//! `timeout`, runners such as `npx`; the `wrappers` table), and `find -exec`.

use crate::ir::{CodeFrom, Env, Invocation, SimpleCmd, Stdin, Word, DYN};
use crate::pathname::basename;
use crate::schema::WrapperSpec;

use super::invocation::is_assignment;
use super::{Analysis, Normalizer, MAX_EACH_ARG};

impl Normalizer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn wrapper(
        &self,
        cmd: &SimpleCmd,
        name: &str,
        spec: &WrapperSpec,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let mut i = 0;
        let mut skip = spec.skip;
        let origin = name.to_string();
        let mut env_assigns: Vec<(String, Word)> = Vec::new();
        let mut replace: Option<String> = None;
        let mut after_dashdash = false;
        while i < args.len() {
            let a = &args[i];
            let t = a.text.as_str();
            if t == "--" {
                i += 1;
                after_dashdash = !spec.no_command;
                break;
            }
            if spec.assigns && !a.is_dynamic() && is_assignment(t) {
                if let Some((n, v)) = t.split_once('=') {
                    if self.is_exec_env(n) {
                        self.exec_env_value(n, &Word::lit(v), cmd, env, out);
                    }
                    env_assigns.push((
                        n.to_string(),
                        Word {
                            text: v.to_string(),
                            ..a.clone()
                        },
                    ));
                }
                i += 1;
                continue;
            }
            if let Some(opt) = t.strip_prefix('-').filter(|o| !o.is_empty()) {
                let (names, inline_val): (Vec<String>, Option<String>) =
                    if let Some(long) = opt.strip_prefix('-') {
                        match long.split_once('=') {
                            Some((n, v)) => (vec![n.to_string()], Some(v.to_string())),
                            None => (vec![long.to_string()], None),
                        }
                    } else {
                        // A short bundle: letters until one takes a value.
                        let mut names = Vec::new();
                        let mut val = None;
                        for (k, c) in opt.char_indices() {
                            let n = c.to_string();
                            let takes = spec.values.contains(&n) || spec.code_flags.contains(&n);
                            names.push(n);
                            if takes {
                                let rest = &opt[k + c.len_utf8()..];
                                if !rest.is_empty() {
                                    val = Some(rest.to_string());
                                }
                                break;
                            }
                        }
                        (names, val)
                    };
                let last = names.last().cloned().unwrap_or_default();
                if names.iter().any(|n| spec.no_run_flags.contains(n)) {
                    return;
                }
                let takes_value = spec.values.contains(&last) || spec.code_flags.contains(&last);
                let value = if takes_value {
                    match inline_val {
                        Some(v) => Some(Word::lit(&v)),
                        None => {
                            i += 1;
                            args.get(i).cloned()
                        }
                    }
                } else {
                    None
                };
                if spec.appends_input && matches!(last.as_str(), "I" | "i" | "replace") {
                    replace = Some(
                        value
                            .as_ref()
                            .map_or_else(|| "{}".to_string(), |v| v.text.clone()),
                    );
                }
                if spec.code_flags.contains(&last) {
                    if let Some(v) = value {
                        self.code_word(&v, &format!("{name} -{last}"), cmd, env, out);
                    }
                }
                i += 1;
                if spec.argv_flags.contains(&last) {
                    // `nix develop -c CMD ARGS…`: the rest is the command.
                    after_dashdash = true;
                    break;
                }
                continue;
            }
            if skip > 0 {
                skip -= 1;
                i += 1;
                continue;
            }
            if spec.dashdash || spec.no_command {
                // Tool specs or files before the command (`mise exec node@20 -- CMD`).
                i += 1;
                continue;
            }
            break;
        }
        if (spec.dashdash || spec.no_command) && !after_dashdash {
            let dashed = i > 0 && args.get(i - 1).is_some_and(|a| a.text == "--");
            if spec.no_command || !dashed {
                return;
            }
        }
        let rest = &args[i.min(args.len())..];
        if rest.is_empty() {
            return;
        }
        let mut inner_cmd = cmd.clone();
        inner_cmd.assigns.extend(env_assigns);
        inner_cmd.origin = if cmd.origin.is_empty() {
            origin
        } else {
            format!("{} › {origin}", cmd.origin)
        };
        if spec.joins {
            if rest.iter().any(Word::is_dynamic) {
                let mut inv = self.invocation(&inner_cmd, &DYN.to_string(), false, rest, env);
                inv.code_from = CodeFrom::Unseen;
                out.invocations.push(inv);
            } else {
                let code = rest
                    .iter()
                    .map(|w| w.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                self.nested_code(&code, name, &inner_cmd, env, out);
            }
            return;
        }
        if let [one] = rest {
            if !one.is_dynamic() && one.text.contains(char::is_whitespace) {
                // `watchexec 'cargo test && x'`, `screen -dm 'a; b'`: one word with spaces is
                // run by a shell.
                self.nested_code(&one.text, name, &inner_cmd, env, out);
                return;
            }
        }
        if let Some(at) = rest
            .iter()
            .position(|w| w.text == ":::" || w.text == ":::+")
        {
            // GNU parallel(1): the words after `:::` are the inputs; with no command before
            // them each input is a command line, else each is appended to (or replaces `{}` in)
            // the command.
            let (command, inputs) = (&rest[..at], &rest[at + 1..]);
            for input in inputs
                .iter()
                .filter(|w| !w.text.starts_with(":::"))
                .take(MAX_EACH_ARG)
            {
                if command.is_empty() {
                    let from = self.code_word(input, &format!("{name} :::"), &inner_cmd, env, out);
                    if from == CodeFrom::Unseen {
                        let mut inv =
                            self.invocation(&inner_cmd, &DYN.to_string(), false, &[], env);
                        inv.code_from = CodeFrom::Unseen;
                        out.invocations.push(inv);
                    }
                } else {
                    let mut line: Vec<Word> = command
                        .iter()
                        .map(|w| Word {
                            text: w.text.replace("{}", &input.text),
                            ..w.clone()
                        })
                        .collect();
                    if !command.iter().any(|w| w.text.contains("{}")) {
                        line.push(input.clone());
                    }
                    self.argv(&inner_cmd, &line, env, out, hops + 1);
                }
            }
            return;
        }
        let mut inner: Vec<Word> = rest.to_vec();
        if spec.appends_input {
            // What xargs reads, when it is known (`echo / | xargs rm -rf`, `<<< /`).
            let input: Option<Vec<String>> = match &cmd.stdin {
                Stdin::Text(w) if !w.is_dynamic() => {
                    Some(w.text.split_whitespace().map(str::to_string).collect())
                }
                Stdin::Pipe(up) => up
                    .last()
                    .and_then(|u| u.output.as_ref())
                    .map(|t| t.split_whitespace().map(str::to_string).collect()),
                _ => None,
            };
            let input = input.filter(|v: &Vec<String>| !v.is_empty() && v.len() <= 16);
            inner_cmd.stdin = Stdin::Inherited;
            if let Some(repl) = replace {
                let values: Vec<String> =
                    input.unwrap_or_else(|| vec![find_root_input(&cmd.stdin).text]);
                for v in values {
                    let replaced: Vec<Word> = inner
                        .iter()
                        .map(|w| {
                            let mut w = w.clone();
                            w.text = w.text.replace(&repl, &v);
                            w
                        })
                        .collect();
                    self.argv(&inner_cmd, &replaced, env, out, hops + 1);
                }
                return;
            }
            match input {
                Some(v) => inner.extend(v.iter().map(|t| Word::lit(t))),
                None => inner.push(find_root_input(&cmd.stdin)),
            }
        }
        self.argv(&inner_cmd, &inner, env, out, hops + 1);
    }

    pub(super) fn find_exec(
        &self,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        // Roots: positionals before the first expression word.
        let mut roots = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let t = &args[i].text;
            if t.starts_with('-') || t == "(" || t == "!" {
                break;
            }
            roots.push(args[i].clone());
            i += 1;
        }
        if roots.is_empty() {
            roots.push(Word::lit("."));
        }
        inv.path_args = roots.clone();
        let placeholder = match roots.as_slice() {
            [one] if !one.is_dynamic() => {
                let mut w = one.clone();
                w.text = format!("{}/{}", one.text.trim_end_matches('/'), DYN);
                w
            }
            _ => Word::dynamic("{}"),
        };
        if args.iter().any(|a| a.text == "-delete") {
            inv.writes.extend(roots.iter().cloned());
            inv.flags.push(("delete".into(), None));
        }
        while i < args.len() {
            let t = args[i].text.as_str();
            if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
                let mut inner = Vec::new();
                i += 1;
                while i < args.len() && args[i].text != ";" && args[i].text != "+" {
                    let w = &args[i];
                    if w.text.contains("{}") {
                        let mut p = placeholder.clone();
                        p.text = w.text.replace("{}", &placeholder.text);
                        inner.push(p);
                    } else {
                        inner.push(w.clone());
                    }
                    i += 1;
                }
                let mut c = cmd.clone();
                c.origin = if cmd.origin.is_empty() {
                    format!("find {t}")
                } else {
                    format!("{} › find {t}", cmd.origin)
                };
                c.redirects.clear();
                c.stdin = Stdin::Inherited;
                self.argv(&c, &inner, env, out, hops + 1);
            } else if matches!(t, "-fprint" | "-fprintf" | "-fls" | "-fprint0") {
                if let Some(w) = args.get(i + 1) {
                    inv.writes.push(w.clone());
                }
            }
            i += 1;
        }
    }
}

/// What `xargs` appends when its input is unknown: a name under the root of a `find ROOT …`
/// feeding it (`find src -print0 | xargs -0 sed -i …`), else anything.
pub(super) fn find_root_input(stdin: &Stdin) -> Word {
    let Stdin::Pipe(up) = stdin else {
        return Word::dynamic("(input)");
    };
    let Some(u) = up.last() else {
        return Word::dynamic("(input)");
    };
    let is_find = u.argv.first().is_some_and(|p| {
        !p.is_dynamic() && matches!(basename(&p.text).as_str(), "find" | "fd" | "fdfind")
    });
    if !is_find || u.opaque {
        return Word::dynamic("(input)");
    }
    let roots: Vec<&Word> = u.argv[1..]
        .iter()
        .take_while(|w| !w.text.starts_with('-') && w.text != "(" && w.text != "!")
        .collect();
    let root = match roots.as_slice() {
        [] => ".".to_string(),
        [one] if one.as_static().is_some() && !one.text.starts_with('-') => one.text.clone(),
        _ => return Word::dynamic("(input)"),
    };
    if basename(&u.argv[0].text) != "find" {
        return Word::dynamic("(input)");
    }
    let mut w = Word::lit(&root);
    w.text = format!("{}/{}", root.trim_end_matches('/'), DYN);
    w.raw = "(input)".to_string();
    w
}
