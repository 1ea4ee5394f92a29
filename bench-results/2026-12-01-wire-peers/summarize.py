#!/usr/bin/env python3
"""Reads raw/R-BROKER.json files and prints the Markdown table: median [min-max] per broker, ratio rill/peer."""
import glob
import json
import os
import statistics
import sys

raw = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "raw")
runs = {}
for f in sorted(glob.glob(os.path.join(raw, "*-*.json"))):
    broker = os.path.basename(f).split("-", 1)[1][:-5]
    try:
        runs.setdefault(broker, []).append(json.load(open(f)))
    except ValueError:
        runs.setdefault(broker, []).append({"failed": "no JSON (see client log)"})

FIGURES = [
    ("produce records/s", lambda r: r["produce"]["records_per_s"], True),
    ("consume records/s", lambda r: r["consume"]["records_per_s"], True),
    ("e2e p50 ms @5k/s", lambda r: r["latency"]["p50_ms"], False),
    ("e2e p99 ms @5k/s", lambda r: r["latency"]["p99_ms"], False),
    ("broker CPU s /100k produced", lambda r: r["cpu_s_per_100k"]["produce"], False),
    ("broker CPU s /100k consumed", lambda r: r["cpu_s_per_100k"]["consume"], False),
    ("broker CPU s, e2e phase (50k records)", lambda r: r["cpu_s"]["latency"], False),
]


def values(broker, get):
    out = []
    for r in runs.get(broker, []):
        try:
            v = get(r)
            if v is not None:
                out.append(v)
        except (KeyError, TypeError):
            pass
    return out


def fmt(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


brokers = [b for b in ("rill", "tansu", "crabka") if b in runs]
peers = [b for b in brokers if b != "rill"]
head = ["figure"] + [f"{b} (n={len(runs[b])})" for b in brokers] + [f"rill/{p}" for p in peers]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for name, get, higher in FIGURES:
    row = [name]
    med = {}
    for b in brokers:
        xs = values(b, get)
        if xs:
            med[b] = statistics.median(xs)
            row.append(f"{fmt(med[b])} [{fmt(min(xs))}–{fmt(max(xs))}]")
        else:
            row.append("—")
    for p in peers:
        if "rill" in med and p in med and med[p]:
            row.append(f"{med['rill'] / med[p]:.3g}")
        else:
            row.append("—")
    print("| " + " | ".join(row) + " |")
