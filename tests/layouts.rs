//! CPU layouts: `compare --server-cpus LIST --load-cpus LIST` puts every thread of every server
//! and of the load generator where it says, as the kernel reports it (`Cpus_allowed_list` of
//! /proc/PID/task/TID/status), and refuses layouts that cannot be honoured. On a 2-core
//! machine only one CPU each fits; what is checked is the placement, never a speed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use server_models::harness::measure::placement::{self, Cpus};
use server_models::harness::measure::procfs;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("server-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The command line of a process, its arguments joined by spaces.
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// While `compare` runs three multi-threaded models with the server on one CPU and the load
/// on another, this test reads the affinity of every task of every process `compare` starts:
/// each server task (a runtime's workers, a pool's threads) may run only on the server's CPU,
/// each load task (its main thread and its load thread) only on the load's. results.json says
/// the same, and the models with a worker per CPU ran one.
#[test]
fn every_task_runs_where_it_was_placed() {
    let allowed = placement::allowed_cpus().expect("affinity");
    let [server, load, ..] = allowed[..] else {
        println!("skipped: this process may use fewer than two CPUs ({allowed:?})");
        return;
    };
    let out = scratch("layout");
    let mut compare = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args(["compare", "tokio", "epoll-exclusive", "thread-pool"])
        .args(["--server-cpus", &server.to_string()])
        .args(["--load-cpus", &load.to_string()])
        .args(["--connections", "4", "--churn", "0", "--idle", "0"])
        .args(["--idle-beside", "none"])
        .args(["--duration", "1s", "--warmup", "300ms"])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .expect("run compare");
    let root = compare.id() as i32;
    // (role, pid, tid) → the CPUs the kernel allows that task.
    let mut seen: BTreeMap<(String, i32, i32), Cpus> = BTreeMap::new();
    let status = loop {
        if let Some(status) = compare.try_wait().expect("wait for compare") {
            break status;
        }
        for pid in procfs::children(root).unwrap_or_default() {
            let role = match cmdline(pid) {
                c if c.contains(" serve ") => "server",
                c if c.contains(" load ") => "load",
                _ => continue,
            };
            for p in procfs::tree(pid).unwrap_or_default() {
                for tid in procfs::tasks(p).unwrap_or_default() {
                    if let Ok(cpus) = placement::task_affinity(p, tid) {
                        seen.insert((role.to_string(), p, tid), cpus);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "compare exited with {status}");
    let count = |role: &str| seen.keys().filter(|k| k.0 == role).count();
    assert!(count("server") >= 3, "server tasks seen: {seen:?}");
    assert!(
        count("load") >= 2,
        "load tasks seen (main and load thread): {seen:?}"
    );
    for ((role, pid, tid), cpus) in &seen {
        let want = if role == "server" { server } else { load };
        assert_eq!(cpus.list(), [want], "{role} {pid} task {tid}");
    }

    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("parse");
    assert_eq!(rows.len(), 3, "{text}");
    for r in &rows {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["server_cpus"], serde_json::json!([server]), "{r}");
        assert_eq!(r["load_cpus"], serde_json::json!([load]), "{r}");
    }
    let workers = |model: &str| {
        rows.iter()
            .find(|r| r["model"] == model)
            .map(|r| r["workers"].clone())
            .unwrap_or_default()
    };
    assert_eq!(workers("tokio"), 1);
    assert_eq!(workers("epoll-exclusive"), 1);
    assert_eq!(workers("thread-pool"), 100, "a pool keeps its size");
    // The pool's meter: its 100 workers' counts add up to the 4 connections it served.
    let pool = rows
        .iter()
        .find(|r| r["model"] == "thread-pool")
        .expect("pool row");
    let served: Vec<u64> =
        serde_json::from_value(pool["served_per_worker"].clone()).expect("the meter's counts");
    assert_eq!(
        (served.len(), served.iter().sum::<u64>()),
        (100, 4),
        "{pool}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A task pinned elsewhere than asked is caught by the check `compare` makes of every task.
#[test]
fn a_misplaced_task_is_caught() {
    let allowed = placement::allowed_cpus().expect("affinity");
    let [first, second, ..] = allowed[..] else {
        println!("skipped: this process may use fewer than two CPUs ({allowed:?})");
        return;
    };
    let mut cmd = Command::new("sleep");
    cmd.arg("5");
    placement::pin_command(&mut cmd, Cpus::from(first)).expect("pin");
    let mut child = cmd.spawn().expect("spawn sleep");
    let pid = child.id() as i32;
    let checked = placement::check_tree_affinity(pid, Cpus::from(first));
    let wrong = placement::check_tree_affinity(pid, Cpus::from(second));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(checked.expect("placed where asked"), 1);
    let e = wrong.expect_err("placed elsewhere");
    assert!(
        e.to_string()
            .contains(&format!("may run on CPUs {first}, not {second}")),
        "{e}"
    );
}

/// Layouts that cannot be honoured are refused before anything runs, each saying why: lists
/// that overlap, a CPU that is not online, a sweep past the server's CPUs, nothing left for
/// the load.
#[test]
fn impossible_layouts_are_refused() {
    let online: Cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .expect("online CPUs")
        .trim()
        .parse()
        .expect("a list");
    let offline = (0..Cpus::LIMIT)
        .find(|&c| !online.contains(c))
        .expect("a CPU number not online");
    let all = online.to_string();
    let cases: [(Vec<String>, String); 4] = [
        (
            vec![
                "--server-cpus".into(),
                "0".into(),
                "--load-cpus".into(),
                "0".into(),
            ],
            "overlap on CPU 0".into(),
        ),
        (
            vec!["--server-cpus".into(), offline.to_string()],
            format!("CPU {offline} not online"),
        ),
        (
            vec![
                "--server-cpus".into(),
                "0".into(),
                "--server-cores".into(),
                "1,2".into(),
            ],
            "--server-cores 2: the server has 1 CPU".into(),
        ),
        (
            vec!["--server-cpus".into(), all.clone()],
            "no CPU is left for the load".into(),
        ),
    ];
    for (args, want) in cases {
        let out = scratch("layout-bad");
        let result = Command::new(env!("CARGO_BIN_EXE_server-models"))
            .args([
                "compare",
                "tokio",
                "--connections",
                "1",
                "--churn",
                "0",
                "--idle",
                "0",
            ])
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run compare");
        let err = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote a report");
    }
}
