#!/bin/sh
# One command from a fresh Debian machine: installs what is missing, builds, and starts
# metalignd in the foreground on the embedded (synthetic) demo bundle.
# Extra arguments go to the daemon, e.g. tools/run.sh --listen 0.0.0.0:8080
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh build
tools/build.sh build
exec build/metalignd --config config/demo.json "$@"
