//! The labs, run the way a reader runs them (`server-models lab NAME --json`), with what the
//! kernel answered asserted value by value — so a kernel, or a change to a lab, that makes a
//! note wrong fails here.
//!
//! These are the answers of Linux (5.x and 6.x); where Linux differs from the books the test
//! pins the Linux behaviour the notes describe. Each run is bounded (a lab that hangs is
//! killed), and each lab cleans up the sockets, processes and namespaces it made.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_server-models");
/// The longest a lab may run before the test kills it; `keepalive` takes about five seconds.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `command`, kills it past [`LIMIT`], and returns its stdout if it exited 0.
fn run_bounded(command: Command) -> String {
    run_bounded_pid(command).0
}

/// [`run_bounded`], also giving the process id the command ran as.
fn run_bounded_pid(mut command: Command) -> (String, u32) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server-models");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for server-models") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).expect("read stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).expect("read stderr");
    }
    assert!(status.success(), "{command:?} failed ({status}): {err}");
    (out, child.id())
}

/// Runs one lab with `--json` and returns its report.
fn lab(name: &str) -> Value {
    let mut command = Command::new(BIN);
    command.args(["lab", name, "--json"]);
    parse(name, &run_bounded(command))
}

fn parse(name: &str, out: &str) -> Value {
    let report: Value = serde_json::from_str(out).expect("the report is JSON");
    assert_eq!(report["lab"], name);
    assert!(report["claim"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(report["verdict"].as_str().is_some_and(|v| !v.is_empty()));
    report
}

/// The observation recorded under `key`.
fn obs<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["observations"]
        .as_array()
        .expect("observations")
        .iter()
        .find(|o| o["key"] == key)
        .map(|o| &o["value"])
        .unwrap_or_else(|| panic!("no observation '{key}' in {report:#}"))
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn has_flag(v: &Value, flag: &str) -> bool {
    v.as_array().is_some_and(|a| a.iter().any(|f| f == flag))
}

fn sysctl(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .expect("read sysctl")
        .trim()
        .parse()
        .expect("numeric sysctl")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Whether the lab counted in a network namespace of its own (exact counts) rather than the
/// shared one, where other traffic adds to the kernel's counters.
fn private(report: &Value) -> bool {
    obs(report, "namespace") == "private"
}

/// A counter's growth: exactly `expected` in a private namespace, at least that in the shared
/// one. As root (CI) the labs make a private namespace, so there the counts are exact.
fn assert_counted(report: &Value, got: &Value, expected: u64, what: &str) {
    let got = number(got);
    if private(report) {
        assert_eq!(got, expected, "{what}");
    } else {
        assert!(got >= expected, "{what}: {got} < {expected}");
    }
}

/// As root the counter-based labs run in a private namespace; without root they say why not.
fn assert_namespace(report: &Value) {
    if is_root() {
        assert_eq!(
            obs(report, "namespace"),
            "private",
            "root, so a private namespace"
        );
    } else {
        assert_eq!(obs(report, "namespace"), "shared");
        assert!(obs(report, "namespace_reason").as_str().is_some());
    }
}

/// `lab` alone lists the ten labs; an unknown one is a usage error.
#[test]
fn lists_the_labs() {
    let out = run_bounded({
        let mut c = Command::new(BIN);
        c.arg("lab");
        c
    });
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for lab in [
        "handshake",
        "backlog",
        "accept-reset",
        "nonblocking-connect",
        "half-close",
        "time-wait",
        "fork-close",
        "sigpipe",
        "buffers",
        "keepalive",
        "nagle",
        "linger",
        "herd",
        "io-models",
    ] {
        assert!(names.contains(&lab), "{lab} missing from: {out}");
    }
    let status = Command::new(BIN)
        .args(["lab", "no-such-lab"])
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(2));
}

/// connect() completes with nobody calling accept(); with the third segment ignored
/// (TCP_DEFER_ACCEPT) the client is still ESTABLISHED while the server sits in SYN_RECV.
#[test]
fn handshake() {
    let r = lab("handshake");
    assert_eq!(obs(&r, "connect"), "EINPROGRESS");
    assert_eq!(obs(&r, "connect_result"), "0");
    assert_eq!(obs(&r, "client_state"), "ESTABLISHED");
    assert_eq!(obs(&r, "server_state"), "ESTABLISHED");
    assert_eq!(obs(&r, "accept_queue"), 1);
    assert_eq!(obs(&r, "write_before_accept"), 5);
    assert_eq!(obs(&r, "bytes_before_accept"), 5);
    assert_eq!(obs(&r, "read_after_accept"), 5);
    assert_eq!(obs(&r, "deferred_connect_result"), "0");
    assert_eq!(obs(&r, "deferred_client_state"), "ESTABLISHED");
    assert_eq!(obs(&r, "deferred_server_state"), "SYN_RECV");
    assert_eq!(obs(&r, "deferred_accept"), "EAGAIN");
    assert_eq!(obs(&r, "deferred_accept_after_data"), "ok");
    // The third segments, counted by the kernel: a server socket made before any accept();
    // under TCP_DEFER_ACCEPT the bare ACK dropped, and no server socket until the data came.
    assert_namespace(&r);
    assert_counted(
        &r,
        obs(&r, "passive_opens"),
        1,
        "PassiveOpens before accept",
    );
    let deferred = obs(&r, "deferred_counters");
    assert_counted(
        &r,
        &deferred["TcpExt.TCPDeferAcceptDrop"],
        1,
        "TCPDeferAcceptDrop",
    );
    if private(&r) {
        assert_eq!(deferred["Tcp.PassiveOpens"], 0, "{deferred}");
    }
    assert_counted(
        &r,
        obs(&r, "deferred_passive_opens"),
        1,
        "PassiveOpens after data",
    );
    assert_eq!(r["held"], true);
}

/// Linux queues backlog + 1 connections, reports the backlog as the listener's Send-Q, caps
/// it at somaxconn, drops (does not refuse) SYNs to a full queue, and the dropped client gets
/// in on its SYN retransmission once there is room.
#[test]
fn backlog() {
    let r = lab("backlog");
    let backlog = 3;
    assert_eq!(obs(&r, "listener_send_q"), backlog);
    assert_eq!(obs(&r, "completed"), backlog + 1, "Linux admits backlog+1");
    assert_eq!(obs(&r, "listener_recv_q"), backlog + 1);
    assert_eq!(obs(&r, "syn_sent"), 6 - (backlog + 1));
    assert_eq!(obs(&r, "refused"), 0);
    for i in 1..=4 {
        assert_eq!(obs(&r, &format!("client_{i}")), "ESTABLISHED");
    }
    for i in 5..=6 {
        assert_eq!(obs(&r, &format!("client_{i}")), "SYN_SENT");
    }
    // Read in the lab's namespace: a private one has its own somaxconn.
    let somaxconn = number(obs(&r, "somaxconn"));
    if !private(&r) {
        assert_eq!(somaxconn, sysctl("net/core/somaxconn"));
    }
    assert_eq!(number(obs(&r, "capped_backlog")), somaxconn);
    assert_eq!(obs(&r, "retry")["established"], 1);
    assert!(obs(&r, "retry")["after_ms"].is_u64());
    // The two SYNs that met the full queue, counted where they were dropped; the client got in
    // on its SYN's retransmission, which cannot come before the 1 s initial timeout.
    assert_namespace(&r);
    let dropped = obs(&r, "dropped_syns");
    assert_counted(&r, &dropped["TcpExt.ListenOverflows"], 2, "ListenOverflows");
    assert_counted(&r, &dropped["TcpExt.ListenDrops"], 2, "ListenDrops");
    assert!(number(obs(&r, "syn_retransmits")) >= 1);
    assert!(number(&obs(&r, "retry")["since_its_syn_ms"]) >= 900);
    assert_eq!(r["held"], false, "the books say at most `backlog`");
}

/// A connection reset in the queue is still handed out by accept() on Linux, its reset
/// showing on the first read; a listener another process emptied leaves a blocking accept()
/// asleep.
#[test]
fn accept_reset() {
    let r = lab("accept-reset");
    assert_eq!(obs(&r, "queued"), 1);
    assert_eq!(obs(&r, "queued_after_reset"), 1);
    assert!(has_flag(obs(&r, "readable_after_reset"), "POLLIN"));
    assert_eq!(obs(&r, "accept"), "ok");
    assert_eq!(obs(&r, "accepted_state"), "gone");
    assert_eq!(obs(&r, "getpeername"), "ENOTCONN");
    assert_eq!(obs(&r, "first_read"), "ECONNRESET");
    assert_eq!(obs(&r, "second_read"), 0);
    assert!(has_flag(obs(&r, "readable_before_race"), "POLLIN"));
    assert_eq!(obs(&r, "other_process_accept"), "ok");
    let blocking = obs(&r, "blocking_accept");
    assert_eq!(blocking["result"], "EAGAIN");
    // It slept until SO_RCVTIMEO (300 ms) fired: a lower bound the kernel guarantees.
    assert!(number(&blocking["blocked_ms"]) >= 250, "{blocking}");
    assert_eq!(obs(&r, "nonblocking_accept"), "EAGAIN");
    assert_eq!(obs(&r, "other_process"), "exited 0");
    assert_eq!(
        r["held"], false,
        "Linux neither drops it nor says ECONNABORTED"
    );
}

/// EINPROGRESS even on loopback; success and refusal both arrive as writability, told apart
/// by SO_ERROR.
#[test]
fn nonblocking_connect() {
    let r = lab("nonblocking-connect");
    assert_eq!(obs(&r, "connect"), "EINPROGRESS");
    assert_eq!(obs(&r, "ready"), &json!(["POLLOUT"]));
    assert_eq!(obs(&r, "so_error"), "0");
    assert_eq!(obs(&r, "connect_again"), "ok");
    assert_eq!(obs(&r, "connect_third"), "EISCONN");
    assert_eq!(obs(&r, "refused_connect"), "EINPROGRESS");
    let refused_ready = obs(&r, "refused_ready");
    assert!(has_flag(refused_ready, "POLLOUT") && has_flag(refused_ready, "POLLERR"));
    assert_eq!(obs(&r, "refused_so_error"), "ECONNREFUSED");
    assert_eq!(obs(&r, "refused_so_error_again"), "0");
    assert_eq!(r["held"], true);
}

/// shutdown(SHUT_WR) is a half-close the peer can still answer into; close() with unread
/// bytes resets the peer.
#[test]
fn half_close() {
    let r = lab("half-close");
    assert_eq!(obs(&r, "client_shutdown"), "ok");
    assert_eq!(obs(&r, "client_state"), "FIN_WAIT2");
    assert_eq!(obs(&r, "server_state"), "CLOSE_WAIT");
    assert_eq!(obs(&r, "server_read"), 7);
    assert_eq!(obs(&r, "server_read_eof"), 0);
    assert_eq!(obs(&r, "server_write"), 5);
    assert_eq!(obs(&r, "client_read_after_shutdown"), 5);
    assert_eq!(obs(&r, "client_read_eof"), 0);
    assert_eq!(obs(&r, "client_state_end"), "TIME_WAIT");
    assert_eq!(obs(&r, "unread"), 10);
    assert!(has_flag(obs(&r, "client_poll_after_close"), "POLLERR"));
    assert_eq!(obs(&r, "client_read_after_close"), "ECONNRESET");
    assert_eq!(obs(&r, "server_state_after_close"), "gone");
    // The RST was really sent, and counted as an abort for unread data.
    assert_namespace(&r);
    let counted = obs(&r, "close_counters");
    assert_counted(&r, &counted["TcpExt.TCPAbortOnClose"], 1, "TCPAbortOnClose");
    assert_counted(&r, &counted["Tcp.OutRsts"], 1, "OutRsts");
    if private(&r) {
        assert_eq!(obs(&r, "part_one_rsts"), 0, "a half-close sends no RST");
    }
    assert_eq!(r["held"], true);
}

/// The first closer holds TIME_WAIT for 60 s; on Linux SO_REUSEADDR on the new socket is
/// enough only if the socket that left the TIME_WAIT had it too.
#[test]
fn time_wait() {
    let r = lab("time-wait");
    for prefix in ["", "reuse_"] {
        assert_eq!(obs(&r, &format!("{prefix}server_side")), "TIME_WAIT");
        assert_eq!(obs(&r, &format!("{prefix}client_side")), "gone");
        let timer = obs(&r, &format!("{prefix}timer"));
        assert_eq!(timer["timer"], "time-wait");
        let expires = number(&timer["expires_ms"]);
        assert!(expires > 0 && expires <= 60_000, "{timer}");
        assert_eq!(obs(&r, &format!("{prefix}rebind_plain")), "EADDRINUSE");
    }
    assert_eq!(obs(&r, "rebind_reuseaddr"), "EADDRINUSE");
    assert_eq!(obs(&r, "reuse_rebind_reuseaddr"), "ok");
    assert_eq!(obs(&r, "client_first_client_side"), "TIME_WAIT");
    assert_eq!(obs(&r, "client_first_server_side"), "gone");
    assert_eq!(r["held"], false, "Linux wants SO_REUSEADDR on both sockets");
}

/// close() in one of two processes holding a socket sends nothing; shutdown() sends the FIN.
#[test]
fn fork_close() {
    let r = lab("fork-close");
    assert_eq!(obs(&r, "client1_after_parent_close"), &json!([]));
    assert_eq!(obs(&r, "client1_read"), "EAGAIN");
    assert_eq!(obs(&r, "server1_state"), "ESTABLISHED");
    assert_eq!(obs(&r, "parent_shutdown"), "ok");
    assert_eq!(obs(&r, "client2_read"), 0);
    assert_eq!(obs(&r, "server2_state"), "FIN_WAIT2");
    assert_eq!(obs(&r, "child_close"), "ok");
    assert_eq!(obs(&r, "client1_read_after_child_close"), 0);
    assert_eq!(obs(&r, "server1_state_after_child_close"), "FIN_WAIT2");
    assert_eq!(obs(&r, "child"), "exited 0");
    assert_eq!(r["held"], true);
}

/// The first write to a closed peer succeeds, the next fails with EPIPE, and write(2) with
/// the default disposition kills the writer; MSG_NOSIGNAL (Rust's TcpStream) does not.
#[test]
fn sigpipe() {
    let r = lab("sigpipe");
    assert_eq!(obs(&r, "sigpipe_disposition"), "SIG_IGN");
    assert_eq!(obs(&r, "server_state"), "CLOSE_WAIT");
    assert_eq!(obs(&r, "first_write"), 1);
    assert!(has_flag(obs(&r, "after_first_write"), "POLLERR"));
    assert_eq!(obs(&r, "server_state_after_rst"), "gone");
    assert_eq!(obs(&r, "second_write"), "EPIPE");
    assert_eq!(obs(&r, "child_first_write"), "ok");
    assert_eq!(obs(&r, "child_send_nosignal"), "EPIPE");
    assert_eq!(obs(&r, "child_second_write"), "no answer");
    assert_eq!(obs(&r, "child"), "killed by SIGPIPE");
    assert_namespace(&r);
    assert_counted(&r, obs(&r, "rst_sent"), 1, "the peer's RST");
    // After an RST in ESTABLISHED: ECONNRESET first, without SIGPIPE; EPIPE and SIGPIPE next.
    assert_eq!(obs(&r, "reset_server_state"), "ESTABLISHED");
    assert_counted(&r, obs(&r, "reset_rst_sent"), 1, "the client's RST");
    assert_eq!(obs(&r, "reset_first_write"), "ECONNRESET");
    assert_eq!(obs(&r, "reset_second_write"), "EPIPE");
    assert_eq!(obs(&r, "reset_child_first_write"), "ECONNRESET");
    assert_eq!(obs(&r, "reset_child_second_write"), "no answer");
    assert_eq!(obs(&r, "reset_child"), "killed by SIGPIPE");
    assert_eq!(
        r["held"], false,
        "EPIPE after an RST holds in CLOSE_WAIT only; in ESTABLISHED it is ECONNRESET"
    );
}

/// A reader that stops: the writer reaches EAGAIN with every byte accounted for in the two
/// queues, and Linux reports SO_SNDBUF/SO_RCVBUF doubled.
#[test]
fn buffers() {
    let r = lab("buffers");
    let asked = 16 * 1024;
    let rcvbuf = number(obs(&r, "rcvbuf"));
    let sndbuf = number(obs(&r, "sndbuf"));
    assert_eq!(rcvbuf, 2 * asked, "Linux doubles SO_RCVBUF");
    assert_eq!(sndbuf, 2 * asked, "Linux doubles SO_SNDBUF");
    let full = obs(&r, "write_until_full");
    assert_eq!(full["then"], "EAGAIN");
    let written = number(&full["written"]);
    assert!(written > 0 && written <= rcvbuf + sndbuf, "{full}");
    let send_q = number(obs(&r, "sender_send_q"));
    let recv_q = number(obs(&r, "receiver_recv_q"));
    assert!(send_q > 0 && recv_q > 0, "bytes wait on both sides");
    assert_eq!(send_q + recv_q, written);
    assert_eq!(obs(&r, "accounted")["sum"], written);
    assert_eq!(obs(&r, "writable_while_full"), &json!([]));
    assert_eq!(obs(&r, "blocking_write")["result"], "EAGAIN");
    assert!(number(&obs(&r, "blocking_write")["blocked_ms"]) >= 150);
    assert_eq!(number(obs(&r, "drained")), written);
    assert!(has_flag(obs(&r, "writable_after_drain"), "POLLOUT"));
    assert_eq!(r["held"], true);
}

/// The heartbeat half, the same in both modes.
fn assert_heartbeat(r: &Value) {
    assert_eq!(obs(r, "heartbeats"), &json!({ "sent": 5, "answered": 5 }));
    let close = obs(r, "idle_close");
    assert_eq!(close["read"], 0, "the server closed the silent connection");
    // Closed by the 0.5 s idle timeout, not before: a lower bound the server guarantees.
    assert!(number(&close["after_ms"]) >= 400, "{close}");
    assert_eq!(obs(r, "server_exit"), "exited 0");
    let defaults = obs(r, "defaults");
    assert_eq!(
        number(&defaults["time"]),
        sysctl("net/ipv4/tcp_keepalive_time")
    );
}

/// The fallback without namespaces: keepalive armed on loopback, probes answered.
fn assert_fallback(r: &Value) {
    assert_eq!(obs(r, "mode"), "fallback");
    assert!(
        obs(r, "fallback_reason")
            .as_str()
            .is_some_and(|s| s.contains("not root") || s.contains("iproute2")),
        "{r:#}"
    );
    assert_eq!(
        obs(r, "options"),
        &json!({ "keepalive": true, "idle": 1, "intvl": 1, "cnt": 2 })
    );
    assert_eq!(obs(r, "timer")["timer"], "keepalive");
    assert!(number(obs(r, "probes_sent_here")) >= 1);
    assert_eq!(obs(r, "state_after"), "ESTABLISHED");
    assert_heartbeat(r);
    assert_eq!(r["held"], false, "the dead-peer half was not shown");
}

/// As root with iproute2: a peer behind a downed veth is failed with ETIMEDOUT after exactly
/// KEEPCNT probes, while a connection without keepalive stays ESTABLISHED. Not root: the
/// documented fallback.
#[test]
fn keepalive() {
    let mut command = Command::new(BIN);
    command.args(["lab", "keepalive", "--json"]);
    let (out, pid) = run_bounded_pid(command);
    let r = parse("keepalive", &out);
    if !is_root() {
        assert_fallback(&r);
        return;
    }
    assert_eq!(
        obs(&r, "mode"),
        "netns",
        "root, so the namespaces must work"
    );
    assert_eq!(
        obs(&r, "options"),
        &json!({ "keepalive": true, "idle": 1, "intvl": 1, "cnt": 2 })
    );
    assert_eq!(obs(&r, "timer")["timer"], "keepalive");
    let detected = obs(&r, "detected");
    assert!(has_flag(&detected["poll"], "POLLERR"), "{detected}");
    // idle 1 s + 2 probes 1 s apart: the kernel cannot give up sooner than that.
    assert!(number(&detected["after_ms"]) >= 2500, "{detected}");
    // Counted from the last segment received, the kernel cannot give up before
    // idle + cnt × intvl (less a 4 ms tick).
    assert_eq!(number(&detected["formula_ms"]), 3000);
    assert!(
        number(&detected["since_last_data_ms"]) >= 2900,
        "{detected}"
    );
    assert_eq!(obs(&r, "read"), "ETIMEDOUT");
    assert_eq!(obs(&r, "probes_sent"), 2);
    assert_eq!(obs(&r, "without_keepalive"), "ESTABLISHED");
    assert_eq!(obs(&r, "client_state"), "ESTABLISHED");
    assert_heartbeat(&r);
    assert_eq!(r["held"], true);
    let leftover = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(&format!("smlab-{pid}-"))
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leftover, 0, "the lab removed its namespaces");
}

/// Without root the lab falls back and says why. As root this runs it as `nobody` through
/// setpriv, so the fallback is exercised on every machine.
#[test]
fn keepalive_without_root() {
    let out = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "lab",
            "keepalive",
            "--json",
        ]);
        run_bounded(c)
    } else {
        let mut c = Command::new(BIN);
        c.args(["lab", "keepalive", "--json"]);
        run_bounded(c)
    };
    assert_fallback(&parse("keepalive", &out));
}

