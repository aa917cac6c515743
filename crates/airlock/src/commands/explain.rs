//! `airlock policy explain`: how the command gate decides a command: the simple commands it
//! found (normalised), the rule that decided each, and the final decision. Nothing is run, no
//! reviewer is called and nothing is logged.

use std::io::Write;

use airlock_gate::{Context, Tier};
use serde::Serialize;

use crate::cli::ExplainArgs;
use crate::commands::hook::Gate;

#[derive(Serialize)]
struct Explanation<'a> {
    command: &'a str,
    cwd: &'a str,
    workspace: Option<&'a str>,
    decision: &'static str,
    tier: Tier,
    rule: &'a str,
    reason: &'a str,
    steps: &'a [airlock_gate::Step],
}

pub(crate) fn explain(args: ExplainArgs) -> anyhow::Result<i32> {
    let command = join_command(&args.command);
    let cwd = match args.cwd {
        Some(c) => std::path::absolute(&c)?,
        None => std::env::current_dir()?,
    };
    // Inside a session, the sealed policy the hook uses (see `Gate::load`).
    let gate = Gate::load(&args.policies, &cwd)?;
    let engine = &gate.engine;
    let git = gate.git(&cwd);
    let cwd_s = airlock_gate::normalize::lexical(&cwd.to_string_lossy());
    let workspace = gate.workspace.clone();
    let ctx = Context {
        cwd: cwd_s.clone(),
        home: gate.home.clone(),
        workspace: workspace.clone(),
        git: &git,
    };
    let v = engine.classify_command(&command, &ctx);
    let reviewer = engine.settings.review.as_ref().is_some_and(|r| r.enabled);
    let decision = match v.tier {
        Tier::Review if reviewer => "review",
        t => airlock_gate::hook::decision_str(t),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let e = Explanation {
            command: &command,
            cwd: &cwd_s,
            workspace: workspace.as_deref(),
            decision,
            tier: v.tier,
            rule: &v.rule,
            reason: &v.reason,
            steps: &v.steps,
        };
        serde_json::to_writer_pretty(&mut out, &e)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(out, "command:   {command}")?;
    writeln!(
        out,
        "cwd:       {cwd_s} (workspace: {})",
        workspace.as_deref().unwrap_or("none")
    )?;
    if v.steps.is_empty() {
        writeln!(out, "parsed:    (nothing to decide per command)")?;
    } else {
        writeln!(out, "parsed:")?;
        let width = v
            .steps
            .iter()
            .map(|s| display_argv(s).chars().count())
            .max()
            .unwrap_or(0)
            .min(60);
        for (i, s) in v.steps.iter().enumerate() {
            let argv = display_argv(s);
            let mark = if s.uncertain { " (uncertain)" } else { "" };
            writeln!(
                out,
                "  {:>2}. {argv:<width$}  {:<6} {}  {}{mark}",
                i + 1,
                s.tier.as_str(),
                s.rule,
                s.reason,
            )?;
        }
    }
    let note = match v.tier {
        Tier::Review if reviewer => " (the LLM reviewer decides; on timeout or error: ask)",
        Tier::Review => " (no reviewer configured: ask)",
        _ => "",
    };
    writeln!(
        out,
        "decision:  {} by {}{note}: {}",
        decision, v.rule, v.reason
    )?;
    Ok(0)
}

fn display_argv(s: &airlock_gate::Step) -> String {
    let argv = s
        .argv
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    if s.origin.is_empty() {
        argv
    } else {
        format!("[{}] {argv}", s.origin)
    }
}

/// One argument: the text as one shell string; several: words, quoted where needed.
fn join_command(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        many => many.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "),
    }
}

fn quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^~…".contains(c) || !c.is_ascii());
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}
