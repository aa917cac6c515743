//! Code in another language (`python -c`, `node -e`, code on stdin or in an option's value):
//! the interpreter it runs in, what the code calls and imports, and the shell commands in its
//! string literals.

use crate::ir::{CodeFrom, Env, FileContent, InlineKind, Invocation, SimpleCmd, Stdin, Word};
use crate::pathname::{basename, expand_tilde, lexical, looks_like_path};
use crate::schema::{CodeScan, InterpreterSpec};

use super::{Analysis, Normalizer, GLOB_HOPS};

impl Normalizer {
    /// The interpreter table entry whose `programs` globs match `prog`, with its name.
    pub(super) fn interpreter(&self, prog: &str) -> Option<(String, &InterpreterSpec)> {
        self.interp_globs
            .iter()
            .find(|(g, _)| g.matches(prog))
            .and_then(|(_, name)| {
                self.tables
                    .interpreters
                    .get(name)
                    .map(|s| (name.clone(), s))
            })
    }

    /// Code an interpreter or shell runs: `python -m MODULE`'s argv, code given to a code flag
    /// (`-c`, `-e`) or as the first positional (awk), a script, a process substitution or
    /// standard input.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn interpreter_code(
        &self,
        cmd: &SimpleCmd,
        iname: &str,
        spec: &InterpreterSpec,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        if iname == "python" && self.python_module(cmd, inv, env, out, hops) {
            return;
        }
        let prog = inv.program.clone();
        if spec.shell && inv.has_flag("s") && !inv.has_flag("c") {
            inv.code_from = self.stdin_code(cmd, &prog, env, out);
            return;
        }
        let (mut code, from_file, no_code) = code_in_flags(spec, inv);
        if code.is_none() && !from_file && !no_code {
            if !spec.code_positional {
                self.positional_code(cmd, spec, inv, env, out, hops);
                return;
            }
            code = inv.positionals.first().cloned();
        }
        let Some(code) = code else { return };
        let origin = format!("{prog} -c");
        if spec.shell {
            inv.code_from = self.code_word(&code, &origin, cmd, env, out);
            if inv.code_from == CodeFrom::Unseen && !code.is_dynamic() {
                inv.unparsed = Some(code.text.clone());
            }
        } else if code.is_dynamic() {
            inv.code_from = CodeFrom::Unseen;
        } else {
            inv.code_from = CodeFrom::Seen;
            self.scan_code(&code.text, &origin, cmd, inv, env, out);
        }
    }

    /// `python -m pip install x` runs `pip install x`: judged as that argv. False when there is
    /// no `-m MODULE`.
    fn python_module(
        &self,
        cmd: &SimpleCmd,
        inv: &Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) -> bool {
        let Some((_, Some(module))) = inv.flags.iter().find(|(n, _)| n == "m") else {
            return false;
        };
        let mut argv = vec![module.clone()];
        // Every word after the module is its argument, options included (`-m pip
        // install -r FILE`): python's own option table does not apply to them.
        let after = inv
            .words
            .iter()
            .position(|w| w.text == module.text || w.text == format!("-m{}", module.text))
            .map_or(inv.words.len(), |i| i + 1);
        argv.extend(inv.words[after.min(inv.words.len())..].iter().cloned());
        self.argv(cmd, &argv, env, out, hops + 1);
        true
    }

    /// No code flag: the first positional is a process substitution, standard input (`-`), or
    /// a script; with no positional the code is on standard input.
    fn positional_code(
        &self,
        cmd: &SimpleCmd,
        spec: &InterpreterSpec,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let prog = inv.program.clone();
        let Some(first) = inv.positionals.first().cloned() else {
            inv.code_from = self.code_on_stdin(cmd, spec, &prog, inv, env, out);
            return;
        };
        if let Some(src) = &first.procsub {
            inv.code_from = self.upstream_code(src, cmd, &format!("{prog} <(…)"), env, out);
            return;
        }
        if first.text == "-" || first.text == "/dev/stdin" {
            inv.code_from = self.code_on_stdin(cmd, spec, &prog, inv, env, out);
            return;
        }
        self.script_code(cmd, spec, &first, inv, env, out, hops);
    }

    /// The code on standard input: a shell's is parsed as a script, another interpreter's is
    /// scanned.
    fn code_on_stdin(
        &self,
        cmd: &SimpleCmd,
        spec: &InterpreterSpec,
        prog: &str,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if spec.shell {
            self.stdin_code(cmd, prog, env, out)
        } else {
            self.interpreter_stdin(cmd, prog, inv, env, out)
        }
    }

    /// A script file: visible when written earlier in the same command, or (for a shell) read
    /// where the hook runs; one airlock cannot read followed by what looks like a command
    /// (`bash ./run.sh sudo id`) has that command judged as a guess.
    #[allow(clippy::too_many_arguments)]
    fn script_code(
        &self,
        cmd: &SimpleCmd,
        spec: &InterpreterSpec,
        script: &Word,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
        hops: usize,
    ) {
        let prog = inv.program.clone();
        match self.written_script(cmd, script, env, out) {
            Some(CodeFrom::NotCode) => {
                let path = lexical(&format!(
                    "{}/{}",
                    cmd.cwd.as_deref().unwrap_or("/"),
                    script.text
                ));
                let text = cmd.files.iter().find_map(|(p, c)| match c {
                    FileContent::Text(t) if *p == path || *p == script.text => Some(t.clone()),
                    _ => None,
                });
                if let Some(text) = text {
                    inv.code_from = CodeFrom::Seen;
                    let origin = format!("{prog} {}", script.text);
                    self.scan_code(&text, &origin, cmd, inv, env, out);
                }
            }
            Some(from) => inv.code_from = from,
            None => {
                if spec.shell {
                    // `bash x.sh` of a script on disk: judged by its content.
                    if let Some(from) = self.script_file(cmd, script, env, out) {
                        inv.code_from = from;
                        return;
                    }
                }
                let args = inv.positionals.get(1..).unwrap_or(&[]).to_vec();
                if !args.is_empty() && hops < GLOB_HOPS {
                    self.speculate(cmd, &basename(&script.text), &args, env, out, hops);
                }
            }
        }
    }

    /// Code in another language on stdin (`python3 <<'EOF'`, `cat <<EOF | node`): scanned like
    /// inline code when its text is known; fetched or decoded code keeps its origin.
    pub(super) fn interpreter_stdin(
        &self,
        cmd: &SimpleCmd,
        prog: &str,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        let text = match &cmd.stdin {
            Stdin::Inherited => return CodeFrom::NotCode,
            Stdin::Text(w) if !w.is_dynamic() => w.text.clone(),
            Stdin::Text(_) | Stdin::File(_) => return CodeFrom::Unseen,
            Stdin::Pipe(up) => match self.upstream_kind(up) {
                Some(kind) => return kind,
                None => match up.last() {
                    Some(u) if !u.opaque => match &u.output {
                        Some(t) => t.clone(),
                        None => return CodeFrom::Unseen,
                    },
                    _ => return CodeFrom::Unseen,
                },
            },
        };
        self.scan_code(&text, &format!("{prog} <<…"), cmd, inv, env, out);
        CodeFrom::Seen
    }

    /// Scans code in another language: what it calls, and any shell commands in its strings.
    pub(super) fn scan_code(
        &self,
        code: &str,
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) {
        let scan = &self.tables.code_scan;
        let has = |list: &[String]| list.iter().any(|s| code.contains(s.as_str()));
        let found = scan_kinds(scan, code, inv);
        let mut exec = found.exec;
        let mut literals = string_literals(code);
        // Strings the code computes from its literals (joins, concatenation, decodings) are
        // judged like its literals; names looked up at run time may be calls that run.
        let derived = crate::inline::derive(code);
        literals.extend(derived.strings.iter().cloned());
        // `getattr(os, 'system')`, and `'sys' + 'tem'` built for a call by variable.
        if !exec
            && derived
                .call_names
                .iter()
                .chain(&derived.strings)
                .any(|n| is_exec_name(n))
        {
            exec = true;
            inv.inline.push(InlineKind::Exec);
        }
        let segments = command_word_segments(scan, code);
        if !segments.is_empty() && !exec {
            exec = true;
            inv.inline.push(InlineKind::Exec);
        }
        literals.extend(segments);
        let home_based = has(&scan.home);
        let write = found.delete || writes_code(scan, code, &literals);
        let acts = exec || write || found.delete || inv.inline.contains(&InlineKind::Network);
        // A call named at run time matters where the code could reach something that acts
        // (`getattr(os, n)`); `getattr(args, name)` in a script that only computes does not.
        let risky = acts
            || crate::inline::RISKY_MODULES
                .iter()
                .any(|m| code.contains(m));
        if derived.built_import
            || derived.built_name && risky
            || derived.decoded_literal && acts
            || derived.decoded && exec
        {
            inv.inline.push(InlineKind::Opaque);
        }
        // `rmtree($ENV{HOME})`, `os.walk(Path.home())`: code that names the home directory
        // only through a call deletes or lists the home directory itself.
        if home_based && (found.delete || found.walk) && !literals.iter().any(|l| names_path(l)) {
            let home = Word::lit(&env.home);
            if found.delete {
                inv.writes.push(home.clone());
                inv.path_args.push(home.clone());
            }
            inv.reads.push(home);
        }
        for lit in &literals {
            literal_paths(lit, write, home_based, &env.home, inv);
        }
        if exec {
            self.exec_literals(literals, has(&scan.opaque), origin, cmd, inv, env, out);
        }
    }

    /// Strings handed to system()/exec are shell commands: those that parse are analysed. When
    /// one runs a program airlock knows, the call itself needs no review (`subprocess.run(['git',
    /// 'status'])`) unless the code also runs something opaque.
    #[allow(clippy::too_many_arguments)]
    fn exec_literals(
        &self,
        literals: Vec<String>,
        opaque: bool,
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) {
        let mut seen_program = false;
        for lit in literals {
            if lit.trim().is_empty() {
                continue;
            }
            let mut probe = Analysis {
                work: out.work,
                ..Analysis::default()
            };
            let ok = self.nested_code(&lit, origin, cmd, env, &mut probe);
            out.work = probe.work;
            if ok {
                seen_program |= probe
                    .invocations
                    .iter()
                    .any(|i| self.is_known(&i.program) && !self.inert.contains(&i.program));
                out.invocations.extend(probe.invocations);
            }
        }
        if seen_program && !opaque {
            inv.inline.retain(|k| *k != InlineKind::Exec);
        }
    }

    /// Code in another language given as an option's value (`deno eval CODE`): scanned like
    /// `python -c`.
    pub(super) fn inline_value(
        &self,
        value: &Word,
        origin: &str,
        cmd: &SimpleCmd,
        inv: &mut Invocation,
        env: &Env,
        out: &mut Analysis,
    ) -> CodeFrom {
        if value.is_dynamic() {
            return CodeFrom::Unseen;
        }
        self.scan_code(&value.text, origin, cmd, inv, env, out);
        CodeFrom::Seen
    }
}