/// The numbers of an array observation.
fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// Write-write-read stalls on the peer's delayed ACK once the peer has left quick-ACK mode,
/// one delayed ACK per stalled exchange; TCP_NODELAY, writev and TCP_CORK do not stall.
#[test]
fn nagle() {
    let r = lab("nagle");
    assert_namespace(&r);
    let rounds = 6;
    let nagle = obs(&r, "nagle");
    let ms = numbers(&nagle["ms"]);
    assert_eq!(ms.len(), rounds);
    // Rounds 2.. waited for the delayed-ACK timer, which cannot fire before TCP_DELACK_MIN
    // (40 ms) less a tick: a lower bound the kernel guarantees.
    let mut later: Vec<f64> = ms[1..].to_vec();
    later.sort_by(|a, b| a.total_cmp(b));
    assert!(later[later.len() / 2] >= 30.0, "{nagle}");
    let acks = numbers(&nagle["delayed_acks"]);
    let stalled: f64 = acks[1..].iter().sum();
    assert_counted(
        &r,
        &Value::from(stalled as u64),
        5,
        "DelayedACKs in exchanges 2-6",
    );
    // The peer answered the first exchange in quick-ACK mode and the rest in pingpong mode.
    assert_eq!(nagle["peer_quickack"], json!([1, 0, 0, 0, 0, 0]), "{nagle}");
    assert_eq!(numbers(&nagle["segments"]), vec![2.0; rounds]);
    assert_eq!(
        number(&nagle["peer_ato_us"]),
        40_000,
        "TCP_ATO_MIN is 40 ms"
    );
    for (way, segments) in [("nodelay", 2.0), ("writev", 1.0), ("cork", 1.0)] {
        let v = obs(&r, way);
        assert_eq!(
            numbers(&v["segments"]),
            vec![segments; rounds],
            "{way}: {v}"
        );
        if private(&r) {
            assert_eq!(numbers(&v["delayed_acks"]), vec![0.0; rounds], "{way}: {v}");
        }
    }
    assert_eq!(r["held"], true);
}

