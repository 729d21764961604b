#!/usr/bin/env python3
"""Writes each model's kernel figures from a `compare` report into its note.

    python3 scripts/notes_kernel.py [notes/results/kernel]

For every notes/<model>.md with a `## What the kernel does` heading, the block between
`<!-- kernel:begin -->` and `<!-- kernel:end -->` (inserted under the heading the first time) is
replaced by that model's syscalls per request (by family, with events per wait) and kernel memory
per idle connection (with the largest caches), from results.json, with the run's conditions from
run.json and the command from the report folder's README.md. Text outside the block is left as
it is.
"""
import json, os, re, sys

from note_blocks import write_blocks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
report = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "notes", "results", "kernel")
rows = json.load(open(os.path.join(report, "results.json")))
run = json.load(open(os.path.join(report, "run.json")))
m, s = run["machine"], run["settings"]
rel = os.path.relpath(os.path.join(report, "index.md"), os.path.join(ROOT, "notes"))
command = ""
readme = os.path.join(report, "README.md")
if os.path.exists(readme):
    found = re.search(r"^    (server-models compare .*)$", open(readme).read(), re.M)
    command = found.group(1) if found else ""

# The families of the report's syscall table (src/harness/measure/syscalls.rs, FAMILIES).
FAMILIES = [
    ("recv", ["read", "readv", "recvfrom", "recvmsg"]),
    ("send", ["write", "writev", "sendto", "sendmsg"]),
    ("wait", ["epoll_wait", "epoll_pwait", "epoll_pwait2", "select", "pselect6", "poll", "ppoll",
              "io_uring_enter"]),
    ("epoll_ctl", ["epoll_ctl"]),
    ("accept", ["accept", "accept4"]),
    ("close", ["close", "shutdown"]),
    ("futex", ["futex", "sched_yield"]),
    ("task", ["clone", "clone3", "fork", "vfork", "exit", "exit_group", "wait4", "waitid"]),
]


def size(x):
    if x is None:
        return "—"
    for u, d in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(x) >= d:
            return f"{x / d:.1f} {u}"
    return f"{x:.0f} B"


def calls(x):
    return "0" if not x else f"{x:.3f}"


def families(by_name):
    out = {f: 0.0 for f, _ in FAMILIES}
    out["other"] = 0.0
    for name, v in by_name.items():
        fam = next((f for f, names in FAMILIES if name in names), "other")
        out[fam] += v
    return out


def largest(caches):
    shares = [(n, c) for n, c in caches.items() if n != "sockstat TCP mem"]
    shares.sort(key=lambda nc: -nc[1]["bytes_per_connection"])
    said = []
    for n, c in shares[:4]:
        obj = c.get("objects_per_connection")
        what = f" ({obj:.2f} objects)" if obj is not None else ""
        said.append(f"{n} {size(c['bytes_per_connection'])}{what}")
    return ", ".join(said)


def memory_row(r, lead):
    """One idle row of a memory table; `lead` is the cells before the connection count."""
    if r["status"] != "ok":
        return f"{lead}| {r['connections']} | — | — | — | {r['status']}: {r['note']} | |"
    k, p = r.get("kernel_bytes_per_connection"), r.get("bytes_per_connection")
    total = None if k is None or p is None else k + p
    return (
        f"{lead}| {r['connections']} | {size(p)} | {size(k)} | {size(total)} | "
        f"{largest(r.get('kernel_caches') or {})} | {r.get('note', '')} |"
    )


