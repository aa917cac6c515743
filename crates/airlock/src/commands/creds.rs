//! `airlock creds`: each credential the next `airlock run` here would use: name, source, hosts,
//! whether it is present, and for Claude OAuth what the credentials file says about itself
//! (expiry, subscription type). Nothing is sent anywhere, and no secret is ever printed.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::CredsArgs;
use crate::credentials::{self, Entry};
use crate::policy_load;
use crate::view::Invoker;

/// One credential as `airlock creds --json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    source: String,
    hosts: Vec<String>,
    /// A zero-config default (its source exists on this host) rather than a policy entry.
    builtin: bool,
    present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth: Option<OAuthInfo>,
}

/// What Claude Code's credentials file says about its OAuth tokens.
#[derive(Debug, Serialize)]
struct OAuthInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_type: Option<String>,
}

pub(crate) fn creds(args: CredsArgs) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let ws = std::fs::canonicalize(&cwd).ok();
    let policy = policy_load::load(ws.as_deref(), &args.policies, &args.trust_policies, None)?;
    let who = Invoker::current();
    let rows: Vec<Row> = credentials::effective(&policy, &who.home)
        .into_iter()
        .map(|e| row(e, &who.home))
        .collect();
    if args.json {
        for r in &rows {
            writeln!(std::io::stdout(), "{}", serde_json::to_string(r)?)?;
        }
        return Ok(0);
    }
    if rows.is_empty() {
        writeln!(
            std::io::stdout(),
            "no credentials: add [[credentials]] to your policy, or set e.g. ANTHROPIC_API_KEY"
        )?;
        return Ok(0);
    }
    for r in &rows {
        let state = match (&r.problem, r.present) {
            (Some(p), _) => format!("MISSING: {p}"),
            (None, true) => "present".to_string(),
            (None, false) => "absent".to_string(),
        };
        let origin = if r.builtin { " (default)" } else { "" };
        writeln!(std::io::stdout(), "{}{origin}", r.name)?;
        writeln!(std::io::stdout(), "  source: {}", r.source)?;
        writeln!(std::io::stdout(), "  hosts:  {}", r.hosts.join(", "))?;
        writeln!(std::io::stdout(), "  state:  {state}")?;
        if let Some(o) = &r.oauth {
            if let Some(t) = &o.subscription_type {
                writeln!(std::io::stdout(), "  subscription: {t}")?;
            }
            if let Some(ms) = o.expires_at_ms {
                writeln!(std::io::stdout(), "  expires: {}", describe_expiry(ms))?;
            }
        }
    }
    Ok(0)
}

fn row(e: Entry, home: &Path) -> Row {
    let c = &e.config;
    let problem = credentials::read_secret(c, home).err();
    let oauth = c
        .json
        .as_ref()
        .filter(|j| j.pointer.starts_with("/claudeAiOauth/"))
        .and_then(|j| credentials::read_json(j, home).ok())
        .map(|(_, v)| OAuthInfo {
            expires_at_ms: v
                .pointer("/claudeAiOauth/expiresAt")
                .and_then(|x| x.as_i64()),
            expired: v
                .pointer("/claudeAiOauth/expiresAt")
                .and_then(|x| x.as_i64())
                .map(|ms| ms < now_ms()),
            subscription_type: v
                .pointer("/claudeAiOauth/subscriptionType")
                .and_then(|x| x.as_str())
                .map(str::to_string),
        });
    Row {
        name: c.name.clone(),
        source: credentials::source_label(c),
        hosts: c.hosts.clone(),
        builtin: e.builtin,
        present: problem.is_none(),
        problem,
        oauth,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn describe_expiry(ms: i64) -> String {
    let delta = (ms - now_ms()) / 1000;
    let span = |s: i64| {
        let s = s.abs();
        if s >= 86_400 {
            format!("{}d {}h", s / 86_400, (s % 86_400) / 3600)
        } else {
            format!("{}h {}m", s / 3600, (s % 3600) / 60)
        }
    };
    if delta >= 0 {
        format!(
            "in {} (refreshed through the proxy when needed)",
            span(delta)
        )
    } else {
        format!("{} ago (Claude Code refreshes it on next use)", span(delta))
    }
}
