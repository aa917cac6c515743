//! Inline interpreter code (`python3 -c`, `node -e`, heredocs piped into `perl`, …): the strings
//! it builds at run time from literals, as far as a tokenizer can tell without a full parser.
//!
//! [`derive()`] reads the code as a stream of string literals, names and punctuation, and
//! returns
//! - the strings the code *computes* from its literals: concatenation (`'.git/' + 'hooks'`,
//!   Perl/PHP `.`, Python's adjacent literals), path joins (`os.path.join('.git', 'hooks')`,
//!   `path.join`, `File.join`, `'/'.join([...])`, `[...].join('/')`), pathlib's `/`
//!   (`Path('.git') / 'hooks'`), and the obvious decodings of a literal when the code decodes
//!   (base64, rot13, reversal, `chr(…)`/`fromCharCode(…)` sequences, `\x` escapes, hex);
//!   the caller judges them like the code's own literals (paths written, commands run);
//! - whether a *name* the code calls or imports is built at run time (`getattr(os, 'sys' +
//!   'tem')`, `__import__(x)`, `require('child' + '_process')`, `globals()[…]`, PHP `$f(…)`,
//!   Ruby `send(x)`), or strings are decoded at run time: a static scan cannot know what such
//!   code does, so when it also writes, runs or sends, a person decides;
//! - the names called through `getattr`/`send`/`require` with literal arguments (`getattr(os,
//!   'system')` calls `system`).
//!
//! The tokenizer is linear in the code's length and fails toward seeing more: an unclosed
//! string ends the scan with what was found so far.

use base64::Engine as _;

/// Most strings [`derive()`] returns for one piece of code (hostile input cannot make the caller
/// judge more).
const MAX_DERIVED: usize = 256;
/// Most tokens one call's argument list is read for.
const MAX_CALL_TOKENS: usize = 512;
/// Most characters of code tokenized.
const MAX_CODE: usize = 256 * 1024;

/// What [`derive()`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Derived {
    /// Strings computed from the code's literals, to be judged like literals.
    pub strings: Vec<String>,
    /// A called name is built at run time (`getattr(os, n)`, `$f(…)`, `os[x](…)`).
    pub built_name: bool,
    /// A module loaded by a name built at run time (`__import__(m)`, `require(x)`): any code.
    pub built_import: bool,
    /// The code decodes or computes strings at run time (base64, rot13, `chr`, reversal).
    pub decoded: bool,
    /// Names called through `getattr`, `send`, `require`, `__import__` with literal arguments.
    pub call_names: Vec<String>,
    /// One of the code's literals decodes to text (`b64decode('c3VkbyBpZA==')`): an
    /// obfuscation, whatever the decoded text is.
    pub decoded_literal: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Ident(String),
    Num(i64),
    Punct(char),
}

/// Splits `code` into tokens: string literals (quotes `'`, `"`, `` ` ``, Python triple quotes
/// and prefixes such as `r`/`b`/`f`, with `\n`, `\t`, `\xNN`, `\uNNNN` decoded), names
/// (letters, digits, `_`, `$`, `.`, `::`, `->`), integers and single punctuation characters.
fn tokenize(code: &str) -> (Vec<Tok>, Vec<String>) {
    let chars: Vec<char> = code.chars().take(MAX_CODE).collect();
    let mut out = Vec::new();
    let mut escaped = Vec::new();
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            match read_string(&chars, i) {
                Some((s, next, esc)) => {
                    if esc {
                        escaped.push(s.clone());
                    }
                    out.push(Tok::Str(s));
                    i = next;
                }
                None => break,
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let n = if let Some(h) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
                i64::from_str_radix(h, 16).ok()
            } else if let Some(o) = text.strip_prefix("0o") {
                i64::from_str_radix(o, 8).ok()
            } else {
                text.parse().ok()
            };
            out.push(n.map(Tok::Num).unwrap_or(Tok::Ident(text)));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                let word = d.is_alphanumeric() || d == '_' || d == '$';
                let dot = d == '.'
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_alphabetic() || *n == '_');
                if word || dot {
                    i += 1;
                } else if (d == ':' && chars.get(i + 1) == Some(&':'))
                    || (d == '-' && chars.get(i + 1) == Some(&'>'))
                {
                    i += 2;
                } else {
                    break;
                }
            }
            let name: String = chars[start..i].iter().collect();
            // Python string prefixes: `b'..'`, `rb"..."`, `f'…'`.
            let is_prefix = name.len() <= 2
                && name
                    .chars()
                    .all(|c| matches!(c.to_ascii_lowercase(), 'r' | 'b' | 'f' | 'u'))
                && chars.get(i).is_some_and(|q| *q == '\'' || *q == '"');
            if !is_prefix {
                out.push(Tok::Ident(name));
            }
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    (out, escaped)
}

