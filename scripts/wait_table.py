#!/usr/bin/env python3
"""Prints the `wait` bench's estimates (criterion's own files) as a markdown table.

    cargo bench --bench wait
    python3 scripts/wait_table.py [target/criterion] > notes/results/wait/estimates.md

Per method and N: the median time of one wait call and criterion's 95% confidence interval of
it, in microseconds, from target/criterion/wait/METHOD/N/new/estimates.json.
"""
import json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
base = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "criterion")
METHODS = ["select", "poll", "epoll", "io_uring"]
SIZES = [10, 100, 1000, 10000]


def estimate(method, n):
    path = os.path.join(base, "wait", method, str(n), "new", "estimates.json")
    if not os.path.exists(path):
        return None
    median = json.load(open(path))["median"]
    ci = median["confidence_interval"]
    return median["point_estimate"] / 1000, ci["lower_bound"] / 1000, ci["upper_bound"] / 1000


def us(x):
    return f"{x:.3f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


print("| N | " + " | ".join(METHODS) + " |")
print("| ---: | " + " | ".join("---:" for _ in METHODS) + " |")
for n in SIZES:
    cells = []
    for m in METHODS:
        e = estimate(m, n)
        cells.append("—" if e is None else f"{us(e[0])} [{us(e[1])}–{us(e[2])}]")
    print(f"| {n} | " + " | ".join(cells) + " |")