/// SO_LINGER {on, 0} resets and leaves no TIME_WAIT; {on, 1} makes close() wait a second,
/// blocking or not, then return 0 with nothing discarded; shutdown() does not linger; the
/// default close returns at once and the kernel delivers the rest.
#[test]
fn linger() {
    let r = lab("linger");
    assert_namespace(&r);
    let counted = obs(&r, "abort_counters");
    assert_counted(&r, &counted["TcpExt.TCPAbortOnData"], 1, "TCPAbortOnData");
    assert_counted(&r, &counted["Tcp.OutRsts"], 1, "OutRsts");
    assert_eq!(obs(&r, "abort_client_state"), "gone", "no TIME_WAIT");
    assert_eq!(obs(&r, "abort_server_read"), "ECONNRESET");
    assert_eq!(obs(&r, "plain_client_state"), "TIME_WAIT");
    for key in ["linger_blocking", "linger_nonblocking"] {
        let v = obs(&r, key);
        // SO_LINGER 1 s: close() cannot return sooner while the peer's window stays shut.
        assert!(number(&v["close_ms"]) >= 900, "{key}: {v}");
        assert_eq!(
            v["close_returned"], "ok",
            "{key}: Linux returns 0, not EWOULDBLOCK"
        );
        assert_eq!(v["state_after"], "FIN_WAIT1", "{key}: {v}");
        assert!(
            number(&v["send_q_after"]) > 0,
            "{key}: data still queued: {v}"
        );
        assert_eq!(
            v["peer_read"], v["written"],
            "{key}: nothing discarded: {v}"
        );
        assert_eq!(v["peer_eof"], true, "{key}: {v}");
        if private(&r) {
            assert_eq!(v["rsts"], 0, "{key}: no RST: {v}");
        }
    }
    let shut = obs(&r, "linger_shutdown");
    assert_eq!(shut["result"], "ok");
    assert!(
        number(&shut["shutdown_ms"]) < 900,
        "shutdown() does not linger: {shut}"
    );
    assert_eq!(shut["peer_read"], shut["written"]);
    let default = obs(&r, "default_close");
    assert!(number(&default["close_ms"]) < 900, "{default}");
    assert_eq!(default["state_after"], "FIN_WAIT1");
    assert!(number(&default["send_q_after"]) > 0, "{default}");
    assert_eq!(default["peer_read"], default["written"]);
    assert_eq!(default["peer_eof"], true);
    assert_eq!(
        r["held"], false,
        "Linux lingers on nonblocking sockets and never returns EWOULDBLOCK or discards"
    );
}

