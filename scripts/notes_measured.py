#!/usr/bin/env python3
"""Writes each model's measured rows from a `compare` report into its note.

    python3 scripts/notes_measured.py [notes/results]

For every notes/<model>.md with a `## Measured` heading, the block between
`<!-- measured:begin -->` and `<!-- measured:end -->` (inserted under the heading the first time)
is replaced by that model's rows of results.json, with the run's conditions from run.json. Text
outside the block — hand measurements, commentary — is left as it is.
"""
import json, os, sys

from note_blocks import write_blocks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
report = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "notes", "results")
rows = json.load(open(os.path.join(report, "results.json")))
run = json.load(open(os.path.join(report, "run.json")))
m, s = run["machine"], run["settings"]
rel = os.path.relpath(os.path.join(report, "index.md"), os.path.join(ROOT, "notes"))


def fmt(x, unit=""):
    if x is None:
        return "—"
    if unit == "B":
        for u, d in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if x >= d:
                return f"{x / d:.1f} {u}"
        return f"{x:.0f} B"
    if x >= 10000:
        return f"{x / 1000:.1f}k"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def block(model):
    mine = [r for r in rows if r["model"] == model]
    if not mine:
        return None
    out = [
        "<!-- measured:begin -->",
        f"From the `compare` run of {m['date']} ([results page]({rel})): {m['cpu_model']}, "
        f"{m['cores']} CPUs, {m['kernel'].split(' #')[0]}; server pinned to CPU {s['server_cpu']}, "
        f"load generator to CPU {s['client_cpu']}; echo, {', '.join(str(z) for z in s['sizes'])}-byte "
        f"messages; {s['warmup_s']} s warm-up then a {s['duration_s']} s window per point, median of "
        f"{s['repeat']}; load average at the start {m['load_average']}.",
        "",
        "| load | conns | req/s (conn/s) | p50 µs | p99 µs | server CPU µs/req | PSS peak | mem/conn | threads/procs | errors | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in mine:
        lat = r.get("latency_us") or {}
        tasks = r.get("peak_tasks")
        if isinstance(tasks, dict):
            tasks = f"{tasks.get('threads', '—')}/{tasks.get('processes', '—')}"
        errors = sum((r.get("errors") or {}).values())
        note = r.get("note") or ("client-bound" if r.get("client_bound") else "")
        load = r["mode"]
        if r.get("idle_beside"):
            load += f", beside {r['idle_beside']} idle"
        out.append(
            f"| {load} | {r['connections']} | {fmt(r.get('requests_per_sec'))} | {fmt(lat.get('p50'))} | "
            f"{fmt(lat.get('p99'))} | {fmt(r.get('cpu_us_per_request'))} | {fmt(r.get('pss_peak_bytes'), 'B')} | "
            f"{fmt(r.get('bytes_per_connection'), 'B')} | {tasks if tasks is not None else '—'} | {errors} | {note} |"
        )
    out.append("<!-- measured:end -->")
    return "\n".join(out)


for name in write_blocks(os.path.join(ROOT, "notes"), "Measured", "measured", block):
    print(f"updated {name}")
