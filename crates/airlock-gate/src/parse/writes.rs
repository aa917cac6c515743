//! Files a script writes (redirections, `tee`, copies, downloads, interpreters writing names
//! they quote) and what they hold, for the later commands of the same script.

use crate::ir::{FileContent, RedirKind, SimpleCmd, Stdin, Word};

use super::Walker;

impl Walker<'_> {
    /// Remembers files this command writes, for a later `bash x.sh` / `./x.sh` in the script:
    /// its write redirections, then what the program itself writes.
    pub(super) fn track_files(&mut self, cmd: &SimpleCmd, output: Option<&str>) {
        // What the files held before this command (for `>>` and `tee -a`).
        let before = self.files.clone();
        let mut writes = redirect_writes(cmd, output, &before);
        if let Some(prog) = cmd.argv.first().and_then(Word::as_static) {
            let prog = prog.rsplit('/').next().unwrap_or(prog);
            writes.extend(program_writes(prog, cmd, &before));
        }
        // Each write copies the texts tracked so far: past the budget they become unknown.
        let held: usize = before
            .iter()
            .map(|(_, c)| match c {
                FileContent::Text(t) => t.len(),
                _ => 0,
            })
            .sum();
        for (path, content) in writes {
            if let Some(p) = path {
                self.record_write(p, content, held);
            }
        }
    }

    /// Records that `path` now holds `content`, charging `held` bytes of copying to the
    /// budget; past it every tracked file keeps its name but not its content.
    fn record_write(&mut self, path: String, content: FileContent, held: usize) {
        if held > self.copy_budget {
            let names: Vec<(String, FileContent)> = self
                .files
                .iter()
                .map(|(p, _)| (p.clone(), FileContent::Unknown))
                .collect();
            self.files = std::sync::Arc::new(names);
            self.copy_budget = 0;
        } else {
            self.copy_budget -= held;
        }
        let content = if self.copy_budget == 0 {
            FileContent::Unknown
        } else {
            content
        };
        let files = std::sync::Arc::make_mut(&mut self.files);
        files.retain(|(q, _)| *q != path);
        if files.len() < 64 {
            files.push((path, content));
        }
    }
}

/// The static text on a command's stdin, if any.
pub(super) fn output_of_stdin(stdin: &Stdin) -> Option<String> {
    match stdin {
        Stdin::Text(w) if !w.is_dynamic() => Some(w.text.clone()),
        Stdin::Pipe(up) => up.last().and_then(|u| u.output.clone()),
        _ => None,
    }
}

/// Interpreters whose inline code may write files (for [`Walker::track_files`]).
pub(super) fn is_interpreter(prog: &str) -> bool {
    let p = prog.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    matches!(
        p,
        "python" | "pypy" | "node" | "nodejs" | "deno" | "bun" | "perl" | "ruby" | "php" | "lua"
    )
}

/// Whether inline code looks like it writes, moves or copies files.
pub(super) fn writes_files(code: &str) -> bool {
    const WORDS: &[&str] = &[
        "write",
        "put_contents",
        "rename",
        "copy",
        "symlink",
        "move",
        "shutil",
        "'w",
        "\"w",
        "'a'",
        "\"a\"",
        "'a+",
        "\"a+",
        "'x'",
        "\"x\"",
        "'>",
        "\">",
        "'+<",
        "\"+<",
        "Sync(",
    ];
    WORDS.iter().any(|w| code.contains(w))
}

/// The quoted strings of inline code that could name a file (no whitespace, at most 255
/// bytes, at most 32 of them).
pub(super) fn quoted_names(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in ['\'', '"', '`'] {
        let mut parts = code.split(q).skip(1).step_by(2);
        for p in parts.by_ref() {
            // Perl's `open(F, ">>file")`: the mode is part of the string.
            let p = p.trim_start_matches(['+', '<', '>', '|']);
            if !p.is_empty() && p.len() < 256 && !p.contains(char::is_whitespace) {
                out.push(p.to_string());
            }
            if out.len() >= 32 {
                return out;
            }
        }
    }
    out
}

/// What `path` held before the command being tracked: the text written earlier in the same
/// script, else the file on disk (bounded read), else nothing (a new file).
pub(super) fn prior_content(files: &[(String, FileContent)], path: &str) -> Option<FileContent> {
    if let Some((_, c)) = files.iter().find(|(p, _)| p == path) {
        return Some(c.clone());
    }
    match crate::files::read_text(path) {
        crate::files::FileText::Missing => Some(FileContent::Text(String::new())),
        crate::files::FileText::Text(t) => Some(FileContent::Text(t)),
        _ => None,
    }
}

/// `prior` with `added` at its end: unknown when either part is.
pub(super) fn appended(prior: &Option<FileContent>, added: &str) -> FileContent {
    match prior {
        // Larger than the gate reads: unknown either way.
        Some(FileContent::Text(t))
            if u64::try_from(t.len() + added.len())
                .map_or(true, |n| n > crate::files::MAX_FILE_BYTES) =>
        {
            FileContent::Unknown
        }
        Some(FileContent::Text(t)) => {
            let mut t = t.clone();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(added);
            FileContent::Text(t)
        }
        _ => FileContent::Unknown,
    }
}

/// A write: the absolute path (`None` when not known statically) and what it now holds.
type FileWrite = (Option<String>, FileContent);

/// `w` as an absolute, lexically normalised path, when it is static (and `cwd` is known for a
/// relative one).
fn static_path(w: &Word, cwd: &Option<String>) -> Option<String> {
    let t = w.as_static()?;
    if t.starts_with('/') {
        Some(crate::pathname::lexical(t))
    } else {
        cwd.as_ref()
            .map(|c| crate::pathname::lexical(&format!("{c}/{t}")))
    }
}