/// Reads the string literal opening at `chars[start]`; returns its value, the index after it
/// and whether a `\x`/`\u` escape was decoded, or `None` when it is not closed.
fn read_string(chars: &[char], start: usize) -> Option<(String, usize, bool)> {
    let q = chars[start];
    let triple = q != '`' && chars.get(start + 1) == Some(&q) && chars.get(start + 2) == Some(&q);
    let mut i = if triple { start + 3 } else { start + 1 };
    let mut s = String::new();
    let mut esc = false;
    while i < chars.len() {
        let d = chars[i];
        if d == '\\' {
            let e = *chars.get(i + 1)?;
            i += 2;
            match e {
                'n' => s.push('\n'),
                't' => s.push('\t'),
                '0' => s.push('\0'),
                'x' => {
                    let hex: String = chars.get(i..i + 2).map(|h| h.iter().collect())?;
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) => {
                            s.push(ch);
                            esc = true;
                            i += 2;
                        }
                        None => s.push('x'),
                    }
                }
                'u' => {
                    let hex: String = chars.get(i..i + 4).map(|h| h.iter().collect())?;
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) => {
                            s.push(ch);
                            esc = true;
                            i += 4;
                        }
                        None => s.push('u'),
                    }
                }
                _ => s.push(e),
            }
            continue;
        }
        if d == q {
            if !triple {
                return Some((s, i + 1, esc));
            }
            if chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q) {
                return Some((s, i + 3, esc));
            }
        }
        s.push(d);
        i += 1;
    }
    None
}

/// The last segment of a dotted name (`os.path.join` → `join`).
fn last_segment(name: &str) -> &str {
    name.rsplit(['.', ':', '>']).next().unwrap_or(name)
}

/// Calls whose arguments are path pieces joined with `/`.
fn is_path_join(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with("path.join")
        || n.ends_with("path.resolve")
        || n.ends_with("file.join")
        || n.ends_with("joinpath")
        || n.ends_with("catfile")
        || n.ends_with("catdir")
        || n.ends_with("filepath.join")
        || n == "join_paths"
        || n.ends_with("paths.get")
        || n.ends_with("path.of")
}

/// Constructors whose single string argument is the path itself (`Path('.git')`).
fn is_path_ctor(name: &str) -> bool {
    matches!(
        last_segment(name),
        "Path" | "PurePath" | "PosixPath" | "Pathname" | "File" | "str" | "String" | "new"
    )
}

/// Calls that look a name up at run time: their name argument decides what is called.
fn is_name_lookup(name: &str) -> bool {
    matches!(
        last_segment(name),
        "getattr"
            | "__import__"
            | "import_module"
            | "require"
            | "send"
            | "public_send"
            | "__send__"
            | "method"
            | "const_get"
            | "call_user_func"
            | "call_user_func_array"
    )
}

/// Lookups that load a module (any code) rather than call a member.
fn is_module_loader(name: &str) -> bool {
    matches!(
        last_segment(name),
        "__import__" | "import_module" | "require" | "const_get"
    )
}

/// Substrings naming modules that run programs, touch files or reach into the interpreter:
/// a call whose name is built at run time in code that mentions one may be one of theirs.
pub const RISKY_MODULES: &[&str] = &[
    "import os",
    "from os",
    "os.",
    "(os)",
    "(os,",
    "os[",
    "subprocess",
    "child_process",
    "ctypes",
    "pty",
    "shutil",
    "builtins",
    "__builtins__",
    "Kernel",
    "process.binding",
    "process[",
    "posix",
    "sys.modules",
    "importlib",
    "Open3",
    "IO.",
    "proc_open",
    "shell_exec",
    "POSIX",
];

