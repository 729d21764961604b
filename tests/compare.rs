//! `compare` end to end: a tiny sweep against the real binary writes a report whose files exist,
//! whose results.json carries every figure the design names, and whose figures are sane.
//! No figure is compared with a threshold of speed: the machine may be busy.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Every key each row of results.json must have.
const KEYS: [&str; 16] = [
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
    "pipeline",
    "idle_beside",
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
        .args([
            "--connections",
            "1,2",
            "--churn",
            "0",
            "--idle",
            "4",
            "--idle-beside",
            "none",
        ])
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

fn compare(args: &[&str], out: &std::path::Path) -> Vec<Value> {
    let result = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .arg("compare")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run compare");
    assert!(
        result.status.success(),
        "compare exited with {}: {}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    let text = std::fs::read_to_string(out.join("results.json")).expect("read results.json");
    serde_json::from_str(&text).expect("results.json is a JSON array")
}

/// Busy beside idle on small K: a row per model and K with `idle_beside` set, each measured row
/// set against its own K = 0 (which reads 1.0), select refused past FD_SETSIZE with the reason,
/// a thread per idle connection visible in thread-per-conn's task count, and the two plots.
#[test]
fn busy_beside_idle_sweep() {
    let out = scratch("beside");
    let rows = compare(
        &[
            "poll",
            "select",
            "thread-per-conn",
            "--idle-beside",
            "0,6,1100",
        ]
        .into_iter()
        .chain([
            "--connections",
            "2",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
        ])
        .collect::<Vec<_>>(),
        &out,
    );
    assert_eq!(rows.len(), 9, "3 models x 3 K, and no other sweep");
    let find = |model: &str, k: u64| {
        rows.iter()
            .find(|r| r["model"] == model && r["idle_beside"] == k)
            .unwrap_or_else(|| panic!("no {model} row at {k} idle"))
    };
    for model in ["poll", "select", "thread-per-conn"] {
        for k in [0, 6] {
            let r = find(model, k);
            assert_eq!(r["status"], "ok", "{r}");
            assert_eq!(r["connections"], 2, "{r}");
            assert_eq!(r["mode"], "closed", "{r}");
            assert!(r["cpu_us_per_request"].as_f64().expect("cpu") > 0.0, "{r}");
            let cpu = r["vs_no_idle"]["cpu_us_per_request"]
                .as_f64()
                .expect("ratio");
            if k == 0 {
                assert_eq!(cpu, 1.0, "{r}");
            }
            assert!(r["offered_rate"].is_null() && r["pipeline"] == 1, "{r}");
        }
    }
    let select = find("select", 1100);
    assert_eq!(select["status"], "unreachable", "{select}");
    assert!(
        select["note"]
            .as_str()
            .expect("note")
            .contains("FD_SETSIZE"),
        "{select}"
    );
    let threads = |k: u64| find("thread-per-conn", k)["peak_tasks"]["threads"].as_u64();
    assert!(
        threads(6).expect("threads") >= 6 + 2,
        "a thread per connection"
    );
    assert!(
        threads(1100).expect("threads") >= 1100,
        "a thread per idle connection"
    );
    assert_eq!(find("poll", 1100)["status"], "ok");
    for file in ["cpu_beside_echo_64_c2.svg", "p99_beside_echo_64_c2.svg"] {
        let svg = std::fs::read_to_string(out.join(file)).expect("read the plot");
        assert!(svg.contains("<svg") && svg.contains("poll"), "{file}");
    }
    let md = std::fs::read_to_string(out.join("index.md")).expect("read index.md");
    assert!(
        md.contains("Busy beside idle") && md.contains("× at 1100 idle"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Offered load at two rates on one connection, with a bound no loopback run misses: the rows
/// carry their offered rate and the latency from the send, the higher rate kept is the knee,
/// and the coordinated-omission run follows: the server stopped for 100 ms, the latency from
/// the schedule showing it at p99, the latency from the send not.
#[test]
fn offered_load_and_the_stall() {
    let out = scratch("rates");
    let rows = compare(
        &[
            "epoll-lt",
            "--rates",
            "100,200",
            "--connections",
            "1",
            "--slo-p99",
            "10s",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
        &out,
    );
    assert_eq!(rows.len(), 3, "two rates and the stalled run");
    for (r, rate) in rows[..2].iter().zip([100.0, 200.0]) {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["mode"], "open");
        assert_eq!(r["offered_rate"].as_f64(), Some(rate), "{r}");
        assert!(r["latency_from_send_us"]["p99"].as_f64().is_some(), "{r}");
    }
    let knees: Vec<&Value> = rows.iter().filter(|r| r["knee"] == true).collect();
    assert_eq!(knees.len(), 1, "one knee per series");
    assert_eq!(knees[0]["offered_rate"].as_f64(), Some(200.0));
    let stalled = &rows[2];
    assert_eq!(
        stalled["server_stopped_ms"].as_f64(),
        Some(100.0),
        "{stalled}"
    );
    assert_eq!(stalled["rate"].as_f64(), Some(100.0), "half the knee");
    assert!(
        stalled["offered_rate"].is_null(),
        "not a point of the sweep"
    );
    let due = &stalled["latency_us"];
    let sent = &stalled["latency_from_send_us"];
    assert!(due["max"].as_f64().expect("max") >= 50_000.0, "{stalled}");
    assert!(
        sent["p99"].as_f64().expect("p99") < due["p99"].as_f64().expect("p99"),
        "{stalled}"
    );
    let md = std::fs::read_to_string(out.join("index.md")).expect("read index.md");
    assert!(
        md.contains("Knees") && md.contains("Coordinated omission"),
        "{md}"
    );
    assert!(out.join("p99_offered_echo_64_c1.svg").is_file());
    let _ = std::fs::remove_dir_all(&out);
}

/// `--pipeline` runs the closed loop with D requests in flight and says so in the row and the
/// section; with `--repeat 2` the row is the median of two runs, and says how far they spread.
#[test]
fn pipelined_compare() {
    let out = scratch("pipeline");
    let args = ["epoll-lt", "--connections", "2", "--pipeline", "4"];
    let rest = ["--churn", "0", "--idle", "0", "--idle-beside", "none"];
    let quick = ["--duration", "300ms", "--warmup", "100ms", "--repeat", "2"];
    let rows = compare(&[&args[..], &rest, &quick].concat(), &out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["pipeline"], 4, "{}", rows[0]);
    assert_eq!(rows[0]["status"], "ok", "{}", rows[0]);
    assert_eq!(rows[0]["runs"], 2, "{}", rows[0]);
    let spread = &rows[0]["spread"]["cpu_us_per_request"];
    let [lo, hi] = ["min", "max"].map(|k| spread[k].as_f64());
    assert!(lo.zip(hi).is_some_and(|(lo, hi)| lo <= hi), "{}", rows[0]);
    let md = std::fs::read_to_string(out.join("index.md")).expect("read index.md");
    assert!(md.contains("4 pipelined per connection"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}
