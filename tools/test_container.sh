#!/bin/bash
# Proves the Dockerfile on a machine with podman but no Docker engine, no registry and no
# working cgroups (as root): makes a Debian bookworm base image with debootstrap (reused from
# podman's store when it is already there), builds the Dockerfile on it with
# `podman build --isolation=chroot`, then runs the image's ENTRYPOINT + CMD from the mounted
# image under `chroot --userspec=<USER>` on a free loopback port and checks /readyz, the uid,
# /v1/info, the image's own HEALTHCHECK command and a clean SIGTERM. Prints TAP.
#
#   tools/test_container.sh            (run by `meson test --suite container` when podman is found)
#
# Environment: METALIGN_CONTAINER_REBUILD_BASE=1 makes the base image again even if it is stored;
# CONTAINERS_STORAGE_CONF (podman's own) points the test at another store, e.g. an empty one.
# Every wait is bounded; every mount, process and temporary folder is undone on every exit path.
set -u
cd "$(dirname "$0")/.." || exit 1
src=$(pwd)

SUITE=bookworm
BASE_REPO=localhost/metalignd-base
IMAGE_TAG=localhost/metalignd-test
# Bump when the recipe of the base changes, so a stored base made the old way is not reused.
BASE_RECIPE=1
LOCK_WAIT=1800          # s: another checkout's container test holds the podman store
DEBOOTSTRAP_TIMEOUT=900 # s
BUILD_TIMEOUT=1800      # s, each podman build
READY_TIMEOUT=60        # s until /readyz answers 200
STOP_TIMEOUT=45         # s after SIGTERM (the daemon's grace is 30 s)
CURL_TIMEOUT=5          # s per request

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; }
diag() { sed 's/^/# /'; }
bail() { # bail REASON [LOG]: a fatal step failed; the remaining checks cannot run
  not_ok "$1"
  [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 40 "$2" | diag
  echo "1..$n"
  echo "Bail out! $1"
  exit 1
}

# ---- clean-up: runs on every exit path ----------------------------------------------------
tmp=""
pid=""
bg=""
image_id=""
mounted=""
building=""
before_build=""
# podman build leaves its working containers behind when it is interrupted: the ones that
# appeared while this script was building are this script's (it holds the store's lock).
containers() { podman ps --all --external --format '{{.ID}}' 2>/dev/null | sort; }
# A long step runs in the background under timeout(1), so a signal to this script is handled
# at once (bash defers traps while a foreground child runs) and the step's whole process group
# goes with it (timeout forwards the signal to the group it leads).
bounded() { # bounded SECONDS COMMAND...
  local secs=$1 rc
  shift
  timeout -k 10 "$secs" "$@" &
  bg=$!
  wait "$bg"
  rc=$?
  bg=""
  return $rc
}
cleanup() {
  if [ -n "$bg" ]; then
    kill -TERM "$bg" 2>/dev/null
    for ((w = 0; w < 150; w++)); do [ -d "/proc/$bg" ] || break; sleep 0.1; done
  fi
  if [ -n "$building" ]; then
    comm -13 <(printf '%s\n' "$before_build") <(containers) | xargs -r podman rm --force >/dev/null 2>&1
  fi
  if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  # The daemon's /proc and tmpfs mounts live in its own mount namespace and went with it.
  [ -n "$mounted" ] && podman image unmount "$image_id" >/dev/null 2>&1
  if [ -n "$tmp" ]; then
    # debootstrap mounts proc/sys in its target; undo whatever a killed run left behind.
    findmnt -rn -o TARGET | grep -F "$tmp/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

for tool in podman debootstrap chroot unshare findmnt flock timeout curl python3 sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || bail "$tool is installed (tools/install-deps.sh test)"
done
[ "$(id -u)" -eq 0 ] || bail "runs as root (podman build with chroot isolation, chroot, mounts)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/metalignd-container.XXXXXX") || bail "mktemp -d"

# One container test at a time on this machine: they share podman's store and its tags.
mkdir -p /run/lock
exec 9>"/run/lock/metalignd-test-container.lock" || bail "open /run/lock/metalignd-test-container.lock"
flock -w "$LOCK_WAIT" 9 || bail "podman store lock within ${LOCK_WAIT} s"

# ---- 1. the base image: debootstrap from the mirror apt uses here, keyed by what it came from --
# The suites this machine's apt already reaches (bookworm, -updates, -security), as sources.list
# lines; debootstrap itself takes the first archive that carries the plain suite.
sources=$(apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE)' 2>/dev/null |
  awk -v s="$SUITE" '$1 == "deb" && ($3 == s || index($3, s "-") == 1) { print "deb " $2 " " $3 " main" }' |
  sort -u)
