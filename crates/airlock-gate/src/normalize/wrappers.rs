//! Wrappers: programs that run another command from their arguments (`sudo`, `env`, `xargs`,
//! `timeout`, runners such as `npx`; the `wrappers` table), and `find -exec`.

use crate::ir::{CodeFrom, Env, Invocation, SimpleCmd, Stdin, Word, DYN};
use crate::pathname::basename;
use crate::schema::WrapperSpec;

use super::invocation::is_assignment;
use super::{Analysis, Normalizer, MAX_EACH_ARG};

impl Normalizer {
    /// A wrapper (`sudo`, `env`, `xargs`, `timeout`, …) with `args`: its own options are read
    /// (values that are code judged), then the command it runs is judged as its own argv, as
    /// a shell line, per GNU parallel input, or with what xargs appends.
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
        let Some(parsed) = self.wrapper_args(cmd, name, spec, args, env, out) else {
            return;
        };
        let Some(rest) = wrapped_command(spec, args, &parsed) else {
            return;
        };
        let mut inner_cmd = cmd.clone();
        inner_cmd.assigns.extend(parsed.env_assigns);
        inner_cmd.origin = if cmd.origin.is_empty() {
            name.to_string()
        } else {
            format!("{} › {name}", cmd.origin)
        };
        if spec.joins {
            self.joined_command(rest, name, &inner_cmd, env, out);
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
            let (command, inputs) = (&rest[..at], &rest[at + 1..]);
            self.parallel_inputs(command, inputs, name, &inner_cmd, env, out, hops);
            return;
        }
        if spec.appends_input {
            self.xargs_command(cmd, inner_cmd, rest, parsed.replace, env, out, hops);
            return;
        }
        self.argv(&inner_cmd, rest, env, out, hops + 1);
    }

    /// Reads the wrapper's own options and words up to the command it runs: `NAME=value`
    /// words, options (judging the values of `code_flags`), skipped words. `None` when an
    /// option says the command does not run (`no_run_flags`).
    fn wrapper_args(
        &self,
        cmd: &SimpleCmd,
        name: &str,
        spec: &WrapperSpec,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
    ) -> Option<WrapperArgs> {
        let mut i = 0;
        let mut skip = spec.skip;
        let mut parsed = WrapperArgs::default();
        while i < args.len() {
            let a = &args[i];
            let t = a.text.as_str();
            if t == "--" {
                i += 1;
                parsed.after_dashdash = !spec.no_command;
                break;
            }
            if spec.assigns && !a.is_dynamic() && is_assignment(t) {
                if let Some((n, v)) = t.split_once('=') {
                    if self.is_exec_env(n) {
                        self.exec_env_value(n, &Word::lit(v), cmd, env, out);
                    }
                    parsed.env_assigns.push((
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
                match self.wrapper_option(cmd, name, spec, opt, args, i, env, out, &mut parsed) {
                    OptionStep::NoRun => return None,
                    OptionStep::Next(next) => i = next,
                    OptionStep::CommandAt(next) => {
                        i = next;
                        break;
                    }
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
        parsed.start = i;
        Some(parsed)
    }

    /// One option of a wrapper at `args[i]` (`opt` without its first dash): its value (in the
    /// word or the next one), judged when it is code (`code_flags`) and kept when it is
    /// xargs's replace string.
    #[allow(clippy::too_many_arguments)]
    fn wrapper_option(
        &self,
        cmd: &SimpleCmd,
        name: &str,
        spec: &WrapperSpec,
        opt: &str,
        args: &[Word],
        i: usize,
        env: &Env,
        out: &mut Analysis,
        parsed: &mut WrapperArgs,
    ) -> OptionStep {
        let (names, inline_val) = option_names(opt, spec);
        let last = names.last().cloned().unwrap_or_default();
        if names.iter().any(|n| spec.no_run_flags.contains(n)) {
            return OptionStep::NoRun;
        }
        let takes_value = spec.values.contains(&last) || spec.code_flags.contains(&last);
        let mut next = i + 1;
        let value = match (takes_value, inline_val) {
            (true, Some(v)) => Some(Word::lit(&v)),
            (true, None) => {
                next += 1;
                args.get(i + 1).cloned()
            }
            (false, _) => None,
        };
        if spec.appends_input && matches!(last.as_str(), "I" | "i" | "replace") {
            parsed.replace = Some(
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
        if spec.argv_flags.contains(&last) {
            // `nix develop -c CMD ARGS…`: the rest is the command.
            parsed.after_dashdash = true;
            return OptionStep::CommandAt(next);
        }
        OptionStep::Next(next)
    }

    /// A wrapper that joins its words into one shell command line (`watch`, `ssh`-like): the
    /// line is parsed as code, or, with a word only known at run time, is code airlock cannot
    /// see.
    fn joined_command(
        &self,
        rest: &[Word],
        name: &str,
        inner_cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
    ) {
        if rest.iter().any(Word::is_dynamic) {
            let mut inv = self.invocation(inner_cmd, &DYN.to_string(), false, rest, env);
            inv.code_from = CodeFrom::Unseen;
            out.invocations.push(inv);
        } else {
            let code = rest
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            self.nested_code(&code, name, inner_cmd, env, out);
        }
    }

    /// GNU parallel(1): the words after `:::` are the inputs; with no command before them each
    /// input is a command line, else each is appended to (or replaces `{}` in) the command.
    #[allow(clippy::too_many_arguments)]
    fn parallel_inputs(
        &self,
        command: &[Word],
        inputs: &[Word],
        name: &str,
        inner_cmd: &SimpleCmd,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        for input in inputs
            .iter()
            .filter(|w| !w.text.starts_with(":::"))
            .take(MAX_EACH_ARG)
        {
            if command.is_empty() {
                let from = self.code_word(input, &format!("{name} :::"), inner_cmd, env, out);
                if from == CodeFrom::Unseen {
                    let mut inv = self.invocation(inner_cmd, &DYN.to_string(), false, &[], env);
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
                self.argv(inner_cmd, &line, env, out, hops + 1);
            }
        }
    }

    /// A wrapper that appends what it reads to the command (xargs(1)): the command with the
    /// input when it is known (`echo / | xargs rm -rf`, `<<< /`), else with a name under the
    /// root of the `find` feeding it; with `-I STR`, once per input with `STR` replaced.
    #[allow(clippy::too_many_arguments)]
    fn xargs_command(
        &self,
        cmd: &SimpleCmd,
        mut inner_cmd: SimpleCmd,
        rest: &[Word],
        replace: Option<String>,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
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
                let replaced: Vec<Word> = rest
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
        let mut inner: Vec<Word> = rest.to_vec();
        match input {
            Some(v) => inner.extend(v.iter().map(|t| Word::lit(t))),
            None => inner.push(find_root_input(&cmd.stdin)),
        }
        self.argv(&inner_cmd, &inner, env, out, hops + 1);
    }

    /// find(1): its roots are path arguments (written with `-delete`), the commands of `-exec`,
    /// `-execdir`, `-ok` and `-okdir` are judged with `{}` standing for a name under the root,
    /// and `-fprint FILE` writes FILE.
    pub(super) fn find_exec(
        &self,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        args: &[Word],
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let (roots, mut i) = find_roots(args);
        inv.path_args = roots.clone();
        let placeholder = root_placeholder(&roots);
        if args.iter().any(|a| a.text == "-delete") {
            inv.writes.extend(roots.iter().cloned());
            inv.flags.push(("delete".into(), None));
        }
        while i < args.len() {
            let t = args[i].text.as_str();
            if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
                let (inner, end) = exec_argv(args, i + 1, &placeholder);
                i = end;
                self.argv(&exec_cmd(cmd, t), &inner, env, out, hops + 1);
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

/// What a wrapper's own options and words said, up to the command it runs.
#[derive(Debug, Default)]
struct WrapperArgs {
    /// Index of the command's first word (or `args.len()` when there is none).
    start: usize,
    /// The command came after `--` (or after an option whose rest is the command).
    after_dashdash: bool,
    /// `NAME=value` words put in the command's environment (`env X=1 CMD`).
    env_assigns: Vec<(String, Word)>,
    /// `xargs -I STR`: the string each input replaces.
    replace: Option<String>,
}

/// The option names of `-opt` (without its first dash) and the value written in it: a long
/// option `--name[=value]`, or a short bundle whose letters run until one takes a value (the
/// rest of the bundle is that value).
fn option_names(opt: &str, spec: &WrapperSpec) -> (Vec<String>, Option<String>) {
    if let Some(long) = opt.strip_prefix('-') {
        return match long.split_once('=') {
            Some((n, v)) => (vec![n.to_string()], Some(v.to_string())),
            None => (vec![long.to_string()], None),
        };
    }
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
}

/// The words of the command a wrapper runs, `None` when it runs none: a wrapper whose command
/// follows `--` (`dashdash`) runs nothing without one, a `no_command` wrapper never does.
fn wrapped_command<'a>(
    spec: &WrapperSpec,
    args: &'a [Word],
    parsed: &WrapperArgs,
) -> Option<&'a [Word]> {
    let i = parsed.start;
    if (spec.dashdash || spec.no_command) && !parsed.after_dashdash {
        let dashed = i > 0 && args.get(i - 1).is_some_and(|a| a.text == "--");
        if spec.no_command || !dashed {
            return None;
        }
    }
    let rest = &args[i.min(args.len())..];
    (!rest.is_empty()).then_some(rest)
}

/// find(1)'s roots: the words before the first expression word (`.` when there are none),
/// and the index of that word.
fn find_roots(args: &[Word]) -> (Vec<Word>, usize) {
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
    (roots, i)
}

/// What `{}` stands for: a name under the one static root, else a word only known at run
/// time.
fn root_placeholder(roots: &[Word]) -> Word {
    match roots {
        [one] if !one.is_dynamic() => {
            let mut w = one.clone();
            w.text = format!("{}/{}", one.text.trim_end_matches('/'), DYN);
            w
        }
        _ => Word::dynamic("{}"),
    }
}

/// The command of `-exec CMD… ;` starting at `args[start]`, with `{}` replaced by
/// `placeholder`, and the index of its terminating `;` or `+` (or `args.len()`).
fn exec_argv(args: &[Word], start: usize, placeholder: &Word) -> (Vec<Word>, usize) {
    let mut inner = Vec::new();
    let mut i = start;
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
    (inner, i)
}

/// The command an `-exec`-style action (`t`) runs in: `cmd` with that origin, without its
/// redirections and input.
fn exec_cmd(cmd: &SimpleCmd, t: &str) -> SimpleCmd {
    let mut c = cmd.clone();
    c.origin = if cmd.origin.is_empty() {
        format!("find {t}")
    } else {
        format!("{} › find {t}", cmd.origin)
    };
    c.redirects.clear();
    c.stdin = Stdin::Inherited;
    c
}

/// What one wrapper option says about the words that follow.
#[derive(Debug, Clone, Copy)]
enum OptionStep {
    /// The command does not run (`no_run_flags`).
    NoRun,
    /// More of the wrapper's words start at this index.
    Next(usize),
    /// The command starts at this index.
    CommandAt(usize),
}
