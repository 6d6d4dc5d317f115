#!/bin/sh
# Installs what metalignd needs to build, test and run, from Debian packages only, and
# nothing that is already there. Used by tools/run.sh, tools/test.sh, .ci/run and the
# Dockerfile. Usage: tools/install-deps.sh [build|test|runtime]   (default: test)
set -eu

profile=${1:-test}

# libjs-dygraphs: the dashboard's charting library. The build embeds it (the daemon serves it
# from memory); the runtime profile carries the package too, with its licence, so an image
# holds the library it serves. libhdf5: HDF5 backbones (the research code's current files).
# libhiredis: the Redis client of the scale-out (--redis). libdnnl2: oneDNN, the default GEMM
# back end of the forward passes (meson -Dgemm).
runtime="libmicrohttpd12 libjansson4 libopenblas0-pthread libcurl4 libzip4 zlib1g libcsv3 libhdf5-103-1 libhiredis0.14 ca-certificates curl libjs-dygraphs libdnnl2"
build="gcc libc6-dev pkg-config meson ninja-build libmicrohttpd-dev libjansson-dev libopenblas-dev
       libcurl4-openssl-dev libzip-dev zlib1g-dev libcsv-dev libhdf5-dev libhiredis-dev curl ca-certificates
       libjs-dygraphs libdnnl-dev"
# clang + its runtime give libFuzzer and the sanitizer runtimes the test suite uses.
test_extra="clang libclang-rt-14-dev"
# The dashboard's browser test (tests/http/test_dashboard.py): headless chromium driven through
# chromedriver; pandas reads the CSV tables back (tests/reference/test_csv_pandas.py) and
# scipy refits the replay's temperatures from its CSV (tests/reference/check_replay_csv.py).
browser="chromium chromium-driver python3-pandas python3-scipy"
# The scale-out's tests: a real Redis and a real load balancer on loopback (tests/scaleout),
# and PyYAML for the offline check of deploy/k8s/ (tests/deploy).
scaleout="redis-server nginx-light python3-yaml"
# The container test (tools/test_container.sh, as root): debootstrap makes a bookworm base image
# without a registry, podman builds the Dockerfile on it. podman builds in-process (no buildah
# binary) and root's store uses the kernel's overlayfs, so neither buildah nor fuse-overlayfs.
container="podman debootstrap"

case "$profile" in
  runtime) want="$runtime" ;;
  build) want="$build" ;;
  test) want="$build $test_extra $browser $scaleout $container" ;;
  *) echo "usage: $0 [build|test|runtime]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  echo "install-deps: all $profile packages present"
  exit 0
fi

echo "install-deps: installing$missing"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "install-deps: need root (or sudo) to install:$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