def block(model):
    mine = [r for r in rows if r["model"] == model]
    if not mine:
        return None
    out = [
        "<!-- kernel:begin -->",
        f"From the `compare` run of {m['date']} ([results]({rel})"
        + (f"; `{command}`" if command else "")
        + f"): {m['cpu_model']}, {m['cores']} CPUs, {m['kernel'].split(' #')[0]}; server pinned to "
        f"CPU {s['server_cpu']}, load generator to CPU {s['client_cpu']}; echo, 64-byte messages; "
        f"{s['warmup_s']} s warm-up then a {s['duration_s']} s window per point; load average at the "
        f"start {m['load_average']}. Syscalls were counted in a run of their own at each point "
        "(see the README's `compare` section).",
        "",
        "| load | conns | syscalls/req | recv | send | wait | epoll_ctl | accept | close | futex | task | other | events/wait |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in mine:
        if r["mode"] == "idle":
            continue
        if r["status"] != "ok" or r.get("syscalls") is None:
            why = r.get("note") or r["status"]
            out.append(f"| {r['mode']} | {r['connections']} | {r['status']}: {why} |" + " |" * 10)
            continue
        f = families(r["syscalls"])
        ev = r.get("events_per_wait")
        out.append(
            f"| {r['mode']} | {r['connections']} | {r['syscalls_per_request']:.2f} | "
            + " | ".join(calls(f[k]) for k, _ in FAMILIES)
            + f" | {calls(f['other'])} | {'—' if ev is None else f'{ev:.1f}'} |"
        )
    idle = [r for r in mine if r["mode"] == "idle"]
    if idle:
        out += [
            "",
            "| idle conns | PSS/conn | kernel/conn | total/conn | the largest kernel shares | note |",
            "| ---: | ---: | ---: | ---: | --- | --- |",
        ]
        out += [memory_row(r, "") for r in idle]
    out.append("<!-- kernel:end -->")
    return "\n".join(out)


def overview():
    """Every model's rows in two tables, for notes/kernel.md."""
    models = []
    for r in rows:
        if r["model"] not in models:
            models.append(r["model"])
    out = [
        "<!-- kernel:all-begin -->",
        f"From the `compare` run of {m['date']} ([results]({rel})"
        + (f"; `{command}`" if command else "")
        + f"), {m['cores']} CPUs, {m['kernel'].split(' #')[0]}, load average at the start "
        f"{m['load_average']}. Syscalls per request (churn: per connection), by family, and events "
        "per wait:",
        "",
        "| model | load | conns | syscalls/req | recv | send | wait | epoll_ctl | accept | close | futex | task | other | events/wait | CPU µs/req (usr+sys) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r["mode"] == "idle" or r["status"] != "ok" or r.get("syscalls") is None:
            continue
        f = families(r["syscalls"])
        ev = r.get("events_per_wait")
        u, sy = r.get("cpu_user_us_per_request"), r.get("cpu_sys_us_per_request")
        cpu = f"{r['cpu_us_per_request']:.1f}" + (f" ({u:.1f}+{sy:.1f})" if u is not None else "")
        out.append(
            f"| {r['model']} | {r['mode']} | {r['connections']} | {r['syscalls_per_request']:.2f} | "
            + " | ".join(calls(f[k]) for k, _ in FAMILIES)
            + f" | {calls(f['other'])} | {'—' if ev is None else f'{ev:.1f}'} | {cpu} |"
        )
    out += [
        "",
        "Memory per idle connection: PSS, the kernel's share, and the largest kernel caches "
        "(objects per connection in brackets):",
        "",
        "| model | idle conns | PSS/conn | kernel/conn | total/conn | the largest kernel shares | note |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    out += [memory_row(r, f"| {r['model']} ") for r in rows if r["mode"] == "idle"]
    out.append("<!-- kernel:all-end -->")
    return "\n".join(out)


overview_path = os.path.join(ROOT, "notes", "kernel.md")
if os.path.exists(overview_path):
    text = open(overview_path).read()
    if "<!-- kernel:all-begin -->" in text:
        text = re.sub(r"<!-- kernel:all-begin -->.*?<!-- kernel:all-end -->", lambda _: overview(), text, flags=re.S)
        open(overview_path, "w").write(text)
        print("kernel.md: overview written")

notes = os.path.join(ROOT, "notes")
for name in write_blocks(notes, "What the kernel does", "kernel", block, skip=("kernel.md",)):
    print(f"{name}: kernel block written")
