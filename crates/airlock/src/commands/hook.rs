//! `airlock hook claude`: the Claude Code PreToolUse hook.

use crate::cli::HookArgs;

pub(crate) fn claude(_args: HookArgs) -> anyhow::Result<i32> {
    // Fail closed until the gate exists: exit 2 makes Claude Code block the tool call.
    eprintln!("airlock: the command gate is not built yet; denying");
    Ok(2)
}
