#!/usr/bin/env bash
# Test setup for the container backend (crates/airlock-container), idempotent, as root: installs
# Podman and the OCI runtimes from Debian, makes rootful and rootless Podman work on hosts without
# systemd and with hybrid cgroups, and builds the tiny local test image (no registry needed).
# Every step checks a condition first, so a host that already has it is left as it is.
set -euo pipefail
TEST_USER=${AIRLOCK_TEST_USER:-airlock-test}
IMAGE=${AIRLOCK_TEST_IMAGE:-localhost/airlock-test-busybox:latest}

[ "$(id -u)" = 0 ] || { echo "container-setup.sh: run as root" >&2; exit 1; }

need=()
command -v podman >/dev/null || need+=(podman)
command -v crun >/dev/null || need+=(crun)
command -v runc >/dev/null || need+=(runc)
command -v runsc >/dev/null || need+=(runsc)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
command -v newuidmap >/dev/null || need+=(uidmap)
# debootstrap: the base of airlock's default image where no registry is reachable (the tests build
# that image once per machine; crates/airlock-container/src/image.rs).
[ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Runtimes fail `setrlimit ... Operation not permitted` when the default ulimits exceed what the
# host lets a process raise (no CAP_SYS_RESOURCE in the bounding set): pin them below the host's
# hard limits.
conf=/etc/containers/containers.conf
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576; [ "$nproc" = unlimited ] && nproc=4194304
nf=$(( nofile < 20000 ? nofile : 20000 )); np=$(( nproc < 4096 ? nproc : 4096 ))
if ! grep -q '^default_ulimits' "$conf" 2>/dev/null; then
  echo "== $conf: default_ulimits nofile=$nf nproc=$np"
  mkdir -p /etc/containers
  if grep -q '^\[containers\]' "$conf" 2>/dev/null; then
    sed -i "/^\[containers\]/a default_ulimits = [\"nofile=$nf:$nf\",\"nproc=$np:$np\"]" "$conf"
  else
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s","nproc=%s:%s"]\n' "$nf" "$nf" "$np" "$np" >> "$conf"
  fi
fi

# Hybrid cgroups: crun refuses to run while a controller is still attached to the v2 hierarchy
# ("cgroups in hybrid mode not supported"). Move each such controller to a v1 mount of its own.
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
  for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
    echo "== moving cgroup controller $c from the v2 hierarchy to /sys/fs/cgroup/$c"
    mkdir -p "/sys/fs/cgroup/$c"
    mountpoint -q "/sys/fs/cgroup/$c" || mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" \
      || echo "note: could not move $c; crun will fail here, use --runtime runc" >&2
  done
fi

# Rootful podman-box runs each box in a user namespace of its own (`--userns=auto`, so the box's
# root is not the host's: docs/remote.md): Podman takes those ids from the `containers` entries.
grep -q '^containers:' /etc/subuid || echo 'containers:2147483647:2147483648' >> /etc/subuid
grep -q '^containers:' /etc/subgid || echo 'containers:2147483647:2147483648' >> /etc/subgid

# Rootless Podman for the test user: a runtime directory (no systemd/logind to make one), the
# overlay storage driver, and subordinate ids.
if id "$TEST_USER" >/dev/null 2>&1; then
  uid=$(id -u "$TEST_USER"); home=$(getent passwd "$TEST_USER" | cut -d: -f6)
  install -d -m 700 -o "$TEST_USER" -g "$TEST_USER" "/run/user/$uid"
  grep -q "^$TEST_USER:" /etc/subuid || echo "$TEST_USER:200000:65536" >> /etc/subuid
  grep -q "^$TEST_USER:" /etc/subgid || echo "$TEST_USER:200000:65536" >> /etc/subgid
  sc="$home/.config/containers/storage.conf"
  if [ ! -f "$sc" ]; then
    install -d -o "$TEST_USER" -g "$TEST_USER" "$home/.config" "$home/.config/containers"
    printf '[storage]\ndriver = "overlay"\n' > "$sc"
    chown "$TEST_USER:$TEST_USER" "$sc"
  fi
fi

# The test image: busybox-static on an empty root (FROM scratch), imported locally.
rootfs_tar() {
  local d; d=$(mktemp -d /tmp/airlock-rootfs-XXXXXX)
  mkdir -p "$d/bin" "$d/tmp" "$d/etc" "$d/home" "$d/proc" "$d/dev" "$d/sys"
  cp /bin/busybox "$d/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$d/bin/$a"; done
  ln -s bin "$d/sbin"; mkdir -p "$d/usr"; ln -s ../bin "$d/usr/bin"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$d/etc/passwd"; echo 'root:x:0:' > "$d/etc/group"
  tar -C "$d" -cf "$1" .
  rm -rf "$d"
}
tarball=$(mktemp /tmp/airlock-rootfs-XXXXXX.tar)
trap 'rm -f "$tarball"' EXIT
rootfs_tar "$tarball"; chmod 644 "$tarball"
if ! podman image exists "$IMAGE"; then
  echo "== importing $IMAGE (rootful)"
  podman import -q "$tarball" "$IMAGE" >/dev/null
fi
if id "$TEST_USER" >/dev/null 2>&1; then
  if ! runuser -u "$TEST_USER" -- env XDG_RUNTIME_DIR="/run/user/$uid" HOME="$home" sh -c "cd / && podman image exists $IMAGE"; then
    echo "== importing $IMAGE (rootless, $TEST_USER)"
    runuser -u "$TEST_USER" -- env XDG_RUNTIME_DIR="/run/user/$uid" HOME="$home" sh -c "cd / && podman import -q $tarball $IMAGE" >/dev/null
  fi
fi

# The box image of the podman-box engine (`airlock run --backend podman-box`, tests in
# crates/airlock/tests/all/remote.rs): what `airlock serve` needs around it, assembled from this
# host's binaries and the libraries they load (no registry, no download, a few MB): busybox for
# the shell and tools, tmux (attach) and git, terminfo, CA roots, and the unprivileged user
# `airlock` the session runs as. airlock itself is not in it: the engine mounts the running
# airlock binary read-only at /usr/local/bin/airlock, so the box always runs the local side's
# release (a remote engine's image has it built in). Rebuilt only when the recipe changes.
BOX_IMAGE=${AIRLOCK_BOX_IMAGE:-localhost/airlock-box:latest}
BOX_RECIPE=7
box_rootfs_tar() {
  local d; d=$(mktemp -d /tmp/airlock-box-XXXXXX)
  mkdir -p "$d/usr/bin" "$d/usr/lib/x86_64-linux-gnu" "$d/usr/lib64" "$d/usr/sbin" "$d/usr/local/bin" \
    "$d/usr/local/libexec" "$d/etc/ssl/certs" "$d/tmp" "$d/run" "$d/var/lib/airlock" "$d/workspace" \
    "$d/proc" "$d/dev" "$d/sys" "$d/root" "$d/usr/share"
  chmod 1777 "$d/tmp"
  ln -s usr/bin "$d/bin"; ln -s usr/sbin "$d/sbin"; ln -s usr/lib "$d/lib"; ln -s usr/lib64 "$d/lib64"
  cp /bin/busybox "$d/usr/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$d/usr/bin/$a" ] || ln -s busybox "$d/usr/bin/$a"; done
  cp "$(command -v tmux)" "$d/usr/bin/tmux"
  local git; git=$(command -v git)
  cp "$git" "$d/usr/bin/git"
  local core; core=$("$git" --exec-path)
  # The helpers git runs by path, and its https transport: `airlock serve` clones a
  # `--clone URL` workspace through its proxy (git-remote-https, libcurl).
  mkdir -p "$d$core"
  for h in git git-sh-setup git-sh-i18n git-mergetool--lib git-remote-https git-remote-http; do [ -e "$core/$h" ] && cp "$core/$h" "$d$core/"; done
  local libs
  # curl and openssl: the tests' HTTPS client (inside the sandbox) and upstream (in the box).
  cp "$(command -v curl)" "$(command -v openssl)" "$d/usr/bin/"
  libs=$(ldd "$(command -v tmux)" "$git" "$core/git-remote-https" "$(command -v curl)" "$(command -v openssl)" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | sort -u)
  for l in $libs /lib/x86_64-linux-gnu/libgcc_s.so.1 /lib/x86_64-linux-gnu/libm.so.6; do
    cp -L "$l" "$d/usr/lib/x86_64-linux-gnu/$(basename "$l")"
  done
  cp -L /lib64/ld-linux-x86-64.so.2 "$d/usr/lib64/ld-linux-x86-64.so.2"
  mkdir -p "$d/usr/share/terminfo"
  for t in x/xterm x/xterm-256color s/screen s/screen-256color t/tmux t/tmux-256color d/dumb l/linux; do
    for base in /lib/terminfo /usr/share/terminfo; do
      [ -e "$base/$t" ] && { mkdir -p "$d/usr/share/terminfo/${t%%/*}"; cp -L "$base/$t" "$d/usr/share/terminfo/$t"; }
    done
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/ca-certificates.crt"
  # tmux refuses to start without a UTF-8 locale.
  mkdir -p "$d/usr/lib/locale"; cp -a /usr/lib/locale/C.utf8 "$d/usr/lib/locale/"
  printf 'root:x:0:0:root:/root:/bin/sh\nairlock:x:1000:1000:airlock:/var/lib/airlock/home:/bin/sh\n' > "$d/etc/passwd"
  printf 'root:x:0:\nairlock:x:1000:\n' > "$d/etc/group"
  echo "airlock-box recipe $BOX_RECIPE" > "$d/etc/airlock-box"
  # Mount points the sandbox binds generated files on (a read-only /etc cannot grow them).
  : > "$d/etc/resolv.conf"; : > "$d/etc/hosts"; echo airlock > "$d/etc/hostname"
  tar -C "$d" -cf "$1" .
  rm -rf "$d"
}
box_current() { # image exists and was built by this recipe
  [ "$(podman image inspect --format '{{index .Config.Labels "airlock.box.recipe"}}' "$BOX_IMAGE" 2>/dev/null)" = "$BOX_RECIPE" ]
}
box_tar=$(mktemp /tmp/airlock-box-XXXXXX.tar)
trap 'rm -f "$tarball" "$box_tar"' EXIT
box_built=0
if ! box_current; then
  echo "== importing $BOX_IMAGE (rootful)"
  box_rootfs_tar "$box_tar"; chmod 644 "$box_tar"; box_built=1
  podman rmi -f "$BOX_IMAGE" >/dev/null 2>&1 || true
  podman import -q --change "LABEL airlock.box.recipe=$BOX_RECIPE" "$box_tar" "$BOX_IMAGE" >/dev/null
fi
if id "$TEST_USER" >/dev/null 2>&1; then
  as_user() { runuser -u "$TEST_USER" -- env XDG_RUNTIME_DIR="/run/user/$uid" HOME="$home" sh -c "cd / && $1"; }
  if ! as_user "[ \"\$(podman image inspect --format '{{index .Config.Labels \"airlock.box.recipe\"}}' $BOX_IMAGE 2>/dev/null)\" = $BOX_RECIPE ]"; then
    echo "== importing $BOX_IMAGE (rootless, $TEST_USER)"
    [ "$box_built" = 1 ] || { box_rootfs_tar "$box_tar"; chmod 644 "$box_tar"; }
    as_user "podman rmi -f $BOX_IMAGE >/dev/null 2>&1; podman import -q --change 'LABEL airlock.box.recipe=$BOX_RECIPE' $box_tar $BOX_IMAGE" >/dev/null
  fi
fi
