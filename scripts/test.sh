#!/usr/bin/env bash
# The whole test suite: installs what the tests need (as root), builds, runs every test as the
# invoking user, and, when run as root, again as an unprivileged user it creates, because every
# sandbox guarantee must hold for both.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST_USER=${AIRLOCK_TEST_USER:-airlock-test}
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v git >/dev/null || need+=(git)
command -v runuser >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v npm >/dev/null || need+=(npm)
# The real agent clients the end-to-end tests (crates/airlock/tests/agents.rs) run, pinned: an
# unpinned install on Node 20 resolves to an older release, and newer ones need Node 22.
NPM_PREFIX=${AIRLOCK_TEST_NPM_PREFIX:-/opt/airlock-test/npm}
CLAUDE_CODE_VERSION=2.1.112
CODEX_VERSION=0.171.0
export AIRLOCK_TEST_NPM_PREFIX=$NPM_PREFIX
if [ "$(id -u)" = 0 ]; then
  if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    echo "== creating unprivileged test user $TEST_USER"
    useradd --create-home --shell /bin/bash "$TEST_USER"
  fi
  installed=$(node -p "require('$NPM_PREFIX/lib/node_modules/@anthropic-ai/claude-code/package.json').version" 2>/dev/null || true)
  if [ "$installed" != "$CLAUDE_CODE_VERSION" ]; then
    echo "== installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION into $NPM_PREFIX"
    mkdir -p "$NPM_PREFIX"
    npm install -g --prefix "$NPM_PREFIX" --no-fund --no-audit \
      "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null
  fi
  installed=$(node -p "require('$NPM_PREFIX/lib/node_modules/@openai/codex/package.json').version" 2>/dev/null || true)
  if [ "$installed" != "$CODEX_VERSION" ]; then
    echo "== installing @openai/codex@$CODEX_VERSION into $NPM_PREFIX"
    mkdir -p "$NPM_PREFIX"
    npm install -g --prefix "$NPM_PREFIX" --no-fund --no-audit "@openai/codex@$CODEX_VERSION" >/dev/null
  fi
  chmod -R a+rX "$NPM_PREFIX"
  # The container backend: Podman, runtimes, rootless setup and the local test image.
  bash scripts/container-setup.sh
elif [ ${#need[@]} -gt 0 ]; then
  echo "note: ${need[*]} missing and not root; tests that need them will say so" >&2
fi

echo "== build"
cargo build --workspace --all-targets --locked

# The man pages are generated from the clap definitions on every run, so they cannot rot.
echo "== man pages"
"${CARGO_TARGET_DIR:-target}/debug/airlock" man --out "${CARGO_TARGET_DIR:-target}/man"

echo "== tests as $(id -un)"
cargo test --workspace --locked --no-fail-fast

# The benchmark is not pass/fail; this only checks that bench/run.sh still runs (missing peers are skipped).
echo "== benchmark smoke run (bench/run.sh --quick)"
bench_out=$(mktemp -d /tmp/airlock-bench-smoke-XXXXXX)
bash bench/run.sh --quick --out "$bench_out"
rm -rf "$bench_out"

if [ "$(id -u)" = 0 ]; then
  # The sandbox tests again as an unprivileged user. The test binaries and airlock are copied to
  # a directory that user can read (the checkout may be under /root).
  echo "== sandbox tests as unprivileged user $TEST_USER"
  stage=$(mktemp -d /tmp/airlock-ci-XXXXXX)
  trap 'rm -rf "$stage"' EXIT
  cp "${CARGO_TARGET_DIR:-target}/debug/airlock" "$stage/airlock"
  cargo test -p airlock --test sandbox --no-run --locked --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="sandbox":
        print(m["executable"])' > "$stage/bins"
  [ -s "$stage/bins" ] || { echo "could not find the sandbox test binary" >&2; exit 1; }
  cp "$(head -n1 "$stage/bins")" "$stage/sandbox-tests"
  # The credential tests too (placeholders, the credential proxy, nothing secret inside).
  cargo test -p airlock --test creds --no-run --locked --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="creds":
        print(m["executable"])' > "$stage/creds-bins"
  [ -s "$stage/creds-bins" ] || { echo "could not find the creds test binary" >&2; exit 1; }
  cp "$(head -n1 "$stage/creds-bins")" "$stage/creds-tests"
  # The real agent clients against fake APIs (the gate, the proxy and the swap in their path).
  cargo test -p airlock --test agents --no-run --locked --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="agents":
        print(m["executable"])' > "$stage/agents-bins"
  [ -s "$stage/agents-bins" ] || { echo "could not find the agents test binary" >&2; exit 1; }
  cp "$(head -n1 "$stage/agents-bins")" "$stage/agents-tests"
  # The container backend, rootless.
  cargo test -p airlock --test container --no-run --locked --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="container":
        print(m["executable"])' > "$stage/container-bins"
  [ -s "$stage/container-bins" ] || { echo "could not find the container test binary" >&2; exit 1; }
  cp "$(head -n1 "$stage/container-bins")" "$stage/container-tests"
  # The telemetry tests too (a real OTLP receiver on loopback; the collector route through the proxy).
  cargo test -p airlock --test telemetry --no-run --locked --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="telemetry":
        print(m["executable"])' > "$stage/telemetry-bins"
  [ -s "$stage/telemetry-bins" ] || { echo "could not find the telemetry test binary" >&2; exit 1; }
  cp "$(head -n1 "$stage/telemetry-bins")" "$stage/telemetry-tests"
  chmod -R a+rX "$stage"
  runuser -u "$TEST_USER" -- env -i HOME="/home/$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin \
    CI="${CI:-}" AIRLOCK_BIN="$stage/airlock" sh -c "cd /tmp && '$stage/sandbox-tests' --test-threads=2"
  echo "== credential tests as unprivileged user $TEST_USER"
  runuser -u "$TEST_USER" -- env -i HOME="/home/$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin \
    CI="${CI:-}" AIRLOCK_BIN="$stage/airlock" sh -c "cd /tmp && '$stage/creds-tests' --test-threads=2"
  echo "== telemetry tests as unprivileged user $TEST_USER"
  runuser -u "$TEST_USER" -- env -i HOME="/home/$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin \
    CI="${CI:-}" AIRLOCK_BIN="$stage/airlock" sh -c "cd /tmp && '$stage/telemetry-tests' --test-threads=2"
  echo "== agent tests (real Claude Code and Codex) as unprivileged user $TEST_USER"
  runuser -u "$TEST_USER" -- env -i HOME="/home/$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin \
    CI="${CI:-}" AIRLOCK_BIN="$stage/airlock" AIRLOCK_TEST_NPM_PREFIX="$NPM_PREFIX" \
    sh -c "cd /tmp && '$stage/agents-tests' --test-threads=2"
  echo "== container backend tests (rootless Podman) as unprivileged user $TEST_USER"
  test_uid=$(id -u "$TEST_USER")
  runuser -u "$TEST_USER" -- env -i HOME="/home/$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin \
    CI="${CI:-}" AIRLOCK_BIN="$stage/airlock" XDG_RUNTIME_DIR="/run/user/$test_uid" \
    sh -c "cd /tmp && '$stage/container-tests'"
fi
echo "== all tests passed"
