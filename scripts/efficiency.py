#!/usr/bin/env python3
"""Server CPU per request, side by side in one run: the workbook's models beside the minimal C
epoll server of ../shared/reference (and nginx with one worker, when installed).

Conditions: the server pinned to CPU 0, the client to CPU 1 (taskset); HTTP keep-alive driven by
wrk (one thread), echo with 64-byte messages driven by `server-models load` (closed loop). Each
point runs every server once per round, rounds interleaved, and the median of the rounds is
reported, so slow drift of a shared machine hits every server alike.

Server CPU is user+sys from /proc/PID/stat (threads included; children included for process
models) over the measured window, divided by the requests the client completed in it.

    python3 scripts/efficiency.py [--rounds 3] [--duration 5] [--connections 100,1000]
        [--baseline OLD-BINARY] [--no-load-http]

--baseline runs every model a second time from another build of server-models, interleaved in
the same rounds (before/after a change). Unless --no-load-http, the C server is also driven over
HTTP by `server-models load` beside wrk, so that the two clients' CPU per request compare on the
same server. nginx, when installed, runs with one worker process, no access log, answering the
same 13-byte body.

Needs: a release build (cargo build --release), gcc, wrk. Loopback only; every server it starts
is stopped before it exits.
"""
import argparse, json, os, re, shutil, signal, socket, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "server-models")
REF_SRC = os.path.join(ROOT, "..", "shared", "reference", "c-epoll.c")
HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid):
    """pid and its live descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                ppid = int(st[st.rfind(")") + 2 :].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid):
    """user, sys seconds of the tree, reaped children included."""
    user = sys_ = 0.0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2 :].split()
        user += (int(fields[11]) + int(fields[13])) / HZ
        sys_ += (int(fields[12]) + int(fields[14])) / HZ
    return user, sys_


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    def __init__(self, name, argv):
        self.name, self.argv = name, argv

    def __enter__(self):
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + self.argv,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        for p in reversed(tree(self.proc.pid)):
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            for p in tree(self.proc.pid):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait()


def drive(protocol, port, conns, duration, client="wrk"):
    """Runs the client on CPU 1; returns (requests, client user+sys seconds)."""
    if protocol == "http" and client == "wrk":
        cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
               f"http://127.0.0.1:{port}/"]
    else:
        cmd = ["taskset", "-c", "1", BIN, "load", "--addr", f"127.0.0.1:{port}", "--protocol", protocol,
               "--connections", str(conns), "--duration", f"{duration}s", "--warmup", "0s",
               "--size", "64", "--json"]
    before = os.times()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    after = os.times()
    client_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if protocol == "http" and client == "wrk":
        m = re.search(r"(\d+) requests in", out)
        errors = re.search(r"Socket errors: (.*)", out)
        return (int(m.group(1)) if m else 0), client_cpu, (errors.group(1) if errors else "")
    data = json.loads(out)
    errs = sum(data["errors"].values())
    return data["requests"], client_cpu, (f"{errs} errors" if errs else "")


def nginx_argv(nginx, port):
    """nginx in the foreground, one process (no master), no access log, the C server's answer."""
    prefix = f"/tmp/server-models-nginx-{port}"
    os.makedirs(f"{prefix}/logs", exist_ok=True)
    conf = f"{prefix}/nginx.conf"
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1; pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log crit;
events {{ worker_connections 16384; }}
http {{
  access_log off; server_tokens off; keepalive_requests 1000000000;
  client_body_temp_path {prefix}; proxy_temp_path {prefix}; fastcgi_temp_path {prefix};
  uwsgi_temp_path {prefix}; scgi_temp_path {prefix};
  server {{ listen 127.0.0.1:{port}; location / {{ default_type text/plain; return 200 "Hello, world!"; }} }}
}}
""")
    return [nginx, "-p", prefix, "-c", conf]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", default="100,1000")
    ap.add_argument("--protocols", default="http,echo")
    ap.add_argument("--models", default="epoll-lt,epoll-et,io-uring,tokio")
    ap.add_argument("--baseline", help="another server-models binary, run beside (before/after)")
    ap.add_argument("--no-load-http", action="store_true", help="skip the load-vs-wrk HTTP row")
    args = ap.parse_args()
    conns_list = [int(c) for c in args.connections.split(",")]

    ref = "/tmp/server-models-c-epoll"
    subprocess.run(["gcc", "-O2", "-o", ref, REF_SRC], check=True)
    # (name, argv(proto, port) or None where the server does not speak proto, HTTP client)
    servers = [("c-epoll (reference)", lambda proto, port: [ref, proto, str(port)], "wrk")]
    for m in args.models.split(","):
        servers.append((m, lambda proto, port, m=m: [BIN, "serve", m, "--addr", f"127.0.0.1:{port}",
                                                       "--protocol", proto, "--workers", "1"], "wrk"))
    if args.baseline:
        for m in args.models.split(","):
            servers.append((f"{m} (baseline)", lambda proto, port, m=m: [
                args.baseline, "serve", m, "--addr", f"127.0.0.1:{port}", "--protocol", proto,
                "--workers", "1"], "wrk"))
    nginx = shutil.which("nginx")
    if nginx:
        servers.append(("nginx (1 worker)", lambda proto, port: nginx_argv(nginx, port) if proto == "http" else None, "wrk"))
    if not args.no_load_http:
        servers.append(("c-epoll, HTTP by load", lambda proto, port: [ref, proto, str(port)] if proto == "http" else None, "load"))

    results = {}
    for proto in args.protocols.split(","):
        for conns in conns_list:
            for rnd in range(args.rounds):
                for name, argv, client in servers:
                    port = free_port()
                    cmd = argv(proto, port)
                    if cmd is None:
                        continue
                    with Server(name, cmd) as srv:
                        if not wait_port(port):
                            print(f"{name}: did not start", file=sys.stderr)
                            continue
                        drive(proto, port, conns, 1, client)  # warm-up
                        u0, s0 = cpu_seconds(srv.proc.pid)
                        reqs, client_cpu, errs = drive(proto, port, conns, args.duration, client)
                        u1, s1 = cpu_seconds(srv.proc.pid)
                    if reqs:
                        key = (proto, conns, name)
                        results.setdefault(key, []).append(
                            ((u1 - u0 + s1 - s0) * 1e6 / reqs, reqs / args.duration, client_cpu * 1e6 / reqs, errs,
                             rnd))
                    print(f"round {rnd + 1} {proto} c={conns} {name}: {reqs / args.duration:,.0f} req/s, "
                          f"server {(u1 - u0 + s1 - s0) * 1e6 / max(reqs, 1):.2f} us/req {errs}", file=sys.stderr)

    print(f"\nServer CPU per request, median of {args.rounds} interleaved rounds of {args.duration} s; "
          f"server on CPU 0, client on CPU 1; kernel {os.uname().release}\n")
    # The per-round ratio pairs each server with the C server of the same round, so drift that
    # hits a whole round cancels; its spread (min-max over rounds) shows the noise.
    print("| protocol | conns | server | req/s | server CPU µs/req | × c-epoll | per-round × c-epoll: "
          "median [min–max] | client CPU µs/req |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |")
    for proto in args.protocols.split(","):
        for conns in conns_list:
            base = results.get((proto, conns, servers[0][0]))
            base_us = statistics.median(r[0] for r in base) if base else None
            for name, argv, _ in servers:
                rows = results.get((proto, conns, name))
                if argv(proto, 0) is None:
                    continue
                if not rows:
                    print(f"| {proto} | {conns} | {name} | — | — | — | — | — |")
                    continue
                us = statistics.median(r[0] for r in rows)
                rps = statistics.median(r[1] for r in rows)
                cl = statistics.median(r[2] for r in rows)
                ratio = f"{us / base_us:.3f}" if base_us else "—"
                ref_by_round = {r[4]: r[0] for r in base or []}
                paired = [r[0] / ref_by_round[r[4]] for r in rows if r[4] in ref_by_round]
                spread = (f"{statistics.median(paired):.3f} [{min(paired):.3f}–{max(paired):.3f}]"
                          if paired else "—")
                print(f"| {proto} | {conns} | {name} | {rps:,.0f} | {us:.2f} | {ratio} | {spread} | {cl:.2f} |")
    if nginx is None:
        print("\n(nginx not installed: apt-get install nginx to add it beside the others.)")


if __name__ == "__main__":
    main()
