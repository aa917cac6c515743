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
# Desktop notifications: a private session bus, notify-send, and the stand-in notification
# server's python modules (crates/airlock/tests/all/sandbox.rs, desktop_notifications_*).
command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
command -v notify-send >/dev/null || need+=(libnotify-bin)
/usr/bin/python3 -c 'import dbus' 2>/dev/null || need+=(python3-dbus)
/usr/bin/python3 -c 'import gi' 2>/dev/null || need+=(python3-gi)
# The real agent clients the end-to-end tests (crates/airlock/tests/all/agents.rs) run, pinned: an
# unpinned install on Node 20 resolves to an older release, and newer ones need Node 22. airlock's
# default container image pins the same (crates/airlock-container/src/image.rs checks).
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
  # And a private Docker daemon on its own socket and data root (never /var/run/docker.sock),
  # started here and stopped when this script ends, whatever way it ends: the container tests'
  # Docker rows (crates/airlock/tests/all/container.rs) run on it.
  trap 'bash scripts/docker-setup.sh stop' EXIT
  bash scripts/docker-setup.sh start
  export AIRLOCK_TEST_DOCKER_HOST=unix:///run/airlock-docker.sock
elif [ ${#need[@]} -gt 0 ]; then
  echo "note: ${need[*]} missing and not root; tests that need them will say so" >&2
fi

echo "== build"
cargo build --workspace --all-targets --locked

# The man pages are generated from the clap definitions on every run, so they cannot rot.
echo "== man pages"
"${CARGO_TARGET_DIR:-target}/debug/airlock" man --out "${CARGO_TARGET_DIR:-target}/man"

# Every test that skips a check (a missing tool, a privilege) appends `TEST: REASON` here; the
# list is printed at the end, so a skip never passes silently.
AIRLOCK_TEST_SKIPS=$(mktemp /tmp/airlock-test-skips-XXXXXX)
chmod 666 "$AIRLOCK_TEST_SKIPS"
export AIRLOCK_TEST_SKIPS
print_skips() {
  if [ -s "$AIRLOCK_TEST_SKIPS" ]; then
    echo "== skipped checks ($(wc -l < "$AIRLOCK_TEST_SKIPS")), each with its reason:"
    sed 's/^/  /' "$AIRLOCK_TEST_SKIPS"
  else
    echo "== skipped checks: none"
  fi
}

echo "== tests as $(id -un)"
cargo test --workspace --locked --no-fail-fast

# The benchmark is not pass/fail; this only checks that bench/run.sh still runs (missing peers are skipped).
echo "== benchmark smoke run (bench/run.sh --quick)"
bench_out=$(mktemp -d /tmp/airlock-bench-smoke-XXXXXX)
bash bench/run.sh --quick --out "$bench_out"
rm -rf "$bench_out"

if [ "$(id -u)" = 0 ]; then
  # The sandbox tests again as an unprivileged user. The test binary and airlock are copied to
  # a directory that user can read (the checkout may be under /root).
  echo "== sandbox tests as unprivileged user $TEST_USER"
  stage=$(mktemp -d /tmp/airlock-ci-XXXXXX)
  trap 'rm -rf "$stage"; bash scripts/docker-setup.sh stop' EXIT
  cp "${CARGO_TARGET_DIR:-target}/debug/airlock" "$stage/airlock"
  # The integration tests of crates/airlock are one test binary (tests/all/main.rs, a module
  # per subject); it is copied to $stage/airlock-tests and re-run below one module at a time.
  cargo test -p airlock --test all --no-run --locked --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="all":
        print(m["executable"])' > "$stage/all-bins"
  [ -s "$stage/all-bins" ] || { echo "could not find the test binary of crates/airlock/tests/all" >&2; exit 1; }
  cp "$(head -n1 "$stage/all-bins")" "$stage/airlock-tests"
  chmod -R a+rX "$stage"
  # The host-cache tests build with cargo as that user: the active toolchain, used where it is
  # when that user can run it, else hard-linked (no copy on the same file system) where the user
  # can reach it (rustup's home may be under /root).
  cargo_bin=$(rustup which cargo 2>/dev/null || command -v cargo)
  toolchain_bin=$(dirname "$cargo_bin")
  if ! runuser -u "$TEST_USER" -- test -x "$cargo_bin"; then
    toolchain=$(dirname "$toolchain_bin")
    cp -al "$toolchain" "$stage/toolchain" 2>/dev/null || cp -a "$toolchain" "$stage/toolchain"
    toolchain_bin="$stage/toolchain/bin"
  fi
  # Runs the tests of module MODULE (`MODULE::`) of $stage/airlock-tests as the test user with a
  # clean environment (plus any VAR=value given). A filter that selects no test is an error, so
  # a renamed module cannot turn its unprivileged run into a silent pass.
  run_unprivileged() {
    local module=$1
    shift
    local n
    n=$("$stage/airlock-tests" "$module::" --list --format terse | grep -c ': test$' || true)
    [ "$n" -gt 0 ] || { echo "no test in module $module:: of crates/airlock/tests/all" >&2; exit 1; }
    runuser -u "$TEST_USER" -- env -i HOME="/home/$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin \
      CI="${CI:-}" AIRLOCK_BIN="$stage/airlock" AIRLOCK_TEST_SKIPS="$AIRLOCK_TEST_SKIPS" "$@" \
      sh -c "cd /tmp && '$stage/airlock-tests' '$module::' --test-threads=2"
  }
  run_unprivileged sandbox
  echo "== error chain tests as unprivileged user $TEST_USER"
  run_unprivileged errchain
  echo "== credential tests as unprivileged user $TEST_USER"
  run_unprivileged creds
  echo "== telemetry tests as unprivileged user $TEST_USER"
  run_unprivileged telemetry
  echo "== host cache tests (offline builds, cache promote) as unprivileged user $TEST_USER"
  run_unprivileged caches AIRLOCK_TEST_TOOLCHAIN="$toolchain_bin"
  echo "== cache promote for pip, Maven, Go, uv as unprivileged user $TEST_USER"
  run_unprivileged promote_ecosystems
  echo "== agent tests (real Claude Code and Codex) as unprivileged user $TEST_USER"
  run_unprivileged agents AIRLOCK_TEST_NPM_PREFIX="$NPM_PREFIX"
  # airlock's default container image as the root tests built it, copied into the test user's
  # store once (a user cannot make its base without a registry: debootstrap needs root).
  tag=$("$stage/airlock" image status --json 2>/dev/null \
    | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["tag"] if j["present"] else "")' || true)
  test_user_podman() {
    runuser -u "$TEST_USER" -- env XDG_RUNTIME_DIR="/run/user/$(id -u "$TEST_USER")" \
      HOME="/home/$TEST_USER" sh -c "cd / && podman $*"
  }
  if [ -n "$tag" ] && ! test_user_podman image exists "$tag"; then
    echo "== copying $tag into $TEST_USER's Podman store"
    podman save "$tag" | test_user_podman load -q >/dev/null
  fi
  echo "== container backend tests (rootless Podman) as unprivileged user $TEST_USER"
  run_unprivileged container XDG_RUNTIME_DIR="/run/user/$(id -u "$TEST_USER")"
  echo "== remote box tests (airlock serve in rootless Podman) as unprivileged user $TEST_USER"
  run_unprivileged remote XDG_RUNTIME_DIR="/run/user/$(id -u "$TEST_USER")"
fi
print_skips
rm -f "$AIRLOCK_TEST_SKIPS"
echo "== all tests passed"
