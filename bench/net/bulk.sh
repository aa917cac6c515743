#!/usr/bin/env bash
# Bulk upload through one CONNECT tunnel of the real supervisor (`airlock run --mode bind`, the
# load generator inside the sandbox, its proxy at 127.0.0.1:3128) against the same upload over
# direct loopback, in turns: each round runs every target once, the order flipping every round,
# so a burst of load on a shared machine hits them alike. The net part of bench/run.sh (step 3b)
# by hand, with more rounds and the load average of every run.
#
#   AIRLOCK=target/release/airlock LOADGEN=target/bench-loadgen/release/airlock-bench-load \
#     ROUNDS=12 MIB=512 bash bench/net/bulk.sh > /tmp/bulk.jsonl
#   AIRLOCK_BEFORE=/tmp/airlock-old ...   # adds an `airlock-before` target (before/after in turns)
#
# One JSON line per run on stdout ({"round","target","mib","mib_per_s","load1"}), then a summary
# on stderr: median and fastest MiB/s per target and each airlock target's share of direct.
# Loopback only: the upstream is the load generator's sink on 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AIRLOCK=$(realpath "${AIRLOCK:-$ROOT/target/release/airlock}")
LOADGEN=$(realpath "${LOADGEN:-$ROOT/target/bench-loadgen/release/airlock-bench-load}")
ROUNDS=${ROUNDS:-10}
MIB=${MIB:-512}
WORK=$(mktemp -d /tmp/airlock-bulk.XXXXXX)
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$LOADGEN" serve --port-file "$WORK/port" &
SERVER=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
PORT=$(cat "$WORK/port")
cat > "$WORK/policy.toml" <<EOF
[network]
allow = ["bench.airlock.internal"]
allow_private = ["127.0.0.1"]
[network.resolve]
"bench.airlock.internal" = "127.0.0.1"
[network.ports]
"bench.airlock.internal" = [$PORT]
EOF
# The workspace: a git repository holding the load generator, so the sandbox sees it.
mkdir "$WORK/ws"
cp "$LOADGEN" "$WORK/ws/airlock-bench-load"
git -C "$WORK/ws" init -q
git -C "$WORK/ws" -c user.name=bench -c user.email=bench@example.invalid commit -q --allow-empty -m fixture
export XDG_DATA_HOME=$WORK/data

targets=(direct airlock)
[ -n "${AIRLOCK_BEFORE:-}" ] && targets+=(airlock-before)
one() { # one TARGET: one measured run (after the load generator's own 16 MiB warm-up)
  local lg=./airlock-bench-load
  case "$1" in
    direct) "$lg" bulk --proxy none --target "127.0.0.1:$PORT" --mib "$MIB" --runs 1 ;;
    airlock) "$AIRLOCK" run --mode bind --policy "$WORK/policy.toml" -- \
      "$lg" bulk --proxy env --target "bench.airlock.internal:$PORT" --mib "$MIB" --runs 1 ;;
    airlock-before) "$AIRLOCK_BEFORE" run --mode bind --policy "$WORK/policy.toml" -- \
      "$lg" bulk --proxy env --target "bench.airlock.internal:$PORT" --mib "$MIB" --runs 1 ;;
  esac
}
cd "$WORK/ws"
for r in $(seq "$ROUNDS"); do
  order=("${targets[@]}")
  if (( r % 2 == 0 )); then
    order=()
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[$i]}"); done
  fi
  for t in "${order[@]}"; do
    line=$(one "$t" | tail -n1)
    rate=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["mib_per_s"][0])' "$line")
    printf '{"round":%s,"target":"%s","mib":%s,"mib_per_s":%s,"load1":%s}\n' \
      "$r" "$t" "$MIB" "$rate" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done | tee "$WORK/runs.jsonl"
python3 - "$WORK/runs.jsonl" >&2 <<'EOF'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["target"], []).append(r["mib_per_s"])
d = by.get("direct")
loads = [r["load1"] for r in runs]
print(f"load average (1 min) during the runs: min {min(loads)}, median {st.median(loads)}, max {max(loads)}")
for t, v in by.items():
    share = ""
    if d and t != "direct":
        share = (f"; of direct: {100 * st.median(v) / st.median(d):.0f}% by medians, "
                 f"{100 * max(v) / max(d):.0f}% by fastest runs")
    print(f"{t}: median {st.median(v):.0f} MiB/s, fastest {max(v):.0f} MiB/s over {len(v)} runs{share}")
EOF