/// One blocking accept() is woken per connection, and one EPOLLEXCLUSIVE epoll instance (at
/// least one: "one or more"); every poll() caller and every plain epoll instance is woken,
/// and one thread gets the connection.
#[test]
fn herd() {
    let r = lab("herd");
    let waiters = 4.0;
    for way in ["accept", "poll", "epoll", "epoll_exclusive"] {
        let v = obs(&r, way);
        assert!(
            numbers(&v["connection"]).iter().all(|&c| c == 1.0),
            "{way}: {v}"
        );
        let woken = numbers(&v["woken"]);
        assert_eq!(woken.len(), 3);
        match way {
            "accept" => {
                assert!(woken.iter().all(|&w| w == 1.0), "{way}: {v}");
                // Exclusive waiters queue at the tail and are woken from the head.
                assert_eq!(v["sole_woken"], json!([0, 0, 0]), "{way}: {v}");
            }
            "epoll_exclusive" => {
                assert!(woken.iter().all(|&w| w >= 1.0 && w < waiters), "{way}: {v}");
                if woken.iter().all(|&w| w == 1.0) {
                    assert_eq!(v["sole_woken"], json!([0, 0, 0]), "{way}: {v}");
                }
            }
            _ => {
                assert!(woken.iter().all(|&w| w == waiters), "{way}: {v}");
                let eagain = numbers(&v["eagain"]);
                let slept = numbers(&v["slept_again"]);
                for i in 0..woken.len() {
                    assert_eq!(eagain[i] + slept[i], waiters - 1.0, "{way}: {v}");
                }
            }
        }
    }
}

