#!/usr/bin/env bash
# Wall time of one `airlock hook claude` process call, next to a node-based hook doing a trivial
# JSON parse + regex check (node-hook.mjs), and bun when it is installed.
#
#   bash bench/gate/run.sh [--quick] [--out DIR]
#
# Builds airlock in release mode (or uses $AIRLOCK_BIN), runs hyperfine with the hook input on
# stdin (no shell in between with hyperfine >= 1.16; older ones go
# through dash, whose cost is measured as a baseline row), and writes results.md and results.json to DIR (default:
# bench/gate/results). Target: median under 5 ms per airlock hook call.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=200
WARMUP=20
OUT=$HERE/results
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) RUNS=20; WARMUP=3 ;;
    --out) OUT=${2:?--out DIR}; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/gate/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v hyperfine >/dev/null || { echo "bench/gate/run.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
command -v node >/dev/null || { echo "bench/gate/run.sh: needs node" >&2; exit 1; }
if [ -z "${AIRLOCK_BIN:-}" ]; then
  TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
  (cd "$ROOT" && cargo build --release -q -p airlock)
  AIRLOCK_BIN=$TARGET/release/airlock
fi
mkdir -p "$OUT"
# A private HOME and audit log: the benchmark must not touch the user's.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export HOME=$SCRATCH XDG_STATE_HOME=$SCRATCH/state
args=(--warmup "$WARMUP" --runs "$RUNS" --export-markdown "$OUT/results.md" --export-json "$OUT/results.json")
if hyperfine --help | grep -q -- '--input'; then
  # hyperfine >= 1.16: stdin from a file, no shell in between.
  run() { cmds+=(-n "$1" --input "$2" "$3"); }
  args+=(-N)
  MODE=direct
else
  # Older hyperfine: a redirect needs a shell; its cost is measured too (the first row) and is
  # included in every other row.
  run() { cmds+=(-n "$1" "dash -c '$3 < $2'"); }
  args+=(--shell=none)
  MODE=shell
fi
cmds=()
if [ "$MODE" = shell ]; then
  run "baseline: dash -c ': < input'" "$HERE/allow.json" ":"
fi
run "airlock hook claude (allow: cargo test && git commit <<heredoc)" "$HERE/allow.json" "$AIRLOCK_BIN hook claude"
run "airlock hook claude (deny: nested base64 + curl | sudo bash)" "$HERE/deny.json" "$AIRLOCK_BIN hook claude"
run "node hook (JSON.parse + 5 regexes)" "$HERE/allow.json" "node $HERE/node-hook.mjs"
if command -v bun >/dev/null; then
  run "bun hook (same script)" "$HERE/allow.json" "bun $HERE/node-hook.mjs"
fi
hyperfine "${args[@]}" "${cmds[@]}" 2>&1 | tee "$OUT/hyperfine.txt"