mirror=$(printf '%s\n' "$sources" | awk -v s="$SUITE" '$3 == s { print $2; exit }')
if [ -z "$mirror" ]; then
  mirror=http://deb.debian.org/debian/
  sources="deb $mirror $SUITE main"
fi
recipe="recipe $BASE_RECIPE; $(debootstrap --version); --variant=minbase $SUITE $mirror
$sources"
base="$BASE_REPO:$SUITE-minbase-$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"

t0=$(date +%s)
if [ "${METALIGN_CONTAINER_REBUILD_BASE:-0}" != 1 ] && podman image exists "$base"; then
  ok "base image $base reused from the store"
else
  root="$tmp/rootfs"
  if bounded "$DEBOOTSTRAP_TIMEOUT" debootstrap --variant=minbase "$SUITE" "$root" "$mirror" \
       >"$tmp/debootstrap.log" 2>&1; then
    # As in Debian's own images: the suites apt uses here, no package cache, no lists, an
    # empty /dev (the runtime provides one).
    printf '%s\n' "$sources" >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
      "$root"/var/lib/apt/lists/* "${root:?}"/dev/*
    printf '%s\n' "$recipe" >"$root/etc/metalignd-base-recipe"
    if bounded "$BUILD_TIMEOUT" /bin/sh -c 'tar -C "$1" --numeric-owner -c . |
         podman import --change "CMD [\"/bin/bash\"]" - "$2"' sh "$root" "$base" \
         >"$tmp/import.log" 2>&1; then
      ok "base image $base made by debootstrap from $mirror in $(($(date +%s) - t0)) s"
    else
      bail "podman import of the debootstrap tree" "$tmp/import.log"
    fi
  else
    bail "debootstrap --variant=minbase $SUITE from $mirror" "$tmp/debootstrap.log"
  fi
  rm -rf "$root"
fi

# ---- 2. the image, from the Dockerfile unchanged but for its BASE -------------------------
# Two tagged builds (the build stage, then the image) keep the layer cache for the next run;
# then the layers of earlier runs (untagged leaves that descend from a base of ours) go, so
# the store holds one base, one build stage and one image, not one more per change.
build() { # build TARGET-ARGS...
  bounded "$BUILD_TIMEOUT" podman build --isolation=chroot --network=host --pull=never \
    --format docker --force-rm --build-arg "BASE=$base" --file "$src/Dockerfile" "$@" "$src" \
    >>"$tmp/build.log" 2>&1
}
t0=$(date +%s)
before_build=$(containers)
building=1
if build --target build --tag "$IMAGE_TAG:build" &&
   build --tag "$IMAGE_TAG:latest" --iidfile "$tmp/iid"; then
  building=""
  image_id=$(cat "$tmp/iid")
  ok "podman build --isolation=chroot of the Dockerfile in $(($(date +%s) - t0)) s"
else
  bail "podman build --isolation=chroot of the Dockerfile" "$tmp/build.log"
fi
prune() {
  local bases id p hops
  bases=$(podman images --no-trunc --format '{{.ID}}' "$BASE_REPO" | sed 's/^sha256://' | tr '\n' ' ')
  for id in $(podman images --all --no-trunc --filter dangling=true --format '{{.ID}}'); do
    p=${id#sha256:}
    hops=0
    while [ -n "$p" ] && [ "$hops" -lt 256 ]; do
      case " $bases " in *" $p "*) break ;; esac
      p=$(podman image inspect --format '{{.Parent}}' "$p" 2>/dev/null)
      hops=$((hops + 1))
    done
    [ -n "$p" ] && podman rmi "$id" >/dev/null 2>&1
  done
  # Bases made from an older recipe or other sources, now without descendants.
  podman images --format '{{.Repository}}:{{.Tag}}' "$BASE_REPO" | grep -vxF "$base" |
    xargs -r podman rmi >/dev/null 2>&1
}
prune
podman image inspect --format '# image {{.Id}}: {{.Size}} bytes' "$image_id"

# ---- 3. what the image says about itself --------------------------------------------------
inspect() { podman image inspect --format "$1" "$image_id"; }
cfg=$(inspect '{{json .Config}}')
health=$(inspect '{{json .HealthCheck}}')
rootfs=$(podman image mount "$image_id" 2>"$tmp/mount.log") || bail "podman image mount" "$tmp/mount.log"
mounted=1
# USER, ENTRYPOINT + CMD, WORKDIR, Env, the HEALTHCHECK and --listen/--cache-dir, resolved
# against the image's own /etc/passwd and /etc/group, as shell assignments.
if ! python3 - "$rootfs" "$cfg" "$health" >"$tmp/config.sh" 2>"$tmp/config.log" <<'EOF'; then
import json, shlex, sys
root, cfg, health = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3] or "null")

def table(name):
    with open(f"{root}/etc/{name}") as f:
        return [line.rstrip("\n").split(":") for line in f if line.strip()]

def resolve(name, rows, field):
    if name.isdigit():
        return int(name)
    for row in rows:
        if row[0] == name:
            return int(row[field])
    sys.exit(f"{name!r} is not in the image's /etc/{'passwd' if field == 2 else 'group'}")

user, _, group = (cfg.get("User") or "0").partition(":")
passwd = table("passwd")
uid = resolve(user, passwd, 2)
row = next((r for r in passwd if int(r[2]) == uid), None)
gid = resolve(group, table("group"), 2) if group else int(row[3]) if row else 0
argv = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
if not argv:
    sys.exit("the image has neither ENTRYPOINT nor CMD")

def flag(name):
    return argv[argv.index(name) + 1] if name in argv[:-1] else ""

test = (health or {}).get("Test") or ["NONE"]
if test[0] == "CMD-SHELL":
    test = ["/bin/sh", "-c", test[1]]
elif test[0] == "CMD":
    test = test[1:]
else:
    test = []
env = cfg.get("Env") or []
if not any(e.startswith("HOME=") for e in env):
    env.append("HOME=" + (row[5] if row else "/"))
out = {"user": cfg.get("User") or "", "uid": uid, "gid": gid,
       "workdir": cfg.get("WorkingDir") or "/", "listen": flag("--listen"),
       "cache_dir": flag("--cache-dir"),
       "health_timeout": max(1, int((health or {}).get("Timeout") or 30e9) // 10**9)}
for k, v in out.items():
    print(f"{k}={shlex.quote(str(v))}")
for k, v in {"argv": argv, "health_cmd": test, "env": env}.items():
    print(f"{k}=({' '.join(shlex.quote(x) for x in v)})")
EOF
  bail "the image's config reads (USER, ENTRYPOINT/CMD, HEALTHCHECK)" "$tmp/config.log"
fi
user="" uid=0 gid=0 workdir=/ listen="" cache_dir="" health_timeout=30 argv=() health_cmd=() env=()
# shellcheck disable=SC1091
. "$tmp/config.sh"
echo "# USER $user = $uid:$gid, WORKDIR $workdir, command: ${argv[*]}"
if [ "$uid" -ne 0 ] && [ "$gid" -ne 0 ]; then
  ok "the image runs as a non-root user ($user = uid $uid, gid $gid)"
else
  not_ok "the image runs as a non-root user (USER is '${user:-unset}' = uid $uid, gid $gid)"
fi
if [ -n "$cache_dir" ] && [ "$(stat -c %u "$rootfs$cache_dir" 2>/dev/null)" = "$uid" ]; then
  ok "--cache-dir $cache_dir exists in the image and belongs to $user"
else
  not_ok "--cache-dir of the CMD ('$cache_dir') exists in the image and belongs to $user"
fi
if [ "${#health_cmd[@]}" -gt 0 ]; then
  ok "the image has a HEALTHCHECK: ${health_cmd[*]}"
else
  not_ok "the image has a HEALTHCHECK"
fi

# ---- 4. run it the way a container would, minus the cgroups --------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The CMD's --listen points at the container's port; here it is a free port on loopback. The
# HEALTHCHECK names the container's port too, so it gets the same substitution.
cport=${listen##*:}
args=()
for ((i = 0; i < ${#argv[@]}; i++)); do
  args+=("${argv[i]}")
  if [ "${argv[i]}" = --listen ] && [ $((i + 1)) -lt ${#argv[@]} ]; then
    args+=("127.0.0.1:$port")
    i=$((i + 1))
  fi
done
[ -n "$listen" ] || args+=(--listen "127.0.0.1:$port")
hc=("${health_cmd[@]}")
if [ -n "$cport" ]; then
  hc=()
  for a in "${health_cmd[@]}"; do hc+=("${a//:$cport/:$port}"); done
fi

# The HEALTHCHECK inside the image as its USER, with its Env only, from its WORKDIR, within
# its own timeout.
healthcheck() {
  timeout -k 2 "$health_timeout" env -i "${env[@]}" \
    chroot --userspec="$uid:$gid" --groups="$gid" "$rootfs" \
    /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "${hc[@]}" >>"$tmp/health.log" 2>&1
}

if [ "${#hc[@]}" -gt 0 ]; then
  # A health check that passes with no daemon behind it would prove nothing.
  if healthcheck; then not_ok "the HEALTHCHECK fails while nothing listens on $port"
  else ok "the HEALTHCHECK fails while nothing listens on $port"; fi
fi

# The rootfs is podman's read-only image mount, so, as in `docker run --read-only --tmpfs`,
# the cache folder and /tmp are tmpfs, with /proc (the daemon reads /proc/self) in a private
# mount namespace of the daemon's own that vanishes with it. env, unshare, sh and chroot all
# exec, so $! is the daemon's pid.
mounts='mount -t proc proc "$0/proc" && mount -t tmpfs -o mode=1777,size=64m tmpfs "$0/tmp"'
[ -n "$cache_dir" ] &&
  mounts="$mounts"' && mount -t tmpfs -o mode=0755,uid='"$uid,gid=$gid"',size=256m tmpfs "$0'"$cache_dir"'"'
env -i "${env[@]}" unshare --mount --propagation private /bin/sh -c "$mounts"' && exec "$@"' \
  "$rootfs" chroot --userspec="$uid:$gid" --groups="$gid" "$rootfs" \
  /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "${args[@]}" >"$tmp/daemon.log" 2>&1 &
pid=$!

# Running: its state reads, and is not a zombie's. A status file that cannot be read is a
# process being reaped (bash reaps its children on SIGCHLD, between any two commands), so a
# failed read counts as stopped, never as running.
alive() {
  local state
  state=$(awk '/^State:/ { print $2; exit }' "/proc/$pid/status" 2>/dev/null)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
code=000
deadline=$((SECONDS + READY_TIMEOUT))
while [ "$SECONDS" -lt "$deadline" ]; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time "$CURL_TIMEOUT" \
    "http://127.0.0.1:$port/readyz" 2>/dev/null)
  [ "$code" = 200 ] && break
  alive || break
  sleep 0.25
done
if [ "$code" = 200 ]; then
  ok "the entrypoint serves /readyz 200 on 127.0.0.1:$port"
else
  diag <"$tmp/daemon.log"
  bail "the entrypoint serves /readyz 200 on 127.0.0.1:$port within ${READY_TIMEOUT} s (last: $code)"
fi

ids=$(awk '/^Uid:/ { u = $2 "," $3 "," $4 "," $5 } /^Gid:/ { g = $2 "," $3 "," $4 "," $5 }
           END { print u " " g }' "/proc/$pid/status")
want="$uid,$uid,$uid,$uid $gid,$gid,$gid,$gid"
if [ "$ids" = "$want" ] && [ "$uid" -ne 0 ]; then
  ok "the daemon (pid $pid) runs as uid $uid gid $gid"
else
  not_ok "the daemon (pid $pid) runs as uid $uid gid $gid (status: Uid,Gid $ids)"
fi

curl -sS --max-time "$CURL_TIMEOUT" "http://127.0.0.1:$port/v1/info" >"$tmp/info.json" 2>&1
if python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(not (d["model"]["synthetic"] is True and d["data"]["synthetic"] is True))' "$tmp/info.json" 2>/dev/null; then
  ok "/v1/info answers with \"synthetic\": true (the demo bundle the image ships)"
else
  not_ok "/v1/info answers with \"synthetic\": true"
  head -c 2000 "$tmp/info.json" | diag
fi

if [ "${#hc[@]}" -gt 0 ]; then
  if healthcheck; then ok "the HEALTHCHECK succeeds inside the image: ${hc[*]}"
  else not_ok "the HEALTHCHECK succeeds inside the image: ${hc[*]}"; diag <"$tmp/health.log"; fi
fi

kill -TERM "$pid"
# One verdict, from the loop: asking alive() again after it could see a stopped daemon
# "running" in the instant bash reaps it (the old check read the status file twice).
stopped=0
for ((w = 0; w < STOP_TIMEOUT * 10; w++)); do
  if ! alive; then stopped=1; break; fi
  sleep 0.1
done
if [ "$stopped" -eq 0 ]; then
  not_ok "SIGTERM stops the daemon within ${STOP_TIMEOUT} s"
  diag <"$tmp/daemon.log"
  # where it is stuck: each thread's name, state and kernel wait, and its stack if gdb is here
  for t in /proc/"$pid"/task/*; do
    echo "thread ${t##*/}: $(cat "$t/comm" 2>/dev/null) $(awk '/^State/ { print $2 }' "$t/status" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
  done | diag
  command -v gdb >/dev/null 2>&1 &&
    timeout 30 gdb -p "$pid" -batch -ex 'thread apply all bt 20' 2>/dev/null | grep -E '^(#|Thread)' | head -n 200 | diag
else
  wait "$pid"
  rc=$?
  pid=""
  if [ "$rc" -eq 0 ]; then ok "SIGTERM stops the daemon with exit 0 in $((w / 10)).$((w % 10)) s"
  else not_ok "SIGTERM stops the daemon with exit 0 (exit $rc)"; diag <"$tmp/daemon.log"; fi
fi

echo "# the daemon's log:"
head -n 20 "$tmp/daemon.log" | diag
echo "1..$n"
exit $failed
