#!/bin/sh
# One command from a fresh Debian machine: installs what is missing, builds, and runs every
# test three ways: the release build, the same tests under AddressSanitizer and
# UndefinedBehaviorSanitizer, and the libFuzzer targets for a bounded time; then the model,
# engine and http suites once more on the other GEMM back end (a release build with
# -Dgemm=openblas: the forward passes on OpenBLAS, held to the same PyTorch goldens).
# The last line is "N passed, N failed" (every TAP test point counts once; a failed build, a
# missing log, a test that did not run, a plan not met and a skip each count as failures,
# see tools/count_tests.py). The exit status is 0 only when that line says 0 failed.
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
    echo "$dir $name" >>"$failed_builds"
    status=1
    return
  fi
  echo "== $name: testing"
  rc=0
  meson test -C "$dir" --print-errorlogs --num-processes 2 $suite_args || rc=$?
  echo "$dir $rc" >>"$meson_status"
  [ "$rc" -eq 0 ] || status=1
}

failed_builds=$(mktemp)
meson_status=$(mktemp)
trap 'rm -f "$failed_builds" "$meson_status"' EXIT

unit_args="--no-suite fuzz"
fuzz_args="--suite fuzz"
suite_args=$unit_args
suite release build
suite_args="--no-suite fuzz --no-suite container" suite sanitizers build-asan -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args=-fno-sanitize-recover=undefined -Dbuildtype=debugoptimized
suite_args=$fuzz_args
CC=clang suite fuzzing build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbuildtype=debugoptimized
# The default GEMM back end is oneDNN (docs/PERFORMANCE.md says why; the fuzz build uses
# OpenBLAS); the suites that run a forward pass also run on OpenBLAS. About 1.5 min on 2
# cores: the build, then ~30 s of tests.
gemm_args="--suite model --suite engine --suite http"
suite_args=$gemm_args
suite openblas build-openblas -Dgemm=openblas -Dbuildtype=release

# The counter fails on its own for everything above (it reads the same files); status is
# kept as a second opinion so the exit status and the last line can never claim success
# while a build or a meson run failed.
counted=0
out=$(python3 tools/count_tests.py --failed-builds "$failed_builds" --meson-status "$meson_status" \
  --list-args "$unit_args" build build-asan --list-args "$fuzz_args" build-fuzz \
  --list-args "$gemm_args" build-openblas) || counted=1
if [ "$counted" -eq 0 ] && [ "$status" -ne 0 ]; then
  last=$(printf '%s\n' "$out" | tail -n 1)
  out=$(printf '%s\n' "$out" | sed '$d')
  passed=${last%% passed*}
  failed=${last#*passed, }
  failed=${failed%% failed*}
  out=$(printf '%s\nthe builds or meson runs failed but the counter saw no failure (counted as 1)\n%s passed, %s failed' \
    "$out" "$passed" "$((failed + 1))")
fi
printf '%s\n' "$out"
[ "$counted" -eq 0 ] && [ "$status" -eq 0 ]
