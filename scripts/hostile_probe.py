#!/usr/bin/env python3
"""Hostile HTTP inputs tried on each model, beside the check suite's own cases: bad
Content-Length values, a missing or repeated Host, and a slowloris head (one byte every 500 ms).

    python3 scripts/hostile_probe.py > notes/results/reliability/probes.md

Each model is started as `serve MODEL --protocol http --addr 127.0.0.1:0 --workers 4
--idle-timeout 3 --header-timeout 5`; each probe opens a fresh connection and reports the status line it got, or
how the connection ended, within its wait. What the probe sees is written down, not judged.
"""
import os, re, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "server-models")

PROBES = [
    ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("Content-Length: +5", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello"),
    ("Content-Length: 18446744073709551615",
     b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\nhello"),
    ("Content-Length: 5 and 6",
     b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
]


def answer(addr, data, wait=1.5):
    s = socket.create_connection(addr, timeout=wait)
    s.sendall(data)
    got, end = b"", "open"
    deadline = time.time() + wait
    try:
        while time.time() < deadline:
            s.settimeout(max(0.01, deadline - time.time()))
            chunk = s.recv(4096)
            if not chunk:
                end = "FIN"
                break
            got += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        end = "RST"
    s.close()
    statuses = re.findall(rb"HTTP/1\.[01] (\d{3})", got)
    said = "+".join(x.decode() for x in statuses) or "nothing"
    return f"{said}, then {end}" if end != "open" else f"{said}, still open after {wait} s"


def slowloris(addr, seconds=8.0):
    """A head sent one byte every 500 ms: is it cut (408 or a close) before `seconds`?"""
    s = socket.create_connection(addr, timeout=1)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    start = time.time()
    try:
        while time.time() - start < seconds:
            s.sendall(b"a")
            s.settimeout(0.5)
            try:
                chunk = s.recv(4096)
                status = re.findall(rb"HTTP/1\.[01] (\d{3})", chunk)
                return (f"{'+'.join(x.decode() for x in status) or 'FIN'} after "
                        f"{time.time() - start:.1f} s")
            except socket.timeout:
                pass
    except (BrokenPipeError, ConnectionResetError):
        return f"RST after {time.time() - start:.1f} s"
    finally:
        s.close()
    return f"still open after {seconds:.0f} s (a byte every 500 ms)"


models = [l.split()[0] for l in subprocess.run([BIN, "list"], capture_output=True,
                                               text=True).stdout.splitlines()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                        cwd=ROOT).stdout.strip()
print("# Hostile HTTP probes\n")
print(f"Commit `{commit}`, {time.strftime('%Y-%m-%d %H:%M')}, load average "
      f"{' '.join(open('/proc/loadavg').read().split()[:3])}; made by "
      "`python3 scripts/hostile_probe.py` (release build; each model as `serve MODEL "
      "--protocol http --workers 4 --idle-timeout 3 --header-timeout 5`). Each cell: the "
      "status lines the probe got within 1.5 s, and how the connection ended; the slowloris "
      "head is one byte every 500 ms for up to 8 s: each byte restarts the idle timeout (3 s), "
      "the request-head deadline (5 s from the head's first byte) does not restart.\n")
print("| model | " + " | ".join(p[0] for p in PROBES) + " | slowloris head |")
print("| --- |" + " --- |" * (len(PROBES) + 1))
for model in models:
    server = subprocess.Popen([BIN, "serve", model, "--protocol", "http", "--addr",
                               "127.0.0.1:0", "--workers", "4", "--idle-timeout", "3",
                               "--header-timeout", "5"],
                              stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    host, port = re.search(r"listening on ([\d.]+):(\d+)", line).groups()
    addr = (host, int(port))
    cells = [answer(addr, data) for _, data in PROBES] + [slowloris(addr)]
    print(f"| {model} | " + " | ".join(cells) + " |")
    server.terminate()
    server.wait(10)
    server.stderr.close()