/// The five models each got the bytes; glibc's aio_read ran on a thread of its own; io_uring
/// completed the receive (or, where io_uring is refused, says why).
#[test]
fn io_models() {
    let r = lab("io-models");
    assert_eq!(obs(&r, "blocking")["read"], "ping");
    // The peer writes 30 ms after being told: the blocking read cannot return sooner.
    assert!(number(&obs(&r, "blocking")["blocked_ms"]) >= 15);
    let nonblocking = obs(&r, "nonblocking");
    assert_eq!(nonblocking["read"], "ping");
    assert!(number(&nonblocking["eagain"]) >= 1, "{nonblocking}");
    let select = obs(&r, "select");
    assert_eq!(select["select"], 1);
    assert_eq!(select["read"], "ping");
    let sigio = obs(&r, "sigio");
    assert!(number(&sigio["sigio"]) >= 1, "{sigio}");
    assert_eq!(sigio["si_code"], "POLL_IN");
    assert_eq!(sigio["si_fd_is_sock"], true);
    assert_eq!(sigio["read"], "ping");
    let aio = obs(&r, "posix_aio");
    assert_eq!(aio["returned"], "ping", "{aio}");
    assert!(
        number(&aio["threads_while_waiting"]) > number(&aio["threads_before"]),
        "glibc's aio_read runs on a helper thread: {aio}"
    );
    let uring = obs(&r, "io_uring");
    match uring.get("error") {
        None => {
            assert_eq!(uring["res"], 4, "{uring}");
            assert_eq!(uring["buffer"], "ping");
            assert_eq!(uring["submitted"], 1);
        }
        // Refused here (kernel.io_uring_disabled, a seccomp profile): the lab says why.
        Some(e) => assert!(e.as_str().is_some_and(|e| e.starts_with('E')), "{uring}"),
    }
    assert_eq!(
        r["held"], false,
        "POSIX aio on glibc is threads, not the kernel"
    );
}

