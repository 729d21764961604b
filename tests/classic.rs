//! `compare --preset classic` end to end: a tiny version of Stevens' UNP ch. 30 table (three
//! designs, prefork under two accept locks, a short window) against the real binary. The table
//! has its shape, the iterative row is the zero of the process-control column, every other row
//! is its CPU less the iterative one, and forking per connection costs more CPU than handing a
//! connection to a preforked child. No figure is compared with a threshold of speed.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("server-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn f64_of(row: &Value, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {row}"))
}

/// Three designs, prefork with no lock and with the book's fcntl lock, a 500 ms window each.
#[test]
fn tiny_classic_table() {
    let out = scratch("classic");
    let result = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args(["compare", "--preset", "classic"])
        .args(["iterative", "fork-per-conn", "prefork"])
        .args(["--accept-lock", "none,fcntl"])
        .args(["--duration", "500ms", "--warmup", "200ms"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "compare exited with {}: {}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        stdout.contains("Process-control CPU per connection") && stdout.contains("prefork (fcntl)"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(out.join("results.json")).expect("read results.json");
    let rows: Vec<Value> = serde_json::from_str(&text).expect("results.json is a JSON array");
    // The preset runs churn only: one row per design, prefork once per lock.
    let labels: Vec<(String, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap_or("").to_string(),
                r["accept_lock"].clone(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            ("iterative".to_string(), Value::Null),
            ("fork-per-conn".to_string(), Value::Null),
            ("prefork".to_string(), Value::from("none")),
            ("prefork".to_string(), Value::from("fcntl")),
        ],
        "{text}"
    );
    for r in &rows {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["mode"], "churn", "{r}");
        assert_eq!(r["size"], 4000, "{r}");
        assert_eq!(r["connections"], 5, "{r}");
        assert!(r["requests"].as_u64().expect("requests") > 0, "{r}");
        assert_eq!(r["errors"]["mismatch"], 0, "{r}");
        assert!(f64_of(r, "cpu_us_per_request") > 0.0, "{r}");
    }
    let (iterative, fork, prefork) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(f64_of(iterative, "process_control_us_per_connection"), 0.0);
    let base = f64_of(iterative, "cpu_us_per_request");
    for r in &rows[1..] {
        let diff = f64_of(r, "process_control_us_per_connection");
        assert!(
            (diff - (f64_of(r, "cpu_us_per_request") - base)).abs() < 1e-9,
            "{r}"
        );
    }
    // A fork, an exit and a reap per connection cost more than a preforked child's accept.
    assert!(
        f64_of(fork, "cpu_us_per_request") > f64_of(prefork, "cpu_us_per_request"),
        "fork-per-conn {fork}\nprefork {prefork}"
    );
    // The pools hold the book's 15 children, and each served from a process of its own.
    for r in &rows[2..] {
        assert_eq!(r["workers"], 15, "{r}");
        assert!(
            r["peak_tasks"]["processes"].as_u64().expect("processes") >= 16,
            "{r}"
        );
    }

    let md = std::fs::read_to_string(out.join("index.md")).expect("read index.md");
    assert!(
        md.contains("## Process-control CPU per connection")
            && md.contains("| design | workers |")
            && md.contains("| prefork (fcntl) | 15 |"),
        "{md}"
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("read results.csv");
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.contains("process_control_us_per_connection"))
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// An accept lock that does not exist is a usage error, and nothing is written.
#[test]
fn unknown_accept_lock_is_a_usage_error() {
    let out = scratch("classic-bad");
    let result = Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args([
            "compare",
            "--preset",
            "classic",
            "--accept-lock",
            "spin",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run compare");
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("fcntl"));
    assert!(!out.exists());
}
