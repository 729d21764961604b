//! Stevens' accept strategies and the per-worker meter: `prefork` with each `--accept-lock`,
//! `prefork-fdpass`, and the other multi-worker models, each run as a `serve` process.
//!
//! Run with `cargo test --test accept_strategies`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use server_models::server::protocol::Protocol;

const WORKERS: usize = 3;

/// Makes `n` connections, one after another, each exchanging one echo message.
fn serve_sequential_clients(server: &ServerProcess, n: usize) {
    for i in 0..n {
        let mut s = connect(server.addr()).expect("connect");
        let msg = pattern(32, i as u8);
        assert_eq!(
            echo_exchange(&mut s, &msg).expect("echo"),
            msg,
            "client {i}"
        );
    }
}

/// Stops the server and returns the counts of its `served per worker:` line.
fn stop_and_read_meter(mut server: ServerProcess) -> Vec<u64> {
    assert_eq!(
        server.terminate(Duration::from_secs(10)),
        Some(0),
        "clean exit; log:\n{}",
        server.log_tail()
    );
    // The stderr reader may still be catching up with the last lines.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log_tail();
        if let Some(line) = log
            .lines()
            .find_map(|l| l.split("served per worker: ").nth(1))
        {
            return line
                .split_whitespace()
                .map(|n| n.parse().expect("a count"))
                .collect();
        }
        assert!(Instant::now() < deadline, "no meter line in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The meter has one count per worker, and the counts add up to the connections made.
fn meter_adds_up(model: &str, extra: &[&str]) {
    let workers = WORKERS.to_string();
    let mut args = vec!["--workers", workers.as_str()];
    args.extend_from_slice(extra);
    let server = start(model, Protocol::Echo, &args).expect("start");
    serve_sequential_clients(&server, 24);
    let counts = stop_and_read_meter(server);
    assert_eq!(counts.len(), WORKERS, "{model} {extra:?}: {counts:?}");
    assert_eq!(
        counts.iter().sum::<u64>(),
        24,
        "{model} {extra:?}: {counts:?}"
    );
}

/// prefork, children blocking in accept with no lock: the kernel wakes one of them.
#[test]
fn prefork_without_lock_meters_every_connection() {
    meter_adds_up("prefork", &["--accept-lock", "none"]);
}

/// prefork with a POSIX record lock around accept (one descriptor, inherited by every child).
#[test]
fn prefork_with_fcntl_lock_meters_every_connection() {
    meter_adds_up("prefork", &["--accept-lock", "fcntl"]);
}

/// prefork with flock around accept (each child's own open file description).
#[test]
fn prefork_with_flock_meters_every_connection() {
    meter_adds_up("prefork", &["--accept-lock", "flock"]);
}

/// prefork with a process-shared pthread mutex around accept.
#[test]
fn prefork_with_mutex_meters_every_connection() {
    meter_adds_up("prefork", &["--accept-lock", "mutex"]);
}

/// prefork-fdpass: the parent counts each descriptor it passes.
#[test]
fn fdpass_meters_every_connection() {
    meter_adds_up("prefork-fdpass", &[]);
}

/// prefork-fdpass hands each connection to the first idle child, as Stevens' parent does: with
/// one client at a time, child 0 is always idle first and serves them all.
#[test]
fn fdpass_prefers_the_first_idle_child() {
    let server = start("prefork-fdpass", Protocol::Echo, &["--workers", "3"]).expect("start");
    for _ in 0..10 {
        let mut s = connect(server.addr()).expect("connect");
        assert_eq!(echo_exchange(&mut s, b"ping").expect("echo"), b"ping");
        drop(s);
        // Let the child report "idle" before the next client, so that the choice is free.
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(stop_and_read_meter(server), vec![10, 0, 0]);
}

/// thread-pool and tokio (multi-thread) print the same meter.
#[test]
fn threaded_models_meter_every_connection() {
    meter_adds_up("thread-pool", &[]);
    meter_adds_up("tokio", &[]);
}

/// A child killed while it holds the accept lock must not wedge the others: file locks are
/// released by the kernel, and the mutex is robust (the next locker repairs it).
#[test]
fn a_killed_lock_holder_does_not_wedge_the_others() {
    for lock in ["fcntl", "flock", "mutex"] {
        let server = start(
            "prefork",
            Protocol::Echo,
            &["--workers", "2", "--accept-lock", lock],
        )
        .expect("start");
        // Kill every original child; whichever held the lock (blocked in accept) dies with it.
        let children = || -> Vec<i32> {
            let parent = server.pid() as i32;
            let tree = tree(&server).expect("the server's process tree");
            tree.into_iter()
                .filter(|&p| p != parent && !zombie(p))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while children().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "{lock}: the two children never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let originals = children();
        for &pid in &originals {
            signal(pid, Signal::SIGKILL);
        }
        // The parent forks replacements; a client must then be served.
        while children().iter().filter(|p| !originals.contains(p)).count() < 2 {
            assert!(Instant::now() < deadline, "{lock}: no replacements forked");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut s = connect(server.addr()).expect("connect");
        assert_eq!(
            echo_exchange(&mut s, b"still here").expect("echo"),
            b"still here",
            "{lock}"
        );
        drop(s);
        let counts = stop_and_read_meter(server);
        assert_eq!(counts.iter().sum::<u64>(), 1, "{lock}: {counts:?}");
    }
}

/// An unknown lock is a usage error that names the choices.
#[test]
fn unknown_accept_lock_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args([
            "serve",
            "prefork",
            "--addr",
            "127.0.0.1:0",
            "--accept-lock",
            "spin",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fcntl") && err.contains("mutex"), "{err}");
}

/// prefork-fdpass notices a dead child by the EOF on its socket: it reaps it at once (no zombie
/// left), forks a replacement, and keeps serving.
#[test]
fn fdpass_reaps_and_replaces_a_killed_child() {
    let server = start("prefork-fdpass", Protocol::Echo, &["--workers", "2"]).expect("start");
    let children = || -> Vec<i32> {
        let parent = server.pid() as i32;
        let tree = tree(&server).expect("the server's process tree");
        tree.into_iter().filter(|&p| p != parent).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while children().len() < 2 {
        assert!(Instant::now() < deadline, "the two children never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let victim = children()[0];
    signal(victim, Signal::SIGKILL);
    loop {
        let now = children();
        if !now.contains(&victim) && now.len() == 2 && !now.iter().any(|&p| zombie(p)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reaped and replaced: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..4 {
        let mut s = connect(server.addr()).expect("connect");
        assert_eq!(echo_exchange(&mut s, b"again").expect("echo"), b"again");
    }
    assert_eq!(stop_and_read_meter(server).iter().sum::<u64>(), 4);
}