/// Why the namespace labs cannot run here (not root, no `ip`), or `None` if they can.
fn netns_unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root: network namespaces need CAP_SYS_ADMIN".to_string());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("`ip` from iproute2 is not installed".to_string()),
    }
}

/// Runs a namespace lab with `--json`, or prints why it is skipped here and returns `None`.
fn netns_lab(name: &str) -> Option<Value> {
    if let Some(reason) = netns_unavailable() {
        println!("skipped: lab {name} needs network namespaces: {reason}");
        return None;
    }
    let mut command = Command::new(BIN);
    command.args(["lab", name, "--json"]);
    let (out, pid) = run_bounded_pid(command);
    let leftover = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("smlab-{pid}-"))
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leftover, 0, "lab {name} removed its namespaces");
    Some(parse(name, &out))
}

/// The counter `key` inside an observation holding a counters object.
fn counter(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {v}"))
}

/// `lab` lists the four labs that stage their network in namespaces.
#[test]
fn lists_the_netns_labs() {
    let out = run_bounded({
        let mut c = Command::new(BIN);
        c.arg("lab");
        c
    });
    for lab in ["syn-flood", "peer-gone", "connect-errors", "ports"] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(lab)),
            "{lab} missing from: {out}"
        );
    }
}

/// Without root the namespace labs refuse with the reason, and exit 1. As root this runs them
/// as `nobody` through setpriv, so the refusal is exercised on every machine.
#[test]
fn netns_labs_say_why_without_root() {
    for lab in ["syn-flood", "peer-gone", "connect-errors", "ports"] {
        let mut command = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        let out = command
            .args(["lab", lab, "--json"])
            .output()
            .expect("run the lab");
        assert_eq!(out.status.code(), Some(1), "{lab}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("network namespaces") && err.contains("not root"),
            "{lab}: {err}"
        );
    }
}

