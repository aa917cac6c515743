//! The command gate's parser and classifier on arbitrary input: never panics, never allows a
//! command that does not parse, and never accepts malformed hook JSON.
#![no_main]

use std::sync::OnceLock;

use airlock_gate::rules::StaticGit;
use airlock_gate::{Context, Engine, Tier};

static ENGINE: OnceLock<Engine> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The hook's input parser: anything that is not valid UTF-8 JSON is refused.
    if let Ok(input) = airlock_gate::hook::parse_input(data) {
        assert!(std::str::from_utf8(data).is_ok());
        assert_eq!(input.hook_event_name, "PreToolUse");
    }
    let Ok(command) = std::str::from_utf8(data) else {
        return;
    };
    let engine = ENGINE.get_or_init(|| Engine::builtin().expect("built-in rules load"));
    let git = StaticGit::default();
    let ctx = Context {
        cwd: "/home/dev/project".into(),
        home: "/home/dev".into(),
        workspace: Some("/home/dev/project".into()),
        git: &git,
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
});

/// Inputs the shell itself rejects outright.
fn brush_like_failure(command: &str) -> bool {
    airlock_gate::parse::parse_ast(command).is_err()
}
