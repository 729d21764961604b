//! `server-models check` run as a user runs it — the binary, a command template, the table and
//! the JSON, the exit code — against one of the models, where every case that applies passes,
//! and against two servers written here to fail in known ways, where exactly the right cases
//! fail, each with its reason.
//!
//! The broken servers are this test binary itself, started by `check` through the template
//! `env CHECK_FIXTURE=KIND <this binary> {port}`: with that variable set, `main` serves instead
//! of testing. Each is a thread-per-connection echo server of a dozen lines:
//! - `drop-third` drops every third byte it echoes;
//! - `never-close` echoes correctly but never closes a connection (not at the peer's EOF, not
//!   after a reset), and keeps every socket it accepted.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const FIXTURE: &str = "CHECK_FIXTURE";

fn main() {
    if let Ok(kind) = std::env::var(FIXTURE) {
        serve_fixture(&kind);
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("check_passes_every_case_against_a_model", against_a_model),
        Trial::test(
            "check_fails_a_server_that_drops_bytes",
            against_a_server_that_drops_bytes,
        ),
        Trial::test(
            "check_fails_a_server_that_never_closes",
            against_a_server_that_never_closes,
        ),
        Trial::test("check_usage_errors_exit_2", usage_errors),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// One of the broken servers, on 127.0.0.1:PORT (the first argument). Runs until killed: the
/// `check` that started it stops its process group.
fn serve_fixture(kind: &str) {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: CHECK_FIXTURE=KIND check-test PORT");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the fixture's port");
    let kept: &'static Mutex<Vec<TcpStream>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    let drop_third = kind == "drop-third";
    loop {
        let Ok((stream, _)) = listener.accept() else {
            // Out of descriptors: wait rather than spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        std::thread::spawn(move || {
            let mut s = &stream;
            let (mut buf, mut count) = ([0u8; 16 * 1024], 0usize);
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    count += 1;
                    if !(drop_third && count % 3 == 0) {
                        out.push(b);
                    }
                }
                if s.write_all(&out).is_err() {
                    break;
                }
            }
            if !drop_third {
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(stream);
            }
        });
    }
}

fn server_models(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_server-models"))
        .args(args)
        .output()
        .expect("run server-models")
}

/// The `check --json` report, with the exit code and stderr for messages.
fn check_json(args: &[&str]) -> Result<(Value, Option<i32>), Failed> {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let out = server_models(&all);
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "check printed no JSON ({e}); stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((report, out.status.code()))
}