/// The SYN queue is bounded by the listen backlog (backlog + 1 since Linux 6.14), not by
/// tcp_max_syn_backlog, which only stops a queue at three quarters of itself with syncookies
/// off; the flood's drops and cookies are counted one for one; entries live one SYN-ACK
/// retransmission; a locked-out client gets in on a SYN retry, and with cookies at once.
#[test]
fn syn_flood() {
    let Some(r) = netns_lab("syn-flood") else {
        return;
    };
    let (flood, backlog) = (64, 8);
    assert_eq!(obs(&r, "settings")["tcp_synack_retries"], "1");
    assert_eq!(obs(&r, "nocookie_listener")["send_q"], backlog);
    let queued = number(obs(&r, "nocookie_queued"));
    assert!(queued == backlog || queued == backlog + 1, "{queued}");
    let c = obs(&r, "nocookie_flood_counters");
    assert_eq!(counter(c, "TcpExt.TCPReqQFullDrop"), flood - queued);
    assert_eq!(counter(c, "TcpExt.ListenDrops"), flood - queued);
    assert_eq!(counter(c, "TcpExt.SyncookiesSent"), 0);
    assert_eq!(obs(&r, "nocookie_client"), "SYN_SENT");
    let timeline = obs(&r, "nocookie_timeline").as_array().expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|t| t["synack_retransmissions"] == 1 && t["syn_recv"] == queued),
        "{timeline:?}"
    );
    assert_eq!(timeline.last().expect("a sample")["syn_recv"], 0);
    // An entry lives 1 s + 2 s with one SYN-ACK retry; the client cannot get in sooner.
    assert!(number(obs(&r, "nocookie_client_connected")) >= 2500);
    assert_eq!(obs(&r, "nocookie_accept"), "ok");
    let w = obs(&r, "nocookie_wait_counters");
    assert_eq!(counter(w, "TcpExt.TCPSynRetrans"), queued);
    assert!(
        counter(w, "TcpExt.TCPReqQFullDrop") >= 1,
        "the client was dropped"
    );
    // Each queued entry's SYN-ACK and its one retransmission, dropped by the client's host.
    assert_eq!(number(obs(&r, "nocookie_synacks_dropped")), 2 * queued);

    let small = 16;
    let queued_small = number(obs(&r, "maxsyn_queued"));
    assert_eq!(queued_small, small - small / 4 + 1);
    let m = obs(&r, "maxsyn_flood_counters");
    assert_eq!(counter(m, "TcpExt.ListenDrops"), flood - queued_small);
    assert_eq!(counter(m, "TcpExt.TCPReqQFullDrop"), 0);

    assert_eq!(number(obs(&r, "cookies_queued")), queued);
    let k = obs(&r, "cookies_flood_counters");
    assert_eq!(counter(k, "TcpExt.TCPReqQFullDoCookies"), flood - queued);
    assert_eq!(counter(k, "TcpExt.SyncookiesSent"), flood - queued);
    assert_eq!(counter(k, "TcpExt.ListenDrops"), 0);
    assert_eq!(obs(&r, "cookies_client")["state"], "ESTABLISHED");
    assert_eq!(
        obs(&r, "cookies_accept"),
        &json!({ "accept": "ok", "state": "ESTABLISHED" })
    );
    let kc = obs(&r, "cookies_client_counters");
    assert_eq!(counter(kc, "TcpExt.SyncookiesSent"), 1);
    assert_eq!(counter(kc, "TcpExt.SyncookiesRecv"), 1);

    assert_eq!(number(obs(&r, "always_queued")), 0);
    assert_eq!(
        counter(obs(&r, "always_flood_counters"), "TcpExt.SyncookiesSent"),
        16
    );
    assert_eq!(
        counter(obs(&r, "always_client_counters"), "TcpExt.SyncookiesRecv"),
        1
    );
    assert_eq!(obs(&r, "always_client")["state"], "ESTABLISHED");
    assert_eq!(r["held"], false, "tcp_max_syn_backlog is not the bound");
}

/// A vanished host: retransmissions with a doubling RTO after a tail loss probe, ETIMEDOUT
/// for the blocked read when tcp_retries2's time (not count) runs out, sooner with
/// TCP_USER_TIMEOUT; every segment counted where it was discarded. A rebooted host: RST,
/// ECONNRESET, then EOF and EPIPE.
#[test]
fn peer_gone() {
    let Some(r) = netns_lab("peer-gone") else {
        return;
    };
    assert_eq!(obs(&r, "settings")["tcp_retries2"], "2");
    assert_eq!(obs(&r, "write"), &json!([7, 7]));
    let events = obs(&r, "retransmissions").as_array().expect("events");
    let timeouts: Vec<&Value> = events.iter().filter(|e| e["kind"] == "timeout").collect();
    // The RTO doubles at every timeout: 2 × the one before.
    for pair in timeouts.windows(2) {
        let (a, b) = (number(&pair[0]["rto_ms"]), number(&pair[1]["rto_ms"]));
        assert!(b.abs_diff(2 * a) <= 2, "{events:?}");
    }
    // tcp_retries2 = 2 is 200 + 400 + 800 ms from the first timeout; with an RTO near 200 ms
    // three timeouts fit in it, one more than the books' count.
    let rto = number(&obs(&r, "before")["rto_us"]);
    if rto < 230_000 {
        assert_eq!(timeouts.len(), 3, "{events:?}");
    }
    let read = obs(&r, "read");
    assert_eq!(read["result"], "ETIMEDOUT");
    assert!(number(&read["after_ms"]) >= 1400, "{read}");
    let user = obs(&r, "user_timeout_read");
    assert_eq!(user["result"], "ETIMEDOUT");
    // Not before TCP_USER_TIMEOUT, and before tcp_retries2 gave up on the other connection.
    assert!(number(&user["after_ms"]) >= 1000, "{user}");
    assert!(
        number(&user["after_ms"]) < number(&read["after_ms"]),
        "{user} {read}"
    );
    let c = obs(&r, "counters");
    let all_events = events.len()
        + obs(&r, "user_timeout_retransmissions")
            .as_array()
            .expect("events")
            .len();
    assert_eq!(counter(c, "Tcp.RetransSegs"), all_events as u64);
    assert_eq!(counter(c, "TcpExt.TCPAbortOnTimeout"), 2);
    // The two requests and every retransmission, discarded by the host that vanished.
    assert_eq!(
        number(obs(&r, "discarded")),
        counter(c, "Tcp.RetransSegs") + 2
    );
    assert_eq!(obs(&r, "server_state"), "ESTABLISHED");
    assert_eq!(obs(&r, "client_state"), "gone");

    assert_eq!(obs(&r, "crashed_server_state"), "gone");
    let crash = obs(&r, "crash_server_counters");
    assert_eq!(counter(crash, "Tcp.OutRsts"), 1);
    assert_eq!(counter(crash, "TcpExt.TCPAbortOnData"), 1);
    assert_eq!(obs(&r, "stale_write"), 5);
    assert!(has_flag(obs(&r, "stale_poll"), "POLLERR"));
    assert_eq!(obs(&r, "stale_read"), "ECONNRESET");
    assert_eq!(obs(&r, "stale_read_again"), 0);
    assert_eq!(obs(&r, "stale_write_after"), "EPIPE");
    assert_eq!(counter(obs(&r, "reboot_server_counters"), "Tcp.OutRsts"), 1);
    assert_eq!(
        counter(obs(&r, "reboot_client_counters"), "Tcp.EstabResets"),
        1
    );
    assert_eq!(r["held"], false, "tcp_retries2 is a time, not a count");
}

