#!/bin/sh
# Start-up at real size: generates bench/data/startup once (gen.py: a seed-size torch.save
# checkpoint, a 26,107 x 2,304 per-image backbone stored and deflated, a THINGS-like folder and
# list, SPoSE-like text and ids), then
#   1. bench_load: ml_model_load and ml_dataset_load alone, timed, with the RSS after each;
#   2. metalignd on the same files: seconds from exec until GET /readyz answers 200, and its
#      VmRSS / VmHWM then, against the bytes of the model's parameters + the aligned data
#      (X, X_std, Y).
# Variants: backbone stored or deflated, images as a folder or as a list file.
# Usage: bench/startup/run.sh            (BUILD=build dir, DATA=data dir, PORT=port)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
data=${DATA:-$root/bench/data/startup}
port=${PORT:-18631}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

/usr/bin/python3 "$root/bench/startup/gen.py" "$data"
[ -x "$build/metalignd" ] && [ -x "$build/bench/startup/bench_load" ] ||
    { echo "build $build first (ninja -C $build)" >&2; exit 1; }

# Warm the page cache so that the first variant is not penalised: every variant reads warm files.
cat "$data/model.pt" "$data/backbone.npz" "$data/backbone_deflated.npz" > /dev/null

variant() { # name backbone images
    name=$1 backbone=$2 images=$3
    loads=$("$build/bench/startup/bench_load" "$data/model.pt" 12 "$backbone" "$data/spose.txt" \
            "$data/unique_id.txt" "$images")
    daemon=$(/usr/bin/python3 "$root/bench/startup/measure.py" "$port" "$build/metalignd" \
        --listen "127.0.0.1:$port" --checkpoint "$data/model.pt" --heads 12 \
        --backbone "$backbone" --targets "$data/spose.txt" --item-ids "$data/unique_id.txt" \
        --things-images "$images" --cache-dir "$tmp" --human-url "http://127.0.0.1:9/none")
    base=$(echo "$loads" | awk '{ for (i = 1; i < NF; i++) v[$i] = $(i + 1)
                                  print v["model_MB"] + v["data_MB"] }')
    echo "$name: $loads"
    echo "$name: metalignd $daemon" | awk -v b="$base" '{
        for (i = 1; i < NF; i++) if ($i == "rss_MB") r = $(i + 1)
        printf "%s model+data_MB %.1f rss/(model+data) %.2f\n", $0, b, r / b }'
}

variant stored+folder "$data/backbone.npz" "$data/THINGS"
variant deflated+folder "$data/backbone_deflated.npz" "$data/THINGS"
variant stored+list "$data/backbone.npz" "$data/images.txt"
