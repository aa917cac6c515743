// The baseline: what a typical TypeScript/JavaScript PreToolUse hook does (claudetainer-style):
// read the JSON on stdin, JSON.parse it, test the command against a few regexes, print the
// decision. No shell parsing at all: this is the floor a node-based hook costs per call.
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
let decision = "allow";
let reason = "ok";
try {
  const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const cmd = String(input?.tool_input?.command ?? "");
  const deny = [
    /\brm\s+-[a-z]*r[a-z]*f?\s+\/(\s|$)/,
    /\bsudo\b/,
    /curl[^|]*\|\s*(ba)?sh/,
    /git\s+push\s+.*--force/,
    /\/dev\/tcp\//,
  ];
  for (const re of deny) {
    if (re.test(cmd)) {
      decision = "deny";
      reason = `matched ${re}`;
      break;
    }
  }
} catch (e) {
  decision = "deny";
  reason = `bad input: ${e}`;
}
process.stdout.write(
  JSON.stringify({
    hookSpecificOutput: {
      hookEventName: "PreToolUse",
      permissionDecision: decision,
      permissionDecisionReason: reason,
    },
  }) + "\n",
);
