#!/bin/sh
# One command from a fresh Debian machine: installs what is missing, builds, and runs every
# test three ways: the release build, the same tests under AddressSanitizer and
# UndefinedBehaviorSanitizer, and the libFuzzer targets for a bounded time.
# The last line is "N passed, N failed" (every TAP test point counts once).
set -u
cd "$(dirname "$0")/.."
tools/install-deps.sh test || exit 1

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0

suite() { # suite NAME BUILD_DIR [meson options...]
  name=$1 dir=$2
  shift 2
  echo "== $name: building $dir"
  rm -f "$dir/meson-logs/testlog.json" # a failed build must not count an old run
  if ! tools/build.sh "$dir" "$@"; then
    echo "== $name: BUILD FAILED"
    echo "build $name" >>"$failed_builds"
    return
  fi
  echo "== $name: testing"
  meson test -C "$dir" --print-errorlogs --num-processes 2 $suite_args || status=1
}

failed_builds=$(mktemp)
trap 'rm -f "$failed_builds"' EXIT

suite_args="--no-suite fuzz"
suite release build
suite_args="--no-suite fuzz --no-suite container" suite sanitizers build-asan -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args=-fno-sanitize-recover=undefined -Dbuildtype=debugoptimized
suite_args="--suite fuzz"
CC=clang suite fuzzing build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbuildtype=debugoptimized

python3 tools/count_tests.py build build-asan build-fuzz --failed-builds "$failed_builds"