/// RST: ECONNREFUSED at once. Silence: ETIMEDOUT when tcp_syn_retries' time is up, with
/// tcp_syn_linear_timeouts adding SYNs to it. ICMP host unreachable: EHOSTUNREACH at the first
/// ICMP the kernel can act on. No route: ENETUNREACH, nothing sent.
#[test]
fn connect_errors() {
    let Some(r) = netns_lab("connect-errors") else {
        return;
    };
    let settings = obs(&r, "settings");
    assert_eq!(settings["tcp_syn_retries"], "1");

    assert_eq!(obs(&r, "refused")["result"], "ECONNREFUSED");
    assert_eq!(
        counter(obs(&r, "refused_client_counters"), "Tcp.AttemptFails"),
        1
    );
    assert_eq!(
        counter(obs(&r, "refused_server_counters"), "Tcp.OutRsts"),
        1
    );

    // (2^(1+1) - 1) × 1 s after the SYN, whatever the count.
    let silent = obs(&r, "silent");
    assert_eq!(silent["result"], "ETIMEDOUT");
    assert!(number(&silent["after_ms"]) >= 2900, "{silent}");
    let linear: u64 = settings["tcp_syn_linear_timeouts"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let c = obs(&r, "silent_client_counters");
    assert_eq!(
        counter(c, "TcpExt.TCPSynRetrans"),
        if linear > 0 { 2 } else { 1 },
        "{c}"
    );
    assert_eq!(counter(c, "Tcp.AttemptFails"), 1);
    if linear > 0 {
        let exp = obs(&r, "silent_exponential");
        assert_eq!(exp["result"], "ETIMEDOUT");
        assert!(number(&exp["after_ms"]) >= 2900, "{exp}");
        assert_eq!(
            counter(
                obs(&r, "silent_exponential_client_counters"),
                "TcpExt.TCPSynRetrans"
            ),
            1
        );
    }

    let unreachable = obs(&r, "unreachable");
    assert_eq!(unreachable["result"], "EHOSTUNREACH");
    let u = obs(&r, "unreachable_client_counters");
    // An ICMP that came while connect() held the socket is only noted, and the SYN is sent
    // again; the first one the kernel can act on ends the attempt, long before the retries do.
    let noted = counter(u, "TcpExt.LockDroppedIcmps");
    assert_eq!(counter(u, "TcpExt.TCPSynRetrans"), noted, "{u}");
    assert_eq!(counter(u, "Icmp.InDestUnreachs"), noted + 1, "{u}");
    assert_eq!(
        counter(
            obs(&r, "unreachable_server_counters"),
            "Icmp.OutDestUnreachs"
        ),
        noted + 1
    );
    assert!(number(&unreachable["after_ms"]) < 2900, "{unreachable}");

    assert_eq!(obs(&r, "no_route")["result"], "ENETUNREACH");
    let n = obs(&r, "no_route_client_counters");
    assert_eq!(counter(n, "Ip.OutNoRoutes"), 1);
    assert_eq!(counter(n, "Tcp.ActiveOpens"), 0);
    assert_eq!(
        r["held"], false,
        "ICMP unreachable is a hard error in SYN_SENT"
    );
}

/// Eight ephemeral ports, eight connections closed first by the client, eight TIME_WAIT
/// sockets and EADDRNOTAVAIL; past the reuse delay tcp_tw_reuse 1 takes a TIME_WAIT port for
/// any destination, 2 only for loopback, 0 never.
#[test]
fn ports() {
    let Some(r) = netns_lab("ports") else {
        return;
    };
    let range: Vec<u64> = (40000..=40007).collect();
    for key in ["reuse0", "reuse2_veth", "reuse2_loopback", "reuse1"] {
        let e = obs(&r, &format!("{key}_exhaust"));
        assert_eq!(e["connections"], 8, "{e}");
        assert_eq!(e["then"], "EADDRNOTAVAIL", "{e}");
        let mut ports: Vec<u64> = e["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(number)
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, range, "every port of the range, once");
        let tw = obs(&r, &format!("{key}_time_wait"));
        assert_eq!(tw["count"], 8, "{tw}");
        let expires = number(&tw["expires_ms"]);
        assert!(expires > 50_000 && expires <= 60_000, "{tw}");
    }
    for (key, taken) in [
        ("reuse0", false),
        ("reuse2_veth", false),
        ("reuse2_loopback", true),
        ("reuse1", true),
    ] {
        let retry = obs(&r, &format!("{key}_retry"));
        assert_eq!(
            retry["result"],
            if taken { "ok" } else { "EADDRNOTAVAIL" },
            "{key}: {retry}"
        );
        assert_eq!(retry["was_time_wait"], taken, "{key}: {retry}");
        assert_eq!(
            number(obs(&r, &format!("{key}_recycled"))),
            u64::from(taken)
        );
    }
    assert_eq!(r["held"], true);
}
