//! `compare` end to end: a tiny sweep against the real binary writes a report whose files exist,
//! whose results.json carries every figure the design names, and whose figures are sane.
//! No figure is compared with a threshold of speed: the machine may be busy.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Every key each row of results.json must have.
const KEYS: [&str; 14] = [
    "model",
    "protocol",
    "connections",
    "size",
    "requests_per_sec",
    "latency_us",
    "cpu_us_per_request",
    "cpu_user_us_per_request",
    "cpu_sys_us_per_request",
    "pss_peak_bytes",
    "bytes_per_connection",
    "peak_tasks",
    "errors",
    "client_bound",
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("server-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Two models, one short closed-loop point each plus one point the iterative server cannot
/// reach, and a small idle sweep: every report file is written, every row has every key, the
/// measured rows have requests, CPU and memory, and the unreachable rows say why.
#[test]
fn tiny_compare_writes_a_sane_report() {
    let out = scratch("compare");
    let status = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args(["compare", "iterative", "thread-per-conn"])
        .args(["--connections", "1,2", "--churn", "0", "--idle", "4"])
        .args(["--duration", "1s", "--warmup", "200ms"])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run compare");
    assert!(status.success(), "compare exited with {status}");

    for file in [
        "results.json",
        "results.csv",
        "run.json",
        "index.md",
        "index.html",
        "throughput_echo_64.svg",
        "p99_echo_64.svg",
    ] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    for file in ["cpu_echo_64.svg", "memory_echo_4.svg"] {
        let svg = std::fs::read_to_string(out.join(file)).expect("read the plot");
        assert!(
            svg.contains("<svg") && svg.contains("thread-per-conn"),
            "{file} is not a plot of the models"
        );
    }

    let text = std::fs::read_to_string(out.join("results.json")).expect("read results.json");
    let rows: Vec<Value> = serde_json::from_str(&text).expect("results.json is a JSON array");
    // 2 models x (2 loaded points + 1 idle point).
    assert_eq!(rows.len(), 6, "{text}");
    for row in &rows {
        for key in KEYS {
            assert!(row.get(key).is_some(), "row lacks {key}: {row}");
        }
    }
    let find = |model: &str, mode: &str, conns: u64| {
        rows.iter()
            .find(|r| r["model"] == model && r["mode"] == mode && r["connections"] == conns)
            .unwrap_or_else(|| panic!("no {model} {mode} x {conns} row"))
    };
    for (model, conns) in [
        ("iterative", 1),
        ("thread-per-conn", 1),
        ("thread-per-conn", 2),
    ] {
        let r = find(model, "closed", conns);
        assert_eq!(r["status"], "ok", "{r}");
        assert!(r["requests"].as_u64().expect("requests") > 0, "{r}");
        assert!(
            r["requests_per_sec"].as_f64().expect("requests/s") > 0.0,
            "{r}"
        );
        assert!(r["cpu_us_per_request"].as_f64().expect("cpu") > 0.0, "{r}");
        assert!(r["pss_peak_bytes"].as_u64().expect("pss") > 0, "{r}");
        assert!(
            r["rss_peak_bytes"].as_u64().expect("rss")
                >= r["pss_peak_bytes"].as_u64().expect("pss"),
            "{r}"
        );
        let l = &r["latency_us"];
        assert!(
            l["p50"].as_f64().expect("p50") > 0.0 && l["p50"].as_f64() <= l["p99"].as_f64(),
            "{r}"
        );
        assert!(
            r["peak_tasks"]["processes"].as_u64().expect("processes") >= 1,
            "{r}"
        );
    }
    // A thread per connection: at least one thread per client besides the acceptor.
    let two = find("thread-per-conn", "closed", 2);
    assert!(
        two["peak_tasks"]["threads"].as_u64().expect("threads") >= 3,
        "{two}"
    );

    let refused = find("iterative", "closed", 2);
    assert_eq!(refused["status"], "unreachable");
    assert!(
        refused["note"]
            .as_str()
            .expect("note")
            .contains("one client at a time"),
        "{refused}"
    );
    assert!(refused["requests_per_sec"].is_null());

    let idle = find("thread-per-conn", "idle", 4);
    assert_eq!(idle["status"], "ok", "{idle}");
    assert!(idle["bytes_per_connection"].as_f64().is_some(), "{idle}");
    assert!(
        idle["peak_tasks"]["threads"].as_u64().expect("threads") >= 5,
        "{idle}"
    );

    let md = std::fs::read_to_string(out.join("index.md")).expect("read index.md");
    assert!(md.contains("unreachable: serves one client at a time"));
    assert!(md.contains("![") && md.contains("throughput_echo_64.svg"));
    let _ = std::fs::remove_dir_all(&out);
}

/// An unknown model is a usage error naming the models, and nothing is written.
#[test]
fn unknown_model_is_a_usage_error() {
    let out = scratch("compare-bad");
    let result = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args(["compare", "no-such-model", "--out"])
        .arg(&out)
        .output()
        .expect("run compare");
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("iterative"));
    assert!(!out.exists());
}
