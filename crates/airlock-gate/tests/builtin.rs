//! The built-in rules load and every rule's examples and counter-examples hold.

use airlock_gate::Engine;

#[test]
fn builtin_rules_and_examples() {
    let engine = Engine::load(&[], "/home/user", false).expect("builtin rules load");
    let failures: Vec<String> = engine
        .example_failures()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failing rules:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Inputs the fuzzer found to take seconds (exponential brace-expansion backtracking, globbed
/// program words multiplying through wrappers): a hook that times out fails open.
#[test]
fn pathological_inputs_stay_fast() {
    use airlock_gate::rules::StaticGit;
    use airlock_gate::{Context, Tier};
    let engine = Engine::builtin().expect("load");
    let git = StaticGit::default();
    let ctx = Context {
        cwd: "/home/dev/project".into(),
        home: "/home/dev".into(),
        workspace: Some("/home/dev/project".into()),
        git: &git,
    };
    // (input, whether it must not be allowed)
    let inputs = [
        (
            format!("xargs -{{I}}s0h -{}c 'rm -rf '}}{{ <<< /", "{".repeat(80)),
            false,
        ),
        (format!("echo -{}c 'x'}}{{", "{".repeat(40)), false),
        (
            "OME/{.\u{1}4ssh,.aws}/*<'EOF'\nfeat: add command gate\n\nParses bash wit".to_string(),
            true,
        ),
        ("* * * * * * * * * * * * * * * * * *".to_string(), true),
        (
            "sudo env nice timeout 1 xargs /???/* /???/* /???/*".to_string(),
            true,
        ),
    ];
    for (input, dangerous) in &inputs {
        let t0 = std::time::Instant::now();
        let v = engine.classify_command(input, &ctx);
        let took = t0.elapsed();
        assert!(
            took < std::time::Duration::from_millis(500),
            "{input:?} took {took:?}"
        );
        if *dangerous {
            assert_ne!(v.tier, Tier::Allow, "{input:?}");
        }
    }
}
