#!/bin/sh
# The container layout without a Docker engine: the Dockerfile uses the scripts CI runs, a
# non-root user and a /readyz health check, and what `meson install` puts under a prefix,
# beside config/ and data/demo/ as the Dockerfile copies them, starts and passes --check.
# TAP output; usage: test_install.sh SOURCE_ROOT BUILD_ROOT
set -u
src=$1 build=$2
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { desc=$1; shift; if "$@" >/dev/null 2>&1; then ok "$desc"; else fail "$desc"; fi; }

df=$(mktemp)
# the Dockerfile with continuation lines joined
sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$src/Dockerfile" >"$df"
check "Dockerfile installs with tools/install-deps.sh" grep -q "tools/install-deps.sh build" "$df"
check "Dockerfile builds with tools/build.sh" grep -q "tools/build.sh build" "$df"
check "Dockerfile runtime installs the runtime profile" grep -q "install-deps.sh runtime" "$df"
check "Dockerfile runs as a non-root user" grep -Eq "^USER +[a-z]" "$df"
check "Dockerfile health-checks /readyz" grep -Eq "HEALTHCHECK.*/readyz" "$df"
check "Dockerfile exposes 8080" grep -Eq "^EXPOSE +8080" "$df"
check "Dockerfile is Debian bookworm by default" grep -Eq "^ARG +BASE=debian:bookworm" "$df"
# BASE is a build argument (tools/test_container.sh passes a debootstrap base); no stage may
# start from anything else.
check "every Dockerfile stage starts from BASE" sh -c \
  'grep -Eq "^FROM " "$1" && ! grep -E "^FROM " "$1" | grep -Eqv "^FROM +\\\$\\{BASE\\}( |$)"' sh "$df"

# Every runtime package the container installs exists in the archive this machine sees.
pkgs=$(sed -n 's/^runtime="\(.*\)"$/\1/p' "$src/tools/install-deps.sh")
missing=""
for p in $pkgs; do apt-cache show "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$pkgs" ] && [ -z "$missing" ]; then ok "runtime packages exist: $pkgs"; else fail "runtime packages missing:$missing"; fi

stage=$(mktemp -d)
trap 'rm -rf "$stage" "$df"' EXIT
if DESTDIR="$stage" meson install -C "$build" --no-rebuild --quiet >/dev/null 2>&1 &&
   [ -x "$stage/usr/local/bin/metalignd" ]; then
  ok "meson install puts bin/metalignd under the prefix"
  mkdir -p "$stage/opt/data"
  cp -r "$src/config" "$stage/opt/config"
  cp -r "$src/data/demo" "$stage/opt/data/demo"
  if "$stage/usr/local/bin/metalignd" --config "$stage/opt/config/demo.json" --check \
       --cache-dir "$stage/cache" >"$stage/out" 2>&1 && grep -q "check: ok" "$stage/out"; then
    ok "the installed daemon passes --check on the copied demo config"
  else
    fail "the installed daemon fails --check: $(tr '\n' ' ' <"$stage/out")"
  fi
else
  fail "meson install"
fi
echo "1..$n"
[ "$failed" -eq 0 ]
