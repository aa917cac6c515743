//! airlock command gate: bash parsing, command rules, Claude Code hook decisions.
//!
//! The path of one decision: [`hook::parse_input`] checks the hook JSON →
//! [`Engine::classify_tool`] → [`parse`] turns bash into simple commands → [`normalize`] turns
//! them into invocations (unwrapping `sudo`, `sh -c`, `find -exec`, …) → [`rules`] match each →
//! the most severe tier wins → [`review`] for the `review` tier → [`hook::output`] prints it.
#![forbid(unsafe_code)]

pub mod checks;
pub mod classify;
pub mod files;
pub mod git;
pub mod glob;
pub mod hook;
pub mod inline;
pub mod ir;
pub mod loopback;
pub mod matchers;
pub mod normalize;
pub mod parse;
pub mod pathname;
pub mod paths;
pub mod review;
pub mod rules;
pub mod schema;
pub mod sealed;

use std::path::PathBuf;

pub use classify::{CommandLayer, CommandsConfig, Engine, Settings, Step, Verdict};
pub use matchers::Context;
pub use rules::RuleError;
pub use schema::{RuleSpec, Tier};

/// Errors of the command gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("built-in command rules are invalid: {0}")]
    Builtin(String),
    #[error("invalid [commands] table in {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(
        "policy file {path} is inside the workspace and widens the command policy ({key}); \
         a file the agent can write may only add deny and ask rules: move it out of the workspace"
    )]
    Widening { path: PathBuf, key: String },
    #[error(transparent)]
    Hook(#[from] hook::HookError),
}

/// The module layout stays a hierarchy: no module of the crate reaches another that reaches it
/// back (through `crate::` paths, test code included), so each can be read knowing only the
/// ones below it.
#[cfg(test)]
mod layout_tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module → the top-level modules its source names as `crate::X` (a file under
    /// `src/X/` belongs to `X`; the crate root and type paths such as `crate::GateError` are
    /// left out).
    fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable") {
                let path = entry.expect("src entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(src).expect("under src");
                let first = rel.components().next().expect("a file name");
                let module = first.as_os_str().to_string_lossy();
                let module = module.trim_end_matches(".rs").to_string();
                if module == "lib" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                let targets = out.entry(module.clone()).or_default();
                for line in text.lines() {
                    let code = line.split("//").next().unwrap_or("");
                    for named in crate_paths(code) {
                        if named != module {
                            targets.insert(named);
                        }
                    }
                }
            }
        }
        out
    }

    /// The module names a line of code reaches through `crate::name` or `crate::{name, …}`.
    fn crate_paths(code: &str) -> Vec<String> {
        let mut names = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let items: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split([',', '}']).collect(),
                None => vec![rest],
            };
            for item in items {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// A cycle in `graph` as the list of modules around it, if there is one.
    fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| n == node) {
                let mut cycle = path[at..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            if done.contains(node) {
                return None;
            }
            path.push(node.to_string());
            for next in graph.get(node).into_iter().flatten() {
                if let Some(c) = visit(next, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(node.to_string());
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn modules_form_no_cycle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let graph = edges(&src);
        assert!(
            graph.len() > 10 && graph["rules"].contains("git"),
            "the scan found the modules and their edges: {graph:?}"
        );
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "modules of airlock-gate import each other: {}; move what both need into a \
                 module below them",
                cycle.join(" → ")
            );
        }
    }

    #[test]
    fn cycle_finder_sees_a_cycle() {
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec!["a"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(
            find_cycle(&graph),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(
            crate_paths("use crate::{glob::Glob, ir::Word}; crate::git::x(); crate::GateError"),
            vec!["glob", "ir", "git"]
        );
    }
}
