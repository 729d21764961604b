//! The kernel's counters checked against processes and sockets whose answer is known: syscalls
//! counted through inherited perf counters against a probe that makes an exact number of
//! calls, in a thread and a forked child too; slab caches and sockstat against loopback
//! connections the test opens itself.
//!
//! Both need root (tracefs and perf counters; /proc/slabinfo). Without it, each test prints why
//! it did not run and passes: CI runs as root, so there they run.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use server_models::harness::measure::kernel_mem::{self, ACCEPTED_SOCKET, CLIENT_SOCKET};
use server_models::harness::measure::syscalls::{self, CountPlan, SUMMED_WAITS};

/// getppid calls in each of the main thread, a thread and a forked child.
const CALLS: u64 = 10_000;
/// Calls of each of epoll_wait, poll and select, and the descriptors each returns.
const WAITS: u64 = 500;
const READY: usize = 7;

/// Exactly 3 × CALLS getppid calls counted across the probe's main thread, a thread it starts
/// and a child it forks — both created after the counters were opened, so inherited — and its
/// waits returning READY descriptors each give exactly READY events per wait.
#[test]
fn syscalls_counted_across_threads_and_children() {
    let plan = match CountPlan::new(&["getppid"]) {
        Ok(plan) => plan,
        Err(why) => {
            println!("skipped: syscalls cannot be counted here: {why}");
            return;
        }
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_server-models"));
    command
        .args(["probe", "syscalls", "--calls", &CALLS.to_string()])
        .args(["--waits", &WAITS.to_string(), "--ready", &READY.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let handoff = plan.attach(&mut command).expect("attach the counters");
    let mut child = command.spawn().expect("start the probe");
    let counters = handoff.receive().expect("the probe's counters");
    assert!(counters.refused().is_empty(), "{:?}", counters.refused());
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready");

    let before = counters.read().expect("read before");
    writeln!(stdin, "go").expect("go");
    line.clear();
    stdout.read_line(&mut line).expect("done");
    assert_eq!(line.trim(), "done", "the probe failed");
    let after = counters.read().expect("read after");
    drop(stdin);
    let status = child.wait().expect("reap the probe");
    assert!(status.success());

    let w = counters.between(&before, &after);
    let calls = |name: &str| w.calls.get(name).copied().unwrap_or(0);
    assert_eq!(calls("getppid"), 3 * CALLS, "main thread + thread + child");
    for wait in SUMMED_WAITS {
        assert_eq!(calls(wait), WAITS, "{wait}");
    }
    assert_eq!(w.events_per_wait(), Ok(READY as f64));
    // One thread and one process were created and ended inside the window.
    assert!(calls("clone") + calls("clone3") >= 2, "{:?}", w.calls);
    assert!(
        calls("exit") >= 1 && calls("exit_group") >= 1,
        "{:?}",
        w.calls
    );
    // The total holds every counted call, and not many besides (the line read and written,
    // the thread's and the child's start and end).
    let named: u64 = w.calls.values().sum();
    assert!(w.total >= named);
    assert!(w.total < named + 2_000, "total {} named {named}", w.total);
}

/// A counter plan resolves every standard wait it sums, and the total, on this kernel.
#[test]
fn the_standard_plan_has_the_waits() {
    let plan = match CountPlan::new(&[]) {
        Ok(plan) => plan,
        Err(why) => {
            println!("skipped: syscalls cannot be counted here: {why}");
            return;
        }
    };
    let bits = SUMMED_WAITS.len() * (syscalls::RET_BITS as usize + 1);
    assert!(plan.counters() > bits + 10, "{} counters", plan.counters());
    for wait in SUMMED_WAITS {
        assert!(!plan.missing().iter().any(|m| m == wait), "{wait} missing");
    }
}

/// Loopback connections opened by the test: each is a client socket and an accepted socket, so
/// TCP, sock_inode_cache, filp and dentry grow by two objects per connection, and the entry
/// holding the port buckets by two (the client's port, by name and by address); sockstat's
/// TCP inuse by two. These are the premises of `kernel_mem`'s client share.
///
/// Other processes use the same caches meanwhile (the machine is shared), so each cache must
/// come within a quarter of its expected growth in the median of three rounds; TCP inuse, which
/// counts only this network namespace, within a tenth.
#[test]
fn kernel_objects_per_loopback_connection() {
    const N: usize = 2000;
    if let Err(e) = kernel_mem::snapshot() {
        println!("skipped: {e}");
        return;
    }
    server_models::harness::measure::placement::raise_fd_limit().expect("fd limit");
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let before = kernel_mem::snapshot().expect("before");
        let mut held = Vec::with_capacity(2 * N);
        for _ in 0..N {
            let client = kernel_mem::client_socket(addr, Duration::from_secs(5)).expect("connect");
            let (accepted, _) = listener.accept().expect("accept");
            held.push(client);
            held.push(accepted);
        }
        let after = kernel_mem::snapshot().expect("after");
        drop(held);
        rounds.push((before, after));
        // Closed sockets' inodes and files are freed after an RCU grace period: let them go
        // before the next round's first reading.
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut expected: Vec<(&str, f64)> = Vec::new();
    for &(cache, n) in CLIENT_SOCKET.iter().chain(ACCEPTED_SOCKET) {
        match expected.iter_mut().find(|e| e.0 == cache) {
            Some(e) => e.1 += n,
            None => expected.push((cache, n)),
        }
    }
    let (_, last) = &rounds[2];
    // Per /proc/slabinfo entry: a merged entry expects the sum of the caches it holds.
    let mut by_entry: Vec<(String, f64)> = Vec::new();
    for (cache, n) in expected {
        let Some(entry) = last.entry_of.get(cache) else {
            println!("note: {cache} has no entry in /proc/slabinfo here");
            continue;
        };
        match by_entry.iter_mut().find(|e| e.0 == *entry) {
            Some(e) => e.1 += n,
            None => by_entry.push((entry.clone(), n)),
        }
    }
    for (entry, per_conn) in by_entry {
        let mut grown: Vec<f64> = rounds
            .iter()
            .map(|(a, b)| {
                (b.slabs[&entry].active as f64 - a.slabs[&entry].active as f64) / N as f64
            })
            .collect();
        grown.sort_by(f64::total_cmp);
        let median = grown[1];
        println!("{entry}: {median:.3} objects per connection, expected {per_conn}");
        assert!(
            (median - per_conn).abs() <= per_conn / 4.0,
            "{entry}: {grown:?} objects per connection, expected {per_conn}"
        );
    }
    let mut inuse: Vec<f64> = rounds
        .iter()
        .map(|(a, b)| (b.tcp_inuse as f64 - a.tcp_inuse as f64) / N as f64)
        .collect();
    inuse.sort_by(f64::total_cmp);
    assert!(
        (inuse[1] - 2.0).abs() <= 0.2,
        "TCP inuse {inuse:?} per connection"
    );
}