/// Whether an inline-code string literal names a path (`/etc`, `~/x`, `./y`, `.ssh/id`).
/// A pattern of glob characters alone (`**`, `*`) names no particular path.
pub(super) fn names_path(lit: &str) -> bool {
    let l = lit.trim_start_matches(['+', '<', '>', '|', ' ']);
    l.chars().any(char::is_alphanumeric) && (looks_like_path(&Word::lit(l)) || l.starts_with('~'))
}

/// A bare file name with an extension (`readme.md`, `settings.json`), as code writes them.
pub(super) fn looks_like_file_name(s: &str) -> bool {
    match s.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && (1..=8).contains(&ext.len())
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
                && stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        }
        None => false,
    }
}

/// String literals in code (`'…'`, `"…"`, `` `…` ``), plus adjacent literals of a list joined
/// by spaces (`["rm", "-rf", "/"]` → `rm -rf /`).
pub fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut group: Vec<String> = Vec::new();
    let mut gap_ok = true;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' || c == '`' {
            let mut s = String::new();
            let mut closed = false;
            while let Some(d) = chars.next() {
                if d == '\\' {
                    if let Some(e) = chars.next() {
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            _ => s.push(e),
                        }
                    }
                    continue;
                }
                if d == c {
                    closed = true;
                    break;
                }
                s.push(d);
            }
            if !closed {
                break;
            }
            if !gap_ok {
                flush_group(&mut group, &mut out);
            }
            out.push(s.clone());
            group.push(s);
            gap_ok = false;
        } else if c == ',' || c.is_whitespace() {
            if c == ',' {
                gap_ok = true;
            }
        } else {
            flush_group(&mut group, &mut out);
            gap_ok = true;
        }
    }
    flush_group(&mut group, &mut out);
    out
}

pub(super) fn flush_group(group: &mut Vec<String>, out: &mut Vec<String>) {
    if group.len() > 1 {
        out.push(group.join(" "));
    }
    group.clear();
}

/// Whether a name looked up at run time with a literal (`getattr(os, 'system')`,
/// `require('child_process')`, Ruby `send(:spawn)`) names something that runs programs.
pub(super) fn is_exec_name(name: &str) -> bool {
    let n = name.trim();
    n.starts_with("exec")
        || n.starts_with("spawn")
        || n.starts_with("posix_spawn")
        || matches!(
            n,
            "system"
                | "popen"
                | "Popen"
                | "run"
                | "call"
                | "check_call"
                | "check_output"
                | "getoutput"
                | "getstatusoutput"
                | "subprocess"
                | "child_process"
                | "node:child_process"
                | "pty"
                | "shell_exec"
                | "passthru"
                | "proc_open"
                | "startfile"
                | "fork"
                | "`"
        )
}

