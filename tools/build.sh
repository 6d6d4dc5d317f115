#!/bin/sh
# Configures (once) and builds one build directory: tools/build.sh DIR [meson options...]
set -eu
cd "$(dirname "$0")/.."
dir=$1
shift
if [ -d "$dir/meson-private" ]; then
  meson configure "$dir" "$@" >/dev/null
else
  meson setup "$dir" "$@"
fi
ninja -C "$dir"