/// Substrings that decode or compute strings at run time.
const DECODERS: &[&str] = &[
    "b64decode",
    "base64",
    "atob(",
    "Buffer.from",
    "codecs",
    "rot13",
    "rot_13",
    "str_rot13",
    "chr(",
    "fromCharCode",
    "fromhex",
    "unhexlify",
    "[::-1]",
    "reverse",
    "strrev",
    "unpack(",
    "zlib",
    "gzip",
    "marshal",
    "pickle",
    "bytes([",
    "tr/A-Za-z",
    "maketrans",
    "translate(",
];

/// Concatenation operators between literals.
fn is_concat(t: &Tok) -> bool {
    matches!(t, Tok::Punct('+') | Tok::Punct('.'))
}

/// Analyses `code`; see the module docs.
pub fn derive(code: &str) -> Derived {
    let (toks, escaped) = tokenize(code);
    let mut d = Derived {
        decoded: DECODERS.iter().any(|s| code.contains(s)),
        ..Derived::default()
    };
    d.strings.extend(escaped);
    chains(&toks, &mut d);
    calls(&toks, &mut d);
    formats(&toks, &mut d);
    if d.decoded {
        d.decoded_literal = decodings(code, &toks, &mut d);
    }
    d.strings.retain(|s| !s.trim().is_empty());
    d.strings.sort();
    d.strings.dedup();
    d.strings.truncate(MAX_DERIVED);
    d
}