/// The command's `>`/`>>` redirections: its output when known (`>>` adds it to what the file
/// held `before`), else content not known here.
fn redirect_writes(
    cmd: &SimpleCmd,
    output: Option<&str>,
    before: &[(String, FileContent)],
) -> Vec<FileWrite> {
    let mut writes = Vec::new();
    for r in &cmd.redirects {
        if r.kind == RedirKind::Write {
            let path = static_path(&r.target, &cmd.cwd);
            let content = match output {
                Some(t) if r.append => path.as_deref().map_or(FileContent::Unknown, |p| {
                    appended(&prior_content(before, p), t)
                }),
                Some(t) => FileContent::Text(t.to_string()),
                None => FileContent::Unknown,
            };
            writes.push((path, content));
        }
    }
    writes
}

/// The files program `prog` (base name) itself writes.
fn program_writes(prog: &str, cmd: &SimpleCmd, before: &[(String, FileContent)]) -> Vec<FileWrite> {
    let args = &cmd.argv[1..];
    let cwd = &cmd.cwd;
    match prog {
        "curl" | "wget" | "aria2c" | "fetch" | "http" | "xh" => download_writes(args, cwd),
        // In-place editors: the files they edit hold what airlock cannot see.
        "sed" | "gsed" | "perl" | "ruby"
            if args.iter().any(|a| {
                a.text == "-i"
                    || a.text.starts_with("--in-place")
                    || (a.text.starts_with('-')
                        && !a.text.starts_with("--")
                        && a.text[1..].contains('i'))
            }) =>
        {
            args.iter()
                .filter(|a| !a.text.starts_with('-'))
                .map(|a| (static_path(a, cwd), FileContent::Unknown))
                .collect()
        }
        _ if is_interpreter(prog) => interpreter_writes(cmd),
        // `npm pkg set scripts.x=…`: package.json gets content airlock does not compute.
        "npm" | "pnpm" | "yarn" | "bun"
            if args.iter().any(|a| a.text == "pkg")
                && args
                    .iter()
                    .any(|a| matches!(a.text.as_str(), "set" | "delete" | "fix")) =>
        {
            vec![(
                static_path(&Word::lit("package.json"), cwd),
                FileContent::Unknown,
            )]
        }
        "tee" | "cp" | "mv" | "install" | "dd" | "touch" | "ln" | "rsync" => {
            copy_writes(prog, cmd, before)
        }
        _ => Vec::new(),
    }
}

/// Where a downloader saves: `-o FILE`, `--output=FILE`, or a URL's last segment (`curl -O
/// URL`, `wget URL`); the content comes from the network.
fn download_writes(args: &[Word], cwd: &Option<String>) -> Vec<FileWrite> {
    let mut writes = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let t = a.text.as_str();
        let next = args.get(i + 1);
        if matches!(t, "-o" | "--output" | "-O" | "--output-document") {
            if let Some(n) = next.filter(|n| n.text != "-" && !n.text.contains("://")) {
                writes.push((static_path(n, cwd), FileContent::Network));
            }
        } else if let Some(v) = t
            .strip_prefix("--output=")
            .or_else(|| t.strip_prefix("--output-document="))
        {
            writes.push((static_path(&Word::lit(v), cwd), FileContent::Network));
        } else if t.contains("://") {
            let name = t
                .split(['?', '#'])
                .next()
                .unwrap_or(t)
                .rsplit('/')
                .next()
                .unwrap_or("");
            if !name.is_empty() {
                writes.push((static_path(&Word::lit(name), cwd), FileContent::Network));
            }
        }
    }
    writes
}

/// Inline interpreter code that writes (`python3 -c "open('Makefile','w')…"`, a heredoc on
/// stdin): each quoted name in it may now hold what airlock cannot see.
fn interpreter_writes(cmd: &SimpleCmd) -> Vec<FileWrite> {
    let code: Vec<&str> = cmd.argv[1..]
        .iter()
        .map(|a| a.text.as_str())
        .chain(match &cmd.stdin {
            Stdin::Text(w) => Some(w.text.as_str()),
            _ => None,
        })
        .collect();
    if !code.iter().any(|c| writes_files(c)) {
        return Vec::new();
    }
    code.iter()
        .flat_map(|c| quoted_names(c))
        .map(|name| {
            (
                static_path(&Word::lit(&name), &cmd.cwd),
                FileContent::Unknown,
            )
        })
        .collect()
}

/// `tee` writes its input (known when the command feeding it prints static text; `-a` adds it
/// to what the file held `before`); `cp`, `mv`, `install`, `dd of=`, `ln`, `rsync` write what
/// airlock does not follow; `touch` changes no content.
fn copy_writes(prog: &str, cmd: &SimpleCmd, before: &[(String, FileContent)]) -> Vec<FileWrite> {
    let args = &cmd.argv[1..];
    let mut writes = Vec::new();
    for a in args.iter().filter(|a| !a.text.starts_with('-')) {
        let t = a.text.strip_prefix("of=").unwrap_or(&a.text);
        if prog == "tee" {
            let append = args.iter().any(|a| a.text == "-a" || a.text == "--append");
            let path = static_path(&Word::lit(t), &cmd.cwd);
            let c = match (output_of_stdin(&cmd.stdin), path.as_deref()) {
                (Some(t), Some(p)) if append => appended(&prior_content(before, p), &t),
                (Some(t), _) => FileContent::Text(t),
                (None, _) => FileContent::Unknown,
            };
            writes.push((path, c));
        } else if prog != "touch" {
            writes.push((static_path(&Word::lit(t), &cmd.cwd), FileContent::Unknown));
        }
    }
    writes
}
