#!/usr/bin/env python3
"""Runs `server-models check` against every model in both protocols and writes the matrix.

    cargo build --release
    python3 scripts/reliability.py [--full] [--jobs N] [--out notes/results/reliability]

For each model and protocol, `check --model M --protocol P --json` is written to
OUT/M-P.json as it comes (a run that stops half-way keeps what it finished); then OUT/matrix.md
holds the model x case table — pass, FAIL or n/a per protocol — with the commit, the command,
the machine's load average before and after, and every failure's reason. Nothing here judges:
the verdicts are check's own.
"""
import json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
full = "--full" in args
jobs = args[args.index("--jobs") + 1] if "--jobs" in args else "2"
out = args[args.index("--out") + 1] if "--out" in args else os.path.join(ROOT, "notes", "results", "reliability")
binary = os.path.join(ROOT, "target", "release", "server-models")
os.makedirs(out, exist_ok=True)


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()


models = [line.split()[0] for line in sh(binary, "list").splitlines()]
commit = sh("git", "rev-parse", "--short", "HEAD")
dirty = bool(sh("git", "status", "--porcelain", "--untracked-files=no"))
load_before = open("/proc/loadavg").read().split()[:3]
started = time.strftime("%Y-%m-%d %H:%M:%S")
command = ["check", "--model", "MODEL", "--protocol", "PROTOCOL", "--json", "--jobs", jobs]
if full:
    command.append("--full")

reports = {}
for model in models:
    for protocol in ("echo", "http"):
        cmd = [binary] + [model if a == "MODEL" else protocol if a == "PROTOCOL" else a for a in command]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        report = json.loads(run.stdout)
        reports[(model, protocol)] = report
        with open(os.path.join(out, f"{model}-{protocol}.json"), "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        print(f"{model} {protocol}: {report['passed']} passed, {report['failed']} failed, "
              f"{report['skipped']} skipped", file=sys.stderr)
load_after = open("/proc/loadavg").read().split()[:3]

cases = [c["case"] for c in reports[(models[0], "echo")]["cases"]]
mark = {"passed": "pass", "failed": "FAIL", "skipped": "n/a"}
lines = [
    "# Reliability matrix",
    "",
    f"Commit `{commit}`{' (with uncommitted changes)' if dirty else ''}, {started}; made by "
    f"`python3 scripts/reliability.py{' --full' if full else ''} --jobs {jobs}`, that is "
    f"`server-models {' '.join(command)}` for every model and protocol (release build; "
    f"JSON beside this file). Load average {' '.join(load_before)} before, "
    f"{' '.join(load_after)} after.",
    "",
    "Each cell is echo / http; `n/a` is a case that does not apply (the protocol, or what the "
    "process tree showed), `FAIL` a failure, its reason below.",
    "",
    "| case | " + " | ".join(models) + " |",
    "| --- |" + " --- |" * len(models),
]
for case in cases:
    cells = []
    for model in models:
        verdicts = []
        for protocol in ("echo", "http"):
            c = next(c for c in reports[(model, protocol)]["cases"] if c["case"] == case)
            verdicts.append(mark[c["verdict"]])
        cells.append(" / ".join(verdicts))
    lines.append(f"| `{case}` | " + " | ".join(cells) + " |")
lines += ["", "## Failures", ""]
for (model, protocol), report in reports.items():
    for c in report["cases"]:
        if c["verdict"] == "failed":
            reason = c["reason"].replace("\n", " | ")
            lines.append(f"- **{model}** {protocol} `{c['case']}`: {reason}")
with open(os.path.join(out, "matrix.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print(os.path.join(out, "matrix.md"), file=sys.stderr)
