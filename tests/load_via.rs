//! The load on another host, for real: two network namespaces joined by a veth pair, made and
//! removed by this test, so that the traffic crosses a real interface instead of loopback.
//! `compare` runs in the server's namespace; its two load processes run in the client's,
//! through `--load-via 'ip netns exec CLIENT'`. What is checked is the merge — the row's
//! figures against the two processes' own — and that the requests crossed the veth, never a
//! speed. Needs root and `ip` (iproute2); without them it says so and checks nothing.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use server_models::lab::Recorder;
use server_models::lab::netns::{self, CLIENT_LINK, Namespaces};

/// The server's address in its namespace, as the load processes in the client's see it.
fn server_ip() -> String {
    netns::SERVER_IP.to_string()
}

/// Packets the client's end of the veth has sent.
fn client_tx_packets(ns: &Namespaces) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.client])
        .arg("cat")
        .arg(format!(
            "/sys/class/net/{CLIENT_LINK}/statistics/tx_packets"
        ))
        .output()
        .expect("read the veth's counter");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a packet count")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("server-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `compare` in the server's namespace, its load split between two processes in the client's:
/// the row is measured, its request count is the sum of the two processes' counts, its max
/// latency the larger of their maxima, its median between theirs (an exact merge of their
/// histograms, which averaging percentiles is not); each process had its share of the
/// connections; and at least one packet per request left the client through the veth.
#[test]
fn load_through_a_namespace_is_merged_exactly() {
    if let Some(why) = netns::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let ns = Namespaces::create(&mut Recorder::new(false)).expect("make the namespaces");
    let out = scratch("load-via");
    let tx_before = client_tx_packets(&ns);
    let via = format!("ip netns exec {}", ns.client);
    let result = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.server,
            env!("CARGO_BIN_EXE_server-models"),
        ])
        .args([
            "compare",
            "epoll-lt",
            "--connections",
            "6",
            "--churn",
            "0",
            "--idle",
            "0",
            "--idle-beside",
            "none",
        ])
        .args(["--duration", "1s", "--warmup", "300ms"])
        .args(["--listen", &server_ip(), "--addr", &server_ip()])
        .args(["--load-via", &via, "--load-via", &via])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run compare in the server's namespace");
    assert!(
        result.status.success(),
        "compare: {}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    let tx_after = client_tx_packets(&ns);

    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let rows: Vec<Value> = serde_json::from_str(&text).expect("parse");
    assert_eq!(rows.len(), 1, "{text}");
    let row = &rows[0];
    assert_eq!(row["status"], "ok", "{row}");
    assert_eq!(row["errors"]["refused"], 0, "{row}");
    let parts = row["load_parts"]
        .as_array()
        .expect("the load processes' shares");
    assert_eq!(parts.len(), 2, "{row}");
    let f = |v: &Value| v.as_f64().expect("a number");
    assert_eq!(
        parts
            .iter()
            .map(|p| p["connections"].as_u64().expect("conns"))
            .collect::<Vec<_>>(),
        [3, 3]
    );
    for p in parts {
        assert_eq!(p["via"], via.as_str());
        assert!(p["requests"].as_u64().expect("requests") > 0, "{p}");
    }
    let requests = row["requests"].as_u64().expect("requests");
    let sum: u64 = parts
        .iter()
        .map(|p| p["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(requests, sum, "merged count = the sum of the parts'");
    let max = f(&row["latency_us"]["max"]);
    let maxes: Vec<f64> = parts.iter().map(|p| f(&p["latency_us"]["max"])).collect();
    assert_eq!(
        max,
        maxes.iter().copied().fold(0.0, f64::max),
        "merged max = max of maxes"
    );
    let p50 = f(&row["latency_us"]["p50"]);
    let p50s: Vec<f64> = parts.iter().map(|p| f(&p["latency_us"]["p50"])).collect();
    let (lo, hi) = (p50s[0].min(p50s[1]), p50s[0].max(p50s[1]));
    assert!(
        lo <= p50 && p50 <= hi,
        "merged p50 {p50} outside the parts' {p50s:?}"
    );
    assert!(f(&row["cpu_us_per_request"]) > 0.0, "{row}");
    // Every request left the client as at least one segment through the veth, not loopback.
    assert!(
        tx_after - tx_before >= requests,
        "{} packets through the veth for {requests} requests",
        tx_after - tx_before
    );
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json"))
            .expect("parse run.json");
    assert_eq!(run["settings"]["load_via"], serde_json::json!([via, via]));
    assert_eq!(run["settings"]["addr"], server_ip().as_str());
    // The server's syscalls are counted on its own host, between the readings taken as the
    // load processes' window marks arrived: one recvfrom and one sendto per echo request.
    let counting = run["settings"]["syscalls"].as_str().unwrap_or("");
    if counting.starts_with("counted") {
        let per = |name: &str| f(&row["syscalls"][name]);
        for name in ["recvfrom", "sendto"] {
            let n = per(name);
            assert!((0.9..1.1).contains(&n), "{name} per request {n}: {row}");
        }
    } else {
        println!("syscalls not checked: {counting}");
    }
    drop(ns);
    let _ = std::fs::remove_dir_all(&out);
}

/// `--load-via` without `--addr`, or `--addr` without `--load-via`, is a usage error.
#[test]
fn load_via_needs_the_servers_address() {
    let ip = server_ip();
    for args in [vec!["--load-via", "ssh host"], vec!["--addr", &ip]] {
        let out = Command::new(env!("CARGO_BIN_EXE_server-models"))
            .args([
                "compare",
                "epoll-lt",
                "--connections",
                "1",
                "--churn",
                "0",
                "--idle",
                "0",
            ])
            .args(&args)
            .args(["--out", "/nonexistent/never-written"])
            .output()
            .expect("run compare");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--addr"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