/// The names of the cases with `verdict`.
fn cases_with(report: &Value, verdict: &str) -> BTreeSet<String> {
    report["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["verdict"] == verdict)
        .filter_map(|c| c["case"].as_str().map(String::from))
        .collect()
}

fn reason(report: &Value, case: &str) -> String {
    report["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["case"] == case)
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
        .to_string()
}

fn fixture_command(kind: &str) -> Result<String, Failed> {
    let me = std::env::current_exe()?;
    Ok(format!("env {FIXTURE}={kind} '{}' {{port}}", me.display()))
}

fn ensure(ok: bool, what: impl Into<String>) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

/// Against epoll-lt, through the same command template a user would write: every case that
/// applies passes and the exit code is 0; the table ends with the closing line; the cases
/// that need what a bare command does not say (SIGTERM, idle timeout) are skipped with why.
fn against_a_model() -> Result<(), Failed> {
    let bin = env!("CARGO_BIN_EXE_server-models");
    let cmd = format!("'{bin}' serve epoll-lt --addr 127.0.0.1:{{port}}");
    let cases = "small_messages,large_message_while_sending,half_close,two_hundred_clients,\
                     clients_at_once,reset_mid_stream,slow_reader,idle_connections,sigterm,\
                     fifteen_hundred_clients,idle_timeout,worker_killed,churn";
    let out = server_models(&["check", "--cmd", &cmd, "--cases", cases, "--jobs", "3"]);
    let table = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.code() == Some(0),
        format!("exit {:?}; table:\n{table}", out.status.code()),
    )?;
    ensure(
        table.lines().last() == Some("10 passed, 0 failed, 3 skipped"),
        format!("closing line; table:\n{table}"),
    )?;
    for line in ["sigterm ", "idle_timeout ", "worker_killed "] {
        let row = table.lines().find(|l| l.starts_with(line)).unwrap_or("");
        ensure(row.contains("skip"), format!("{line}not skipped: {row:?}"))?;
    }
    ensure(
        table.contains("--signals") && table.contains("--idle-timeout"),
        format!("the skips do not say which flag would run them:\n{table}"),
    )?;

    // With what is known said, those run too; --model knows it from the registry.
    let (report, code) = check_json(&[
        "--model",
        "epoll-lt",
        "--cases",
        "sigterm,idle_timeout,sigterm_busy",
        "--jobs",
        "3",
    ])?;
    ensure(
        code == Some(0) && cases_with(&report, "passed").len() == 3,
        format!("--model epoll-lt: exit {code:?}, {report}"),
    )
}

/// Against a server that drops every third byte: every case that checks an echo fails, with
/// a reason naming the bytes; the exit code is 1.
fn against_a_server_that_drops_bytes() -> Result<(), Failed> {
    let cmd = fixture_command("drop-third")?;
    let (report, code) = check_json(&[
        "--cmd",
        &cmd,
        "--cases",
        "small_messages,half_close,two_hundred_clients,sigstop",
        "--timeout",
        "1s",
        "--jobs",
        "4",
    ])?;
    ensure(code == Some(1), format!("exit {code:?}: {report}"))?;
    let failed = cases_with(&report, "failed");
    ensure(
        failed.len() == 4 && report["failed"] == 4 && report["passed"] == 0,
        format!("want all four failed: {report}"),
    )?;
    let small = reason(&report, "small_messages");
    ensure(
        small.contains("of 7 echoed bytes"),
        format!("small_messages reason: {small:?}"),
    )?;
    let stop = reason(&report, "sigstop");
    ensure(
        stop.contains("then a wrong byte"),
        format!("sigstop reason: {stop:?}"),
    )
}

/// Against a server that never closes: exactly the cases that need a close fail — the
/// half-close (no EOF), the descriptors (it runs out, and churn leaves them all open), the
/// stopped server (the echo never ends) — and everything else passes or is skipped for what
/// a bare command does not say.
fn against_a_server_that_never_closes() -> Result<(), Failed> {
    let cmd = fixture_command("never-close")?;
    let (report, code) = check_json(&["--cmd", &cmd, "--timeout", "2s", "--jobs", "4"])?;
    ensure(code == Some(1), format!("exit {code:?}: {report}"))?;
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let failed = cases_with(&report, "failed");
    ensure(
        failed == set(&["churn", "half_close", "out_of_descriptors", "sigstop"]),
        format!("failed: {failed:?}; report: {report}"),
    )?;
    let skipped = cases_with(&report, "skipped");
    ensure(
        skipped
            == set(&[
                "fin_at_shutdown",
                "http_body_limit",
                "http_connection_close",
                "http_malformed",
                "http_oversized_headers",
                "http_pipelining",
                "idle_timeout",
                "non_readers_held_to_cap",
                "sigstop_idle_timeout",
                "sigterm",
                "sigterm_busy",
                "slowloris",
                "worker_killed",
            ]),
        format!("skipped: {skipped:?}"),
    )?;
    let churn = reason(&report, "churn");
    ensure(
        churn.contains("left behind"),
        format!("churn reason: {churn:?}"),
    )?;
    let passed = cases_with(&report, "passed");
    ensure(
        passed.contains("small_messages") && passed.contains("fifteen_hundred_clients"),
        format!("passed: {passed:?}"),
    )
}

/// A template without `{port}`, an unknown case, and a missing server are usage errors
/// (exit 2) that say what is wrong.
fn usage_errors() -> Result<(), Failed> {
    for (args, says) in [
        (&["check", "--cmd", "./server 8080"][..], "{port}"),
        (
            &["check", "--model", "epoll-lt", "--cases", "no_such_case"][..],
            "unknown case",
        ),
        (&["check", "--model", "no-such-model"][..], "unknown model"),
        (
            &["check", "--model", "epoll-lt", "--signals"][..],
            "known from the registry",
        ),
    ] {
        let out = server_models(args);
        let err = String::from_utf8_lossy(&out.stderr);
        ensure(
            out.status.code() == Some(2) && err.contains(says),
            format!("{args:?}: exit {:?}, stderr {err:?}", out.status.code()),
        )?;
    }
    let out = server_models(&["check"]);
    ensure(out.status.code() == Some(2), "check without a server")?;
    // A command that exits at once is a failure of every case, with its stderr.
    let (report, code) = check_json(&[
        "--cmd",
        "sh -c 'echo no such thing >&2; exit 3' {port}",
        "--cases",
        "small_messages",
    ])?;
    let why = reason(&report, "small_messages");
    ensure(
        code == Some(1) && why.contains("no such thing") && why.contains("did not start"),
        format!("exit {code:?}, reason {why:?}"),
    )
}
