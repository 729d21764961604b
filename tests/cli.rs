//! The command line's promises: the model list, and clear errors with the right exit codes.

mod common;

use std::process::Command;

use server_models::server::protocol::Protocol;

fn server_models(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args(args)
        .output()
        .expect("run server-models")
}

/// `list` prints every registered model with its summary, in registry (teaching) order.
#[test]
fn list_prints_every_model_in_order() {
    let out = server_models(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed, server_models::server::model::names());
    for m in server_models::variants::all() {
        assert!(
            text.contains(m.summary()),
            "summary of {} missing",
            m.name()
        );
    }
}

/// An unknown model is a usage error (exit 2) that lists the models.
#[test]
fn unknown_model_lists_the_models() {
    let out = server_models(&["serve", "no-such-model", "--addr", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown model 'no-such-model'"), "{err}");
    for name in server_models::server::model::names() {
        assert!(err.contains(name), "{name} not listed in: {err}");
    }
}

/// An address in use fails with exit 1 and a message that names TIME_WAIT and SO_REUSEADDR.
#[test]
fn address_in_use_is_explained() {
    let server = common::start("iterative", Protocol::Echo, &[]).expect("first server");
    let addr = server.addr().to_string();
    let out = server_models(&["serve", "iterative", "--addr", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use") && err.contains("TIME_WAIT") && err.contains("SO_REUSEADDR"),
        "{err}"
    );
}

/// Without `--workers`, `serve` gives the pools the size `compare` gives them (100), so that a
/// couple of idle clients do not block everyone, and says so in its listening line; other
/// models keep one worker per CPU they may use.
#[test]
fn serve_gives_the_pools_compares_size() {
    let pool = common::start("thread-pool", Protocol::Echo, &[]).expect("thread-pool starts");
    assert!(
        pool.log_tail().contains("workers 100)"),
        "{}",
        pool.log_tail()
    );
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let lt = common::start("epoll-reuseport", Protocol::Echo, &[]).expect("starts");
    assert!(
        lt.log_tail().contains(&format!("workers {cpus})")),
        "{}",
        lt.log_tail()
    );
}

/// `load` against a port nobody listens on completes no request: it still prints its report
/// (the refusals counted), and exits 1.
#[test]
fn load_with_nothing_served_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = server_models(&[
        "load",
        "--addr",
        &addr,
        "--connections",
        "2",
        "--duration",
        "300ms",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the report is still printed");
    assert_eq!(report["requests"], 0);
    assert!(
        report["errors"]["refused"].as_u64().expect("refused") > 0,
        "{report}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no request completed"));
}
