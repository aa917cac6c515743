#!/usr/bin/env bash
# A private Docker daemon for the container backend's tests (`--backend docker`), as root:
#   scripts/docker-setup.sh start   installs Debian's docker.io when dockerd is missing, starts
#                                   dockerd on its own socket and data root (never Docker's
#                                   default /var/run/docker.sock, never Podman's), with crun and
#                                   runsc registered, and loads the test image into it;
#   scripts/docker-setup.sh stop    stops the daemon `start` started (nothing else).
# Both are idempotent: `start` on a running daemon only checks the image, `stop` without one does
# nothing. The tests find the daemon by AIRLOCK_TEST_DOCKER_HOST (default: the socket below).
#
# The host needs no systemd: dockerd runs in the background with its own containerd, no bridge,
# no iptables (sessions are --network none), cgroupfs (hybrid cgroups v1+v2 hosts report v1).
set -euo pipefail
SOCK=${AIRLOCK_TEST_DOCKER_SOCK:-/run/airlock-docker.sock}
DATA=${AIRLOCK_TEST_DOCKER_DATA:-/var/lib/airlock-docker}
EXEC=/run/airlock-docker
PIDFILE=/run/airlock-docker.pid
CONF=/run/airlock-docker.json
LOG=/var/log/airlock-docker.log
IMAGE=${AIRLOCK_TEST_IMAGE:-localhost/airlock-test-busybox:latest}
export DOCKER_HOST="unix://$SOCK"

[ "$(id -u)" = 0 ] || { echo "docker-setup.sh: run as root" >&2; exit 1; }

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_docker() {
  command -v dockerd >/dev/null && command -v docker >/dev/null && return
  echo "== installing docker.io"
  # The package's postinst would start Docker's own daemon on /var/run/docker.sock where an
  # init script can: forbid service starts for the install (policy-rc.d, exit 101), unless the
  # host already has a policy.
  local policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
    || { [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# The runtimes airlock's tests use, with the flags airlock's sandbox needs on each
# (crates/airlock-container/src/engine.rs, Runtime::flags).
write_config() {
  local runtimes=() r
  if command -v crun >/dev/null; then runtimes+=("\"crun\": {\"path\": \"$(command -v crun)\"}"); fi
  if command -v runsc >/dev/null; then
    runtimes+=("\"runsc\": {\"path\": \"$(command -v runsc)\", \"runtimeArgs\": [\"--network=none\", \"--host-uds=open\", \"--oci-seccomp\"]}")
  fi
  r=$(IFS=,; echo "${runtimes[*]:-}")
  printf '{"runtimes": {%s}}\n' "$r" > "$CONF"
}

start() {
  install_docker
  if ! answers; then
    write_config
    mkdir -p "$DATA" "$EXEC"
    local driver
    for driver in overlay2 vfs; do
      echo "== starting dockerd on $SOCK (data root $DATA, storage driver $driver)"
      # The daemon inherits no descriptor but stdio: a caller's lock (`flock LOCK this
      # script`) would otherwise be held for as long as the daemon runs.
      (
        for fd in /proc/$BASHPID/fd/*; do
          fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec setsid dockerd --host "unix://$SOCK" --data-root "$DATA" --exec-root "$EXEC" \
          --pidfile "$PIDFILE" --config-file "$CONF" --storage-driver "$driver" \
          --iptables=false --ip6tables=false --bridge=none \
          --exec-opt native.cgroupdriver=cgroupfs </dev/null >>"$LOG" 2>&1
      ) &
      for _ in $(seq 60); do answers && break; kill -0 $! 2>/dev/null || break; sleep 0.5; done
      answers && break
      kill "$!" 2>/dev/null || true; wait "$!" 2>/dev/null || true
    done
    answers || { echo "docker-setup.sh: dockerd did not start; its log:" >&2; tail -20 "$LOG" >&2; exit 1; }
  fi
  # The test image: Podman's copy (scripts/container-setup.sh imports it), else busybox on an
  # empty root made here; no registry either way.
  if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "== loading $IMAGE into Docker"
    if command -v podman >/dev/null && podman image exists "$IMAGE"; then
      podman save "$IMAGE" | docker load -q >/dev/null
    else
      local d; d=$(mktemp -d /tmp/airlock-rootfs-XXXXXX)
      mkdir -p "$d/bin" "$d/tmp" "$d/etc" "$d/home" "$d/proc" "$d/dev" "$d/sys" "$d/usr"
      cp /bin/busybox "$d/bin/busybox"
      for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$d/bin/$a"; done
      ln -s bin "$d/sbin"; ln -s ../bin "$d/usr/bin"
      echo 'root:x:0:0:root:/root:/bin/sh' > "$d/etc/passwd"; echo 'root:x:0:' > "$d/etc/group"
      tar -C "$d" -c . | docker import - "$IMAGE" >/dev/null
      rm -rf "$d"
    fi
  fi
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  # Only the daemon this script started: its pid file names a dockerd serving our socket.
  if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "dockerd --host unix://$SOCK"; then
    echo "== stopping dockerd on $SOCK (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
