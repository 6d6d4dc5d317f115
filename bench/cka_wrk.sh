#!/bin/sh
# A cached GET /v1/cka under load: starts metalignd on the seed-size files of
# bench/startup (generate them first with bench/startup/run.sh; else the demo bundle), times
# the first /v1/cka (all-item activations + every representation prepared) and a repeat, then
# runs wrk over loopback: 2 threads, 32 connections, 20 s, latency distribution.
# Usage: bench/cka_wrk.sh            (BUILD=build dir, PORT=port, SECONDS_=duration)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
port=${PORT:-18632}
dur=${SECONDS_:-20}
data=$root/bench/data/startup
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT

if [ -f "$data/model.pt" ]; then
  set -- --checkpoint "$data/model.pt" --heads 12 --backbone "$data/backbone.npz" \
         --things-images "$data/images.txt" --targets "$data/spose.txt" --item-ids "$data/unique_id.txt"
  what="seed-size model (bench/data/startup)"
else
  set -- --config "$root/config/demo.json"
  what="demo bundle"
fi
"$build/metalignd" "$@" --listen "127.0.0.1:$port" --cache-dir "$tmp" 2>"$tmp/log" &
pid=$!
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.05; done
echo "metalignd on the $what"
curl -s -o /dev/null -w "first  /v1/cka: %{time_total} s (computes all-item activations, prepares every representation)\n" \
  "http://127.0.0.1:$port/v1/cka"
curl -s -o /dev/null -w "second /v1/cka: %{time_total} s\n" "http://127.0.0.1:$port/v1/cka"
curl -s -o /dev/null -w "new dims      : %{time_total} s (dims=0,1,2)\n" "http://127.0.0.1:$port/v1/cka?dims=0,1,2"
wrk -t2 -c32 -d"${dur}s" --latency "http://127.0.0.1:$port/v1/cka"
