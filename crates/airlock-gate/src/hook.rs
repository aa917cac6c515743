//! Claude Code's PreToolUse hook protocol: the JSON read on stdin, the decision JSON written on
//! stdout. Claude Code proceeds with the tool call when a hook crashes, times out or exits with
//! a status other than 0 or 2, so everything here ends in a decision: bad input is denied
//! with a reason saying what was wrong.

use serde::{Deserialize, Serialize};

use crate::schema::Tier;

/// Largest hook input accepted (a command this long is not a command a person reviews).
pub const MAX_INPUT: usize = 256 * 1024;

/// What the hook reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HookInput {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub transcript_path: Option<String>,
    pub cwd: String,
    #[serde(default)]
    pub permission_mode: Option<String>,
    pub hook_event_name: String,
    pub tool_name: String,
    pub tool_input: serde_json::Value,
    #[serde(default)]
    pub tool_use_id: Option<String>,
}

/// Why the hook input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("hook input is larger than {MAX_INPUT} bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("hook input is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
    #[error("hook input is not the PreToolUse JSON: {0}")]
    Json(String),
    #[error("hook event {0:?} is not PreToolUse")]
    Event(String),
    #[error("hook input `cwd` {0:?} is not an absolute path")]
    Cwd(String),
    #[error("hook input `tool_input` is not a JSON object")]
    ToolInput,
}

/// Checks and parses the hook's stdin.
pub fn parse_input(bytes: &[u8]) -> Result<HookInput, HookError> {
    if bytes.len() > MAX_INPUT {
        return Err(HookError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| HookError::NotUtf8(e.valid_up_to()))?;
    let input: HookInput =
        serde_json::from_str(text).map_err(|e| HookError::Json(e.to_string()))?;
    if input.hook_event_name != "PreToolUse" {
        return Err(HookError::Event(input.hook_event_name));
    }
    if !input.cwd.starts_with('/') {
        return Err(HookError::Cwd(input.cwd));
    }
    if !input.tool_input.is_object() {
        return Err(HookError::ToolInput);
    }
    Ok(input)
}

/// The permission decision Claude Code understands (`review` is resolved before this).
pub fn decision_str(t: Tier) -> &'static str {
    match t {
        Tier::Allow => "allow",
        Tier::Ask | Tier::Review => "ask",
        Tier::Deny => "deny",
    }
}

/// The stdout JSON for a decision.
pub fn output(t: Tier, reason: &str) -> String {
    serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision_str(t),
            "permissionDecisionReason": format!("airlock: {reason}"),
        }
    })
    .to_string()
}

/// A text summary of the tool call for the audit log.
pub fn audit_command(input: &HookInput) -> Option<String> {
    let s = |k: &str| {
        input
            .tool_input
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut c = s("command")
        .or_else(|| s("file_path"))
        .or_else(|| s("notebook_path"))
        .or_else(|| s("path"))
        .or_else(|| s("url"))?;
    if c.len() > 4096 {
        let mut i = 4096;
        while !c.is_char_boundary(i) {
            i -= 1;
        }
        c.truncate(i);
        c.push('…');
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(parse_input(b"not json"), Err(HookError::Json(_))));
        assert!(matches!(parse_input(b"{}"), Err(HookError::Json(_))));
        assert!(matches!(
            parse_input(&[0xff, 0xfe]),
            Err(HookError::NotUtf8(0))
        ));
        assert!(matches!(
            parse_input(&vec![b' '; MAX_INPUT + 1]),
            Err(HookError::TooLarge(_))
        ));
        let wrong_event =
            br#"{"cwd":"/w","hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{}}"#;
        assert!(matches!(parse_input(wrong_event), Err(HookError::Event(_))));
        let rel =
            br#"{"cwd":"w","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{}}"#;
        assert!(matches!(parse_input(rel), Err(HookError::Cwd(_))));
        let ok = br#"{"session_id":"s","cwd":"/w","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}"#;
        assert_eq!(parse_input(ok).expect("ok").tool_name, "Bash");
    }

    #[test]
    fn output_shape() {
        let v: serde_json::Value = serde_json::from_str(&output(Tier::Review, "x")).expect("json");
        assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "ask");
        assert_eq!(v["hookSpecificOutput"]["hookEventName"], "PreToolUse");
    }
}