/// `str::floor_char_boundary` is unstable; a stable stand-in.
pub(super) trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for String {
    fn floor_char_boundary_compat(&self, i: usize) -> usize {
        let mut i = i.min(self.len());
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// What the `code_scan` word lists found in inline code (each also pushed to `inv.inline`;
/// network code also sets `inv.network`).
#[derive(Debug, Clone, Copy)]
struct ScanKinds {
    exec: bool,
    delete: bool,
    walk: bool,
}

/// Marks `inv` with the kinds of behaviour `code` names (`code_scan`'s `exec`, `network`,
/// `delete`, `walk` lists).
fn scan_kinds(scan: &CodeScan, code: &str, inv: &mut Invocation) -> ScanKinds {
    let has = |list: &[String]| list.iter().any(|s| code.contains(s.as_str()));
    let exec = has(&scan.exec);
    if exec {
        inv.inline.push(InlineKind::Exec);
    }
    if has(&scan.network) {
        inv.inline.push(InlineKind::Network);
        inv.network = true;
    }
    let delete = has(&scan.delete);
    if delete {
        inv.inline.push(InlineKind::Delete);
    }
    let walk = has(&scan.walk);
    if walk {
        inv.inline.push(InlineKind::Walk);
    }
    ScanKinds { exec, delete, walk }
}

/// Commands written without quotes after a keyword (Tcl/expect `spawn sudo id`, Perl `qw(sudo
/// id)`, AppleScript `do shell script`): each up to the next `;`, newline or closing bracket.
fn command_word_segments(scan: &CodeScan, code: &str) -> Vec<String> {
    let mut segments = Vec::new();
    for kw in &scan.command_words {
        let mut rest = code;
        while let Some(i) = rest.find(kw.as_str()) {
            let after = &rest[i + kw.len()..];
            let end = after
                .find([';', '\n', ']', '}', ')'])
                .unwrap_or(after.len());
            let segment = after[..end].trim().trim_matches(['"', '\'']);
            if !segment.is_empty() {
                segments.push(segment.to_string());
            }
            rest = &after[end.min(after.len())..];
        }
    }
    segments
}

/// Whether the code writes files: a write call outside the printing calls (`not_write`), or a
/// literal that is a write mode (`'w'`, Perl's `">file"`).
fn writes_code(scan: &CodeScan, code: &str, literals: &[String]) -> bool {
    let mut printing = code.to_string();
    for s in &scan.not_write {
        printing = printing.replace(s.as_str(), "");
    }
    scan.write.iter().any(|s| printing.contains(s.as_str()))
        || literals.iter().any(|l| {
            let l = l.trim();
            scan.write_modes.iter().any(|m| m == l) || l.starts_with('>') || l.starts_with("+<")
        })
}

/// A string literal that names a path (or, in code that writes, a bare file name): read, or
/// written when the code writes; relative to the home directory too when the code builds
/// paths from it (`Path.home() / '.bashrc'`); a glob pattern is judged by every path it names.
fn literal_paths(lit: &str, write: bool, home_based: bool, home: &str, inv: &mut Invocation) {
    // Perl's `open(F, ">file")`: the mode is part of the string.
    let lit = lit.trim_start_matches(['+', '<', '>', '|', ' ']);
    let w = Word::lit(lit);
    let named = looks_like_path(&w) || lit.starts_with('~');
    // `glob.glob('~/.ss?/id_*')`: judged by every path the pattern can name.
    let glob = lit.contains(['*', '?', '[']);
    if !(named || write && looks_like_file_name(lit)) {
        return;
    }
    // `Path.home() / '.bashrc'`, `os.homedir() + '/.ssh/x'`: relative to the home.
    // (`homedir() + '/.zshrc'` too: a literal starting with `/.` is a dotfile name.)
    if home_based && (!lit.starts_with(['/', '~']) || lit.starts_with("/.")) {
        let under = Word::lit(&format!(
            "{}/{}",
            home,
            lit.trim_start_matches("./").trim_start_matches('/')
        ));
        if write {
            inv.writes.push(under.clone());
            inv.path_args.push(under);
        } else {
            inv.reads.push(under);
        }
    }
    let mut w = Word::lit(&expand_tilde(lit, home));
    w.glob = glob;
    if write {
        inv.writes.push(w.clone());
        inv.path_args.push(w);
    } else {
        inv.reads.push(w);
    }
}

/// The code given to a code flag (`-c CODE`; a bundled `-lc` takes the first positional), and
/// whether a flag names a script file or says no code runs.
fn code_in_flags(spec: &InterpreterSpec, inv: &Invocation) -> (Option<Word>, bool, bool) {
    let mut code: Option<Word> = None;
    let mut from_file = false;
    let mut no_code = false;
    for (name, val) in &inv.flags {
        if spec.code_flags.contains(name) {
            code = val.clone();
            if code.is_none() {
                // Bundled `-lc` style: the code is the first positional.
                code = inv.positionals.first().cloned();
            }
        }
        if spec.file_flags.contains(name) {
            from_file = true;
        }
        if spec.no_code_flags.contains(name) {
            no_code = true;
        }
    }
    (code, from_file, no_code)
}
