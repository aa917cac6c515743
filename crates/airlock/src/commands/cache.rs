//! `airlock cache promote ID`: the files of a finished session's cache layers that verify
//! against their registry's own integrity data go into the host's caches (`crate::promote`);
//! the rest is listed with the reason it stayed.

use std::io::Write;

use airlock_session::{quote, SessionState};
use anyhow::{anyhow, bail, Result};

use crate::cli::PromoteArgs;
use crate::promote::{self, Entry, Outcome};
use crate::session_dir;

/// `airlock cache promote`; with `--json` an error is a JSON object on stdout too
/// (`{"session": ID, "error": MESSAGE}`), for scripts, besides the usual line on stderr.
pub(crate) fn promote(args: PromoteArgs) -> Result<i32> {
    let result = run(&args);
    if let (Err(e), true) = (&result, args.json) {
        let message = e
            .chain()
            .map(ToString::to_string)
            .fold(String::new(), |acc, c| {
                if acc.is_empty() {
                    c
                } else if acc.contains(&c) {
                    acc
                } else {
                    format!("{acc}: {c}")
                }
            });
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "session": args.id, "error": message }),
        )?;
        writeln!(out)?;
    }
    result
}

fn run(args: &PromoteArgs) -> Result<i32> {
    let r = session_dir::find(Some(&args.id))?;
    if r.state == SessionState::Running {
        bail!(
            "session {} is still running; let it finish (or `airlock stop {}`) before promoting \
             its downloads",
            r.id,
            r.id
        );
    }
    if r.state == SessionState::Lost {
        // Its supervisor died without cleaning up: whatever the backend left running is
        // removed first, so nothing writes the layers while they are read.
        let (backend, session) = crate::backends::of(&r);
        backend.clean_up(&session)?;
    }
    let Some(layers) = crate::caches::recorded_layers(&r.dir)? else {
        bail!(
            "session {} has no cache layers: it ran without a preset (`airlock run --preset \
             rust|node|python|go|java`), none of its presets' caches existed on the host, or an \
             older airlock ran it; nothing to promote",
            r.id
        );
    };
    for l in &layers {
        if !l.upper.is_dir() {
            bail!(
                "session {}'s cache layer {} is gone (was the session removed?)",
                r.id,
                l.upper.display()
            );
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| {
            anyhow!("HOME is not set; airlock needs it to find ~/.npmrc and the config")
        })?;
    let policy = crate::policy_load::load(None, &[], &[], None)?;
    let roots = crate::telemetry::extra_roots(&policy, &home)?;
    // The go.sum an overlay session's workspace had when it started (the agent could not
    // write it then): Go modules are checked against it. Never the workspace's file as it is
    // now (`merge` may have put the agent's go.sum there), nor a bind or worktree session's.
    let go_sum = (r.mode == airlock_session::SessionMode::Overlay)
        .then(|| r.dir.join(crate::caches::GO_SUM_FILE))
        .filter(|p| p.exists());
    let mut opts = promote::Options {
        dry_run: args.dry_run,
        registry: promote::Registry::new(roots)?,
        home,
        go_sum,
    };
    let entries = promote::promote(&layers, &mut opts);
    report(&r.id, &entries, args)?;
    Ok(0)
}

/// A reason on one line with its control characters visible (`cat -v`).
fn shown(s: &str) -> String {
    quote::visible(s).replace('\n', "\\n")
}

/// Counts by outcome: promoted, present, refused, skipped.
fn counts(entries: &[Entry]) -> [usize; 4] {
    let mut n = [0; 4];
    for e in entries {
        n[match e.outcome {
            Outcome::Promoted { .. } => 0,
            Outcome::Present { .. } => 1,
            Outcome::Refused { .. } => 2,
            Outcome::Skipped { .. } => 3,
        }] += 1;
    }
    n
}

fn report(id: &str, entries: &[Entry], args: &PromoteArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let [promoted, present, refused, skipped] = counts(entries);
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "session": id,
                "dry_run": args.dry_run,
                "promoted": promoted,
                "present": present,
                "refused": refused,
                "skipped": skipped,
                "entries": entries,
            }),
        )?;
        writeln!(out)?;
        return Ok(());
    }
    let verb = if args.dry_run {
        "would promote"
    } else {
        "promoted"
    };
    for e in entries {
        // Names and reasons may hold what the agent chose (file names, versions): quoted and
        // made visible, never sent to the terminal as they are.
        let path = quote::path(&e.path);
        match &e.outcome {
            Outcome::Promoted { verified_by, .. } => {
                writeln!(out, "{verb}  {path}  (verified by {})", shown(verified_by))?
            }
            Outcome::Present { .. } => {
                writeln!(out, "present   {path}  (already in the host cache)")?
            }
            Outcome::Refused { reason } => writeln!(out, "refused   {path}: {}", shown(reason))?,
            Outcome::Skipped { reason } => writeln!(out, "skipped   {path}: {}", shown(reason))?,
        }
    }
    eprintln!(
        "airlock: session {id}: {promoted} {verb}, {present} already present, {refused} refused, \
         {skipped} skipped"
    );
    if refused > 0 {
        eprintln!(
            "airlock: refused files did not match what their registry publishes; they stay in \
             the session only"
        );
    }
    Ok(())
}
