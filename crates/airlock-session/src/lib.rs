//! airlock sessions: session store, workspaces (overlay/worktree/bind), diff and merge
#![forbid(unsafe_code)]
