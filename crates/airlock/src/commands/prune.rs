//! `airlock prune`: removes ended sessions that hold nothing unmerged (optionally only those
//! older than `--older-than`), and says what that freed.

use std::io::Write;
use std::path::PathBuf;

use airlock_session::SessionState;
use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::ls::{disk_usage, human_bytes, remove_session, unmerged};
use crate::cli::PruneArgs;
use crate::review_out::ReviewOut;
use crate::session_dir;

/// Parses a duration such as `7d`, `12h`, `30m`, `90s` or `2w` into seconds.
pub(crate) fn parse_age(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        anyhow::anyhow!("--older-than {text}: expected a number and a unit, e.g. 7d, 12h, 30m")
    })?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("--older-than {text}: unknown unit '{unit}'; use s, m, h, d or w (e.g. 7d)"),
    };
    n.checked_mul(unit_secs)
        .with_context(|| format!("--older-than {text} is too large"))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One pruned (or, with --dry-run, prunable) session.
#[derive(Debug, Serialize)]
struct Pruned {
    id: String,
    name: Option<String>,
    workspace: PathBuf,
    bytes: u64,
}

pub(crate) fn prune(args: PruneArgs) -> Result<i32> {
    let min_age = args.older_than.as_deref().map(parse_age).transpose()?;
    let store = session_dir::store()?;
    let now = now_unix();
    let mut pruned = Vec::new();
    let mut kept_unmerged = 0usize;
    // Kept because their changes cannot be read (the workspace is gone): id and why.
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for r in store.list()? {
        if r.state == SessionState::Running {
            continue;
        }
        let age = u64::try_from(now.saturating_sub(r.created_unix)).unwrap_or(0);
        if min_age.is_some_and(|m| age < m) {
            continue;
        }
        let u = unmerged(&r);
        if !u.is_empty() {
            kept_unmerged += 1;
            if let Some(why) = u.unknown {
                unreadable.push((r.id.clone(), why));
            }
            continue;
        }
        let bytes = if args.dry_run {
            disk_usage(&r.dir)
        } else {
            remove_session(&store, &r)?
        };
        pruned.push(Pruned {
            id: r.id.clone(),
            name: r.name.clone(),
            workspace: r.workspace.clone(),
            bytes,
        });
    }
    let freed: u64 = pruned.iter().map(|p| p.bytes).sum();
    let mut out = ReviewOut::stdout();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "dry_run": args.dry_run,
                "removed": pruned,
                "freed_bytes": freed,
                "kept_unmerged": kept_unmerged,
                "kept_unreadable": unreadable
                    .iter()
                    .map(|(id, why)| serde_json::json!({ "id": id, "why": why }))
                    .collect::<Vec<_>>(),
            }),
        )?;
        writeln!(out)?;
        return Ok(0);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for p in &pruned {
        writeln!(
            out,
            "{verb} {} ({})",
            p.name.as_deref().unwrap_or(&p.id),
            human_bytes(p.bytes)
        )?;
    }
    writeln!(
        out,
        "{verb} {} session(s), freeing {}{}",
        pruned.len(),
        human_bytes(freed),
        if kept_unmerged > 0 {
            format!("; kept {kept_unmerged} with unmerged changes (`airlock ls` lists them)")
        } else {
            String::new()
        }
    )?;
    for (id, why) in &unreadable {
        writeln!(
            out,
            "kept {id}: its changes cannot be read ({why}); `airlock rm --force {id}` removes it \
             and them"
        )?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units_and_errors_say_how() {
        assert_eq!(parse_age("7d").expect("7d"), 7 * 86_400);
        assert_eq!(parse_age("12h").expect("12h"), 12 * 3600);
        assert_eq!(parse_age("30m").expect("30m"), 1800);
        assert_eq!(parse_age("2w").expect("2w"), 14 * 86_400);
        assert_eq!(parse_age("90s").expect("90s"), 90);
        for bad in ["", "d", "7", "7y", "-1d", "99999999999999999999d"] {
            let e = parse_age(bad).expect_err(bad).to_string();
            assert!(e.contains("--older-than"), "{e}");
        }
    }
}
