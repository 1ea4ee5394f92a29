#!/bin/sh
# Paired alternating runs of the produce scenario: O_DIRECT vs page cache, preallocated vs
# sparse segments, at 1 KiB and 100 B records, 3 rounds each (the order reverses every round).
# Usage: run.sh OUT_DIR   (from the repository root, after `cargo build --release -p rill-harness`)
set -eu
out=${1:?output directory}
mkdir -p "$out"
for size in 1024 100; do
  for round in 1 2 3; do
    order="on:true off:true on:false off:false"
    if [ $((round % 2)) -eq 0 ]; then order="off:false on:false off:true on:true"; fi
    for combo in $order; do
      direct=${combo%%:*}; prealloc=${combo##*:}
      name="$size-r$round-direct_$direct-prealloc_$prealloc"
      ./target/release/rill-bench produce --record-bytes "$size" --duration-s 5 \
        --direct-io "$direct" --preallocate "$prealloc" --json "$out/$name.json" \
        > "$out/$name.txt" 2>&1
    done
  done
done
