#!/usr/bin/env python3
"""Tables for run.sh's output: per configuration medians, and paired ratios per round."""
import json
import statistics
import sys
from pathlib import Path

runs = Path(sys.argv[1])
CONFIGS = [("on", "true"), ("on", "false"), ("off", "true"), ("off", "false")]
NAMES = {"on": "O_DIRECT", "off": "page cache", "true": "prealloc", "false": "sparse"}


def load(size, rnd, direct, prealloc):
    path = runs / f"{size}-r{rnd}-direct_{direct}-prealloc_{prealloc}.json"
    if not path.exists():
        return None
    s = json.loads(path.read_text())["scenarios"][0]
    roles = s.get("cpu_ns_per_record_by_role", {})
    return {
        "mb": s["mb_per_s"],
        "cpu": s["cpu_ns_per_record"],
        "wrk": roles.get("io_worker", 0.0),
        "shard": roles.get("shard", 0.0),
    }


def fmt_range(values, spec=".0f"):
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"


for size in (1024, 100):
    label = "1 KiB" if size == 1024 else "100 B"
    print(f"\n### produce {label}: median (min-max) of 3 rounds\n")
    print("| mode | segments | MB/s | CPU ns/record | of which iou-wrk | of which shard |")
    print("|---|---|--:|--:|--:|--:|")
    data = {}
    for direct, prealloc in CONFIGS:
        rows = [load(size, r, direct, prealloc) for r in (1, 2, 3)]
        rows = [r for r in rows if r]
        data[(direct, prealloc)] = rows
        if not rows:
            continue
        print(
            f"| {NAMES[direct]} | {NAMES[prealloc]} | {fmt_range([r['mb'] for r in rows])} | "
            f"{fmt_range([r['cpu'] for r in rows])} | {fmt_range([r['wrk'] for r in rows])} | "
            f"{fmt_range([r['shard'] for r in rows])} |"
        )
    print(f"\n| paired ratio ({label}), per round | MB/s ratio median (range) | CPU ns/record ratio median (range) |")
    print("|---|--:|--:|")
    pairs = [
        ("O_DIRECT / page cache, sparse", ("on", "false"), ("off", "false")),
        ("O_DIRECT / page cache, prealloc", ("on", "true"), ("off", "true")),
        ("prealloc / sparse, O_DIRECT", ("on", "true"), ("on", "false")),
        ("prealloc / sparse, page cache", ("off", "true"), ("off", "false")),
    ]
    for name, a, b in pairs:
        ra, rb = data[a], data[b]
        n = min(len(ra), len(rb))
        if n == 0:
            continue
        mb = [ra[i]["mb"] / rb[i]["mb"] for i in range(n)]
        cpu = [ra[i]["cpu"] / rb[i]["cpu"] for i in range(n)]
        print(f"| {name} | {fmt_range(mb, '.2f')} | {fmt_range(cpu, '.2f')} |")
