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