/// The value of a string-valued term starting at `i`: a literal or a path constructor of one
/// (`Path('x')`); returns it and the index after it.
fn term(toks: &[Tok], i: usize) -> Option<(String, usize)> {
    match toks.get(i)? {
        Tok::Str(s) => Some((s.clone(), i + 1)),
        Tok::Ident(n) if is_path_ctor(n) => {
            match (toks.get(i + 1), toks.get(i + 2), toks.get(i + 3)) {
                (Some(Tok::Punct('(')), Some(Tok::Str(s)), Some(Tok::Punct(')'))) => {
                    Some((s.clone(), i + 4))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Formatting of literals: `'%s/hooks' % '.git'`, `'%s/%s' % ('.git', 'hooks')`,
/// `'{}/hooks'.format('.git')`, and the literal parts of f-strings and template literals
/// (`f'{".git"}/hooks'`, `` `${'.git'}/hooks` ``). A placeholder whose value is not a literal
/// becomes `x`.
fn formats(toks: &[Tok], d: &mut Derived) {
    for (i, t) in toks.iter().enumerate() {
        let Tok::Str(tpl) = t else { continue };
        if tpl.contains("{\"") || tpl.contains("{'") {
            d.strings.push(inline_braces(tpl));
        }
        let args: Option<Vec<Option<String>>> = match (toks.get(i + 1), toks.get(i + 2)) {
            (Some(Tok::Punct('%')), Some(Tok::Str(a))) => Some(vec![Some(a.clone())]),
            (Some(Tok::Punct('%')), Some(Tok::Punct('('))) => Some(call_args(toks, i + 2).0),
            (Some(Tok::Punct('.')), Some(Tok::Ident(f)))
                if f == "format" && toks.get(i + 3) == Some(&Tok::Punct('(')) =>
            {
                Some(call_args(toks, i + 3).0)
            }
            _ => None,
        };
        if let Some(args) = args {
            if tpl.contains('%') || tpl.contains('{') {
                d.strings.push(substitute(tpl, &args));
            }
        }
    }
}

/// `tpl` with `%s`-style and `{}`/`{N}`/`{name}` placeholders replaced by `args` in order.
fn substitute(tpl: &str, args: &[Option<String>]) -> String {
    let mut out = String::with_capacity(tpl.len());
    let mut next = args.iter();
    let mut chars = tpl.chars().peekable();
    let val = |a: Option<&Option<String>>| a.and_then(|v| v.clone()).unwrap_or_else(|| "x".into());
    while let Some(c) = chars.next() {
        match c {
            '%' if chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) => {
                chars.next();
                out.push_str(&val(next.next()));
            }
            '%' if chars.peek() == Some(&'%') => {
                chars.next();
                out.push('%');
            }
            '{' => {
                let mut inner = String::new();
                for n in chars.by_ref() {
                    if n == '}' {
                        break;
                    }
                    inner.push(n);
                }
                match inner.parse::<usize>() {
                    Ok(k) => out.push_str(&val(args.get(k))),
                    Err(_) => out.push_str(&val(next.next())),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `{".git"}/hooks` (an f-string or `${'.git'}` template): quoted literals inside braces
/// stand for themselves, other expressions for `x`.
fn inline_braces(tpl: &str) -> String {
    let mut out = String::with_capacity(tpl.len());
    let mut chars = tpl.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek() == Some(&'{') {
            continue;
        }
        if c != '{' {
            out.push(c);
            continue;
        }
        let mut inner = String::new();
        for n in chars.by_ref() {
            if n == '}' {
                break;
            }
            inner.push(n);
        }
        let t = inner.trim();
        let quoted = t.len() >= 2
            && ((t.starts_with('"') && t.ends_with('"'))
                || (t.starts_with('\'') && t.ends_with('\'')));
        if quoted {
            out.push_str(&t[1..t.len() - 1]);
        } else {
            out.push('x');
        }
    }
    out
}

/// Chains of terms joined by `+`, `.`, `/` or nothing (Python's implicit concatenation).
fn chains(toks: &[Tok], d: &mut Derived) {
    let mut i = 0usize;
    while i < toks.len() {
        let Some((mut acc, mut next)) = term(toks, i) else {
            i += 1;
            continue;
        };
        let mut parts = 1usize;
        loop {
            let op = toks.get(next);
            let (sep, skip) = match op {
                Some(t) if is_concat(t) => ("", 1),
                Some(Tok::Punct('/')) => ("/", 1),
                Some(Tok::Str(_)) => ("", 0),
                _ => break,
            };
            match term(toks, next + skip) {
                Some((s, n)) => {
                    if sep == "/" && !acc.ends_with('/') && !s.starts_with('/') {
                        acc.push('/');
                    }
                    acc.push_str(&s);
                    parts += 1;
                    next = n;
                }
                None => break,
            }
        }
        if parts > 1 {
            d.strings.push(acc);
        }
        i = next.max(i + 1);
    }
}

/// The arguments of the call whose `(` is at `open`: each a single literal (or a chain of
/// them) or `None` when built at run time; and the index after `)`.
fn call_args(toks: &[Tok], open: usize) -> (Vec<Option<String>>, usize) {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut cur: Vec<&Tok> = Vec::new();
    let mut i = open;
    // Bounded: hostile code with thousands of open calls must not make this quadratic; an
    // argument list longer than this is taken as not static.
    let end = toks.len().min(open.saturating_add(MAX_CALL_TOKENS));
    while i < end {
        let t = &toks[i];
        match t {
            Tok::Punct('(') | Tok::Punct('[') | Tok::Punct('{') => {
                depth += 1;
                if depth > 1 {
                    cur.push(t);
                }
            }
            Tok::Punct(')') | Tok::Punct(']') | Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    args.push(arg_value(&cur));
                    return (args, i + 1);
                }
                cur.push(t);
            }
            Tok::Punct(',') if depth == 1 => {
                args.push(arg_value(&cur));
                cur.clear();
            }
            _ => cur.push(t),
        }
        i += 1;
    }
    args.push(if i < toks.len() {
        None
    } else {
        arg_value(&cur)
    });
    (args, i)
}

/// A call argument's static value: literals joined by concatenation, a path constructor of
/// one, or a Ruby symbol (`:system`).
fn arg_value(toks: &[&Tok]) -> Option<String> {
    let owned: Vec<Tok> = toks.iter().map(|t| (*t).clone()).collect();
    if let [Tok::Punct(':'), Tok::Ident(s)] = owned.as_slice() {
        return Some(s.clone());
    }
    let (mut acc, mut i) = term(&owned, 0)?;
    while i < owned.len() {
        if !is_concat(&owned[i]) && !matches!(owned[i], Tok::Str(_)) {
            return None;
        }
        let skip = usize::from(is_concat(&owned[i]));
        let (s, n) = term(&owned, i + skip)?;
        acc.push_str(&s);
        i = n;
    }
    Some(acc)
}

/// Path joins, `sep.join([...])`, `[...].join(sep)`, run-time name lookups, variable calls.
fn calls(toks: &[Tok], d: &mut Derived) {
    for i in 0..toks.len() {
        if let Tok::Ident(n) = &toks[i] {
            if matches!(
                last_segment(n),
                "globals" | "vars" | "__dict__" | "__builtins__" | "locals"
            ) {
                dict_lookup(toks, i, d);
            }
        }
        match (&toks[i], toks.get(i + 1)) {
            (Tok::Ident(name), Some(Tok::Punct('('))) => {
                let (args, _) = call_args(toks, i + 1);
                // `path.join(a, b)` under any alias (`require('path').join`, `p.join`): a
                // `join` of two or more arguments joins paths.
                if is_path_join(name) || (last_segment(name) == "join" && args.len() >= 2) {
                    let parts: Vec<String> = args.iter().flatten().cloned().collect();
                    if !parts.is_empty() {
                        d.strings.push(join_parts(&parts, "/"));
                    }
                }
                if last_segment(name) == "join" && i > 0 {
                    // `'/'.join(['.git', 'hooks'])`: the separator is the literal before.
                    if let (Some(Tok::Str(sep)), Some(Tok::Punct('.'))) =
                        (toks.get(i.wrapping_sub(2)), toks.get(i - 1))
                    {
                        let (items, _) = call_args(toks, i + 2);
                        let parts: Vec<String> = items.into_iter().flatten().collect();
                        if !parts.is_empty() && toks.get(i + 2) == Some(&Tok::Punct('[')) {
                            d.strings.push(parts.join(sep));
                        }
                    }
                }
                if let Some(cmd) = spawn_argv(toks, i, name) {
                    d.strings.push(cmd);
                }
                if is_name_lookup(name) {
                    // The looked-up name: the last argument of `getattr(obj, NAME)`, the
                    // first of `require(NAME)` / `send(NAME, …)`.
                    let key = if last_segment(name) == "getattr" {
                        args.get(1)
                    } else {
                        args.first()
                    };
                    match key {
                        Some(Some(n)) => d.call_names.push(n.clone()),
                        Some(None) if is_module_loader(name) => d.built_import = true,
                        Some(None) => d.built_name = true,
                        None => {}
                    }
                }
                if name.starts_with('$') && !name.contains(['.', ':', '>']) {
                    // PHP `$f('id')`: a function named by a variable.
                    d.built_name = true;
                }
            }
            // Perl `&{"sys" . "tem"}("id")`, `&$f("id")`: a sub named by a string or variable
            // (not `&&`).
            (Tok::Punct('&'), Some(Tok::Punct('{')))
                if i == 0 || toks[i - 1] != Tok::Punct('&') =>
            {
                d.built_name = true;
            }
            (Tok::Punct('&'), Some(Tok::Ident(n)))
                if n.starts_with('$') && (i == 0 || toks[i - 1] != Tok::Punct('&')) =>
            {
                d.built_name = true;
            }
            // `os['sys' + 'tem']('id')`, `globals()[x](…)`: a member looked up by a value that
            // is not one plain literal.
            (Tok::Punct(']'), Some(Tok::Punct('('))) if !bracket_is_literal(toks, i) => {
                d.built_name = true;
            }
            (Tok::Punct('['), Some(Tok::Str(_))) if i > 0 => {
                // `[...].join('/')`
                if let Some(j) = list_join(toks, i) {
                    d.strings.push(j);
                }
            }
            _ => {}
        }
    }
}

/// `vars(os)['system']`, `globals()[name]` at `i`: the key names what is called.
fn dict_lookup(toks: &[Tok], i: usize, d: &mut Derived) {
    let mut j = i + 1;
    if toks.get(j) == Some(&Tok::Punct('(')) {
        j = call_args(toks, j).1;
    }
    if toks.get(j) == Some(&Tok::Punct('[')) {
        match call_args(toks, j).0.first() {
            Some(Some(k)) => d.call_names.push(k.clone()),
            _ => d.built_name = true,
        }
    }
}

/// Calls given a program and its arguments as a separate list: Node's `spawn('git', ['push',
/// …])` (the list holds the arguments), and the `exec*`/`spawn*v`/`posix_spawn*` family
/// (`os.execvp('git', ['git', 'push'])`: the list is the whole argv, `argv[0]` first).
/// Returns the command line they run (`git push …`), words with spaces quoted.
fn spawn_argv(toks: &[Tok], i: usize, name: &str) -> Option<String> {
    let seg = last_segment(name);
    let args_only = matches!(
        seg,
        "spawn" | "spawnSync" | "execFile" | "execFileSync" | "execa" | "execaSync" | "fork"
    );
    let whole_argv = seg.starts_with("execv")
        || seg.starts_with("spawnv")
        || seg.starts_with("posix_spawn")
        || seg == "Popen";
    if !args_only && !whole_argv {
        return None;
    }
    let Some(Tok::Str(prog)) = toks.get(i + 2) else {
        return None;
    };
    if toks.get(i + 3) != Some(&Tok::Punct(',')) || toks.get(i + 4) != Some(&Tok::Punct('[')) {
        return None;
    }
    let (items, _) = call_args(toks, i + 4);
    let quote = |w: &str| {
        if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"$`|&;<>(){}\\".contains(c))
        {
            format!("'{}'", w.replace('\'', "'\\''"))
        } else {
            w.to_string()
        }
    };
    // The program runs with the rest of the list (for the `exec*v` family, after `argv[0]`).
    let mut words: Vec<String> = vec![quote(prog)];
    // A word built at run time stays one: `"$X"` (the command is judged as possibly anything
    // there).
    words.extend(
        items
            .into_iter()
            .skip(usize::from(!args_only))
            .map(|w| w.map_or_else(|| "\"$X\"".to_string(), |w| quote(&w))),
    );
    Some(words.join(" "))
}

/// Whether the brackets closing at `close` hold one plain literal or number (`x['a']`).
fn bracket_is_literal(toks: &[Tok], close: usize) -> bool {
    matches!(
        (
            close.checked_sub(2).and_then(|j| toks.get(j)),
            close.checked_sub(1).and_then(|j| toks.get(j))
        ),
        (Some(Tok::Punct('[')), Some(Tok::Str(_) | Tok::Num(_)))
    )
}

/// `['.git', 'hooks'].join('/')` starting at `open` (the `[`).
fn list_join(toks: &[Tok], open: usize) -> Option<String> {
    let (items, after) = call_args(toks, open);
    match (toks.get(after), toks.get(after + 1), toks.get(after + 2)) {
        (Some(Tok::Punct('.')), Some(Tok::Ident(j)), Some(Tok::Punct('('))) if j == "join" => {
            let sep = match toks.get(after + 3) {
                Some(Tok::Str(s)) => s.clone(),
                _ => ",".to_string(),
            };
            let parts: Vec<String> = items.into_iter().flatten().collect();
            (!parts.is_empty()).then(|| parts.join(&sep))
        }
        (Some(Tok::Ident(j)), Some(Tok::Punct('(')), _) if j == ".join" || j.ends_with("join") => {
            None
        }
        _ => None,
    }
}

fn join_parts(parts: &[String], sep: &str) -> String {
    let mut out = String::new();
    for p in parts {
        if p.starts_with('/') {
            out.clear();
        }
        if !out.is_empty() && !out.ends_with(sep) {
            out.push_str(sep);
        }
        out.push_str(p);
    }
    out
}

/// The obvious static decodings of the code's literals; whether one of them decoded.
fn decodings(code: &str, toks: &[Tok], d: &mut Derived) -> bool {
    let lits: Vec<String> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Str(s) => Some(s.clone()),
            _ => None,
        })
        .chain(d.strings.iter().cloned())
        .collect();
    let rot = ["rot13", "rot_13", "tr/A-Za-z/N-ZA-M", "maketrans"]
        .iter()
        .any(|k| code.contains(k));
    let mut hit = false;
    for l in &lits {
        if l.len() >= 4 && l.len() <= 4096 {
            for s in [base64_text(l), hex_text(l)].into_iter().flatten() {
                d.strings.push(s);
                hit = true;
            }
        }
        if rot {
            d.strings.push(rot13(l));
            hit = true;
        }
    }
    // `'di odus'[::-1]`, `strrev('di odus')`, `'di odus'.split('').reverse()`.
    for (i, t) in toks.iter().enumerate() {
        let Tok::Str(l) = t else { continue };
        let slice = toks.get(i + 1..i + 6)
            == Some(
                &[
                    Tok::Punct('['),
                    Tok::Punct(':'),
                    Tok::Punct(':'),
                    Tok::Punct('-'),
                    Tok::Num(1),
                ][..],
            );
        let strrev = i >= 2
            && matches!(&toks[i - 2], Tok::Ident(n) if last_segment(n) == "strrev" || last_segment(n) == "reverse");
        let split_rev = toks
            .iter()
            .skip(i + 1)
            .take(8)
            .any(|t| matches!(t, Tok::Ident(n) if n.contains("reverse")));
        if slice || strrev || split_rev {
            d.strings.push(l.chars().rev().collect());
            hit = true;
        }
    }
    // `chr(115)+chr(117)…`, `String.fromCharCode(115, 117)`, `bytes([115, 117])`: the numbers
    // in order, as one string.
    let mut from_codes = String::new();
    for (i, t) in toks.iter().enumerate() {
        if let Tok::Num(n) = t {
            let in_call = toks[..i].iter().rev().take(64).find_map(|t| match t {
                Tok::Ident(n) => Some(n.clone()),
                _ => None,
            });
            if in_call.is_some_and(|c| {
                matches!(
                    last_segment(&c),
                    "chr" | "fromCharCode" | "bytes" | "pack" | "bytearray"
                )
            }) {
                if let Some(ch) = u32::try_from(*n).ok().and_then(char::from_u32) {
                    from_codes.push(ch);
                }
            }
        }
    }
    if !from_codes.is_empty() {
        d.strings.push(from_codes);
        hit = true;
    }
    hit
}

/// `s` as base64 that decodes to printable text.
fn base64_text(s: &str) -> Option<String> {
    let t = s.trim();
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_'))
    {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .ok()?;
    printable(bytes)
}

/// `s` as hex digits that decode to printable text.
fn hex_text(s: &str) -> Option<String> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if t.len() < 4 || t.len() % 2 != 0 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect();
    printable(bytes?)
}

fn printable(bytes: Vec<u8>) -> Option<String> {
    let s = String::from_utf8(bytes).ok()?;
    s.chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\t')
        .then_some(s)
}

fn rot13(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(code: &str, want: &str) -> bool {
        let d = derive(code);
        d.strings.iter().any(|s| s == want)
    }

    #[test]
    fn joins_and_concatenation() {
        assert!(has(
            "open('.git/'+'hooks/pre-commit','w')",
            ".git/hooks/pre-commit"
        ));
        assert!(has(
            "open(os.path.join('.git','hooks','pre-commit'),'w')",
            ".git/hooks/pre-commit"
        ));
        assert!(has(
            "(Path('.git')/'hooks'/'pre-commit').write_text('x')",
            ".git/hooks/pre-commit"
        ));
        assert!(has(
            "p = '.clau' 'de/settings.json'",
            ".claude/settings.json"
        ));
        assert!(has(
            "require('fs').writeFileSync(require('path').join('.git', 'hooks', 'x'), 'y')",
            ".git/hooks/x"
        ));
        assert!(has(
            "open('/'.join(['.git','hooks','x']),'w')",
            ".git/hooks/x"
        ));
        assert!(has(
            "fs.writeFileSync(['.git','hooks','x'].join('/'), 'y')",
            ".git/hooks/x"
        ));
        assert!(has(
            "file_put_contents('.git/'.'hooks/x', 'y');",
            ".git/hooks/x"
        ));
        assert!(has(
            "File.write(File.join('.git','hooks','x'), 'y')",
            ".git/hooks/x"
        ));
    }

    #[test]
    fn formatting() {
        assert!(has(
            "open('%s/hooks/pre-commit' % '.git','w')",
            ".git/hooks/pre-commit"
        ));
        assert!(has(
            "open('%s/%s/x' % ('.git', 'hooks'),'w')",
            ".git/hooks/x"
        ));
        assert!(has("open('{}/hooks/x'.format('.git'),'w')", ".git/hooks/x"));
        assert!(has(
            "open('{1}/{0}'.format('x', '.git/hooks'),'w')",
            ".git/hooks/x"
        ));
        assert!(has("open(f'{\".git\"}/hooks/x','w')", ".git/hooks/x"));
        assert!(has(
            "fs.writeFileSync(`${'.git'}/hooks/x`, 'y')",
            ".git/hooks/x"
        ));
        assert!(has("print('%d%%' % (n,))", "x%"));
    }

    #[test]
    fn program_and_argument_lists() {
        assert!(has(
            "require('child_process').spawnSync('git',['push','--force','origin','main'])",
            "git push --force origin main"
        ));
        assert!(has(
            "os.execvp('git', ['git', 'push', '-f'])",
            "git push -f"
        ));
        assert!(has(
            "os.posix_spawnp('sudo', ['sudo', 'id'], {})",
            "sudo id"
        ));
        assert!(has(
            "cp.execFile('sh', ['-c', 'sudo id'])",
            "sh -c 'sudo id'"
        ));
        assert!(has("cp.spawn('rm', ['-rf', dir])", "rm -rf \"$X\""));
    }

    #[test]
    fn built_names_and_decodings() {
        let d = derive("import os; getattr(os,'sys'+'tem')('id')");
        assert!(d.call_names.contains(&"system".to_string()), "{d:?}");
        assert!(derive("getattr(os, n)('id')").built_name);
        assert!(derive("__import__(m).system('id')").built_import);
        assert!(derive("require('child'+'_process').execSync('id')")
            .call_names
            .contains(&"child_process".to_string()));
        assert!(derive("os['sys'+'tem']('id')").built_name);
        assert!(derive("$f='sys'.'tem'; $f('id');").built_name);
        assert!(derive("&{\"sys\".\"tem\"}(\"id\")").built_name);
        assert!(derive("my $f = 'system'; &$f('id')").built_name);
        assert!(!derive("if (a && {x: 1}) { b() }").built_name);
        assert!(!derive("print(x['a'](1))").built_name);
        assert!(has(
            "os.system(codecs.decode('fhqb vq','rot13'))",
            "sudo id"
        ));
        assert!(has(
            "os.system(base64.b64decode('c3VkbyBpZA==').decode())",
            "sudo id"
        ));
        assert!(has("os.system('di odus'[::-1])", "sudo id"));
        assert!(has("os.system(chr(105)+chr(100))", "id"));
        assert!(has("os.system('\\x73\\x75do id')", "sudo id"));
        // Plain code derives nothing.
        let d = derive("print(sum(range(10)))");
        assert_eq!(d, Derived::default());
    }

    #[test]
    fn hostile_input_is_bounded() {
        let code = "'a'+".repeat(100_000);
        let d = derive(&code);
        assert!(d.strings.len() <= MAX_DERIVED);
        let _ = derive("'unclosed");
        let _ = derive("getattr(");
        let _ = derive("[[[[[[");
        // Deeply nested calls and lookups: no stack overflow, bounded output. (How long it
        // takes is the benchmarks' business, not a unit test's: a timed assertion fails on a
        // loaded machine.)
        let d = derive(&"os.path.join(getattr(vars(os)[".repeat(20_000));
        assert!(d.strings.len() <= MAX_DERIVED);
        let d = derive(&"'/'.join([".repeat(20_000));
        assert!(d.strings.len() <= MAX_DERIVED);
    }
}
