//! The command gate's parser and classifier on arbitrary input: never panics, never allows a
//! command that does not parse, never accepts malformed hook JSON, and a command it denies is
//! still not allowed when hidden in nested subshells or a command substitution (issue 12). The
//! same bytes also go through the file tools (symbolic-link resolution of the path), and hook
//! JSON that parses is decided for the tool it names (WebFetch's documentation-URL check, every
//! path-like value of `tool_input`), and as inline interpreter code.
#![no_main]

use std::sync::OnceLock;

use airlock_gate::rules::StaticGit;
use airlock_gate::{Context, Engine, Tier};

static ENGINE: OnceLock<Engine> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let engine = ENGINE.get_or_init(|| Engine::builtin().expect("built-in rules load"));
    let git = StaticGit::default();
    let ctx = Context {
        cwd: "/home/dev/project".into(),
        home: "/home/dev".into(),
        workspace: Some("/home/dev/project".into()),
        git: &git,
    };
    // The hook's input parser: anything that is not valid UTF-8 JSON is refused; what it
    // accepts is decided for whatever tool it names (file paths, WebFetch URLs, Bash).
    if let Ok(input) = airlock_gate::hook::parse_input(data) {
        assert!(std::str::from_utf8(data).is_ok());
        assert_eq!(input.hook_event_name, "PreToolUse");
        let _ = engine.classify_tool(&input.tool_name, &input.tool_input, &ctx);
    }
    let Ok(command) = std::str::from_utf8(data) else {
        return;
    };
    let verdict = engine.classify_command(command, &ctx);
    if engine.analyse(command, &ctx).is_err() {
        assert_ne!(
            verdict.tier,
            Tier::Allow,
            "allowed a command that does not parse: {command:?}"
        );
    }
    if brush_like_failure(command) {
        assert_ne!(verdict.tier, Tier::Allow, "allowed unparsable: {command:?}");
    }
    // A command that parses and is denied by a rule stays denied-or-asked when hidden deeper
    // (wrapping text that does not parse can make something else that does: not compared).
    if verdict.tier == Tier::Deny
        && command.len() < 4096
        && verdict.rule.starts_with("builtin:")
        && engine.analyse(command, &ctx).is_ok()
    {
        for hidden in [
            format!("( ( {command}\n) )"),
            format!("echo \"$( {command}\n)\""),
        ] {
            let v = engine.classify_command(&hidden, &ctx);
            assert_ne!(v.tier, Tier::Allow, "allowed when nested: {hidden:?}");
        }
    }
    // The same text as inline interpreter code: the tokenizer of `inline.rs` (strings built at
    // run time, names looked up), alone and through `python3 -c`.
    let derived = airlock_gate::inline::derive(command);
    assert!(derived.strings.len() <= 256);
    if command.len() < 4096 {
        let quoted = command.replace('\'', "'\\''");
        let _ = engine.classify_command(&format!("python3 -c '{quoted}'"), &ctx);
    }
    // The same bytes as a file tool's path: `..`, links, the longest existing prefix.
    for tool in ["Write", "Read"] {
        let _ = engine.classify_file(tool, command, &ctx);
    }
    files_run(engine, command);
});

/// A private workspace on disk for the files commands run (scripts, Makefile, package.json,
/// justfile): created once per fuzzing process.
static WORKSPACE: OnceLock<Option<tempfile_dir::Dir>> = OnceLock::new();

/// The same bytes as the content of files a command runs (`bash x.sh`, `make`, `npm run build`,
/// `just`) and as code-valued options (`make --eval`, sqlite3 input): no panic, and a script
/// whose text is denied on its own is not allowed when run from a file.
fn files_run(engine: &Engine, command: &str) {
    let Some(ws) = WORKSPACE.get_or_init(tempfile_dir::Dir::new).as_ref() else {
        return;
    };
    let git = StaticGit::default();
    let ctx = Context {
        cwd: ws.path.clone(),
        home: format!("{}/home", ws.path),
        workspace: Some(ws.path.clone()),
        git: &git,
    };
    let write =
        |name: &str, text: &str| std::fs::write(format!("{}/{name}", ws.path), text).is_ok();
    let pkg = format!("{{\"scripts\":{{\"build\":{}}}}}", json_string(command));
    if !(write("x.sh", command)
        && write("Makefile", command)
        && write("package.json", &pkg)
        && write("justfile", command))
    {
        return;
    }
    let direct = engine.classify_command(command, &ctx);
    let script = engine.classify_command("bash x.sh", &ctx);
    if direct.tier == Tier::Deny
        && !command.starts_with("#!")
        && !command.contains('\0')
        && engine.analyse(command, &ctx).is_ok()
    {
        assert_ne!(
            script.tier,
            Tier::Allow,
            "allowed from a script: {command:?}"
        );
    }
    for c in ["make", "npm run build", "just", ". ./x.sh"] {
        let _ = engine.classify_command(c, &ctx);
    }
    let quoted = format!("'{}'", command.replace('\'', "'\\''"));
    for c in [
        format!("make --eval={quoted}"),
        format!("sqlite3 x.db {quoted}"),
    ] {
        let _ = engine.classify_command(&c, &ctx);
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A temporary directory removed when the process exits normally (fuzzing processes are
/// usually killed: it lives under the system temporary directory).
mod tempfile_dir {
    pub struct Dir {
        pub path: String,
    }
    impl Dir {
        pub fn new() -> Option<Dir> {
            let path = std::env::temp_dir().join(format!("airlock-fuzz-ws-{}", std::process::id()));
            std::fs::create_dir_all(path.join("home")).ok()?;
            Some(Dir {
                path: path.to_string_lossy().into_owned(),
            })
        }
    }
}

/// Inputs the shell itself rejects outright.
fn brush_like_failure(command: &str) -> bool {
    airlock_gate::parse::parse_ast(command).is_err()
}
