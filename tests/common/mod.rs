//! What the integration tests share: starting a `serve` process (the library's
//! [`ServerProcess`], which stops it and everything it forked when dropped), looking at its
//! process tree, and the loopback clients of the conformance cases (`harness::check::client`).
#![allow(dead_code)]

use std::io;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
#[allow(unused_imports)]
pub use server_models::harness::check::client::{connect, echo_exchange, pattern};
use server_models::harness::measure::procfs;
pub use server_models::harness::spawn::ServerProcess;
use server_models::harness::spawn::serve_command;
use server_models::server::protocol::Protocol;

/// Starts `serve MODEL --addr 127.0.0.1:0 --protocol PROTOCOL` plus `extra` arguments and
/// waits for its listening line.
pub fn start(model: &str, protocol: Protocol, extra: &[&str]) -> io::Result<ServerProcess> {
    start_with(model, protocol, extra, |_| {})
}

/// As [`start`], letting the caller adjust the command (resource limits).
pub fn start_with(
    model: &str,
    protocol: Protocol,
    extra: &[&str],
    adjust: impl FnOnce(&mut Command),
) -> io::Result<ServerProcess> {
    let bin = Path::new(env!("CARGO_BIN_EXE_server-models"));
    let mut cmd = serve_command(bin, model, protocol, extra);
    adjust(&mut cmd);
    ServerProcess::start_command(cmd)
}

/// The server and every descendant (zombies included), parents first.
pub fn tree(server: &ServerProcess) -> io::Result<Vec<i32>> {
    procfs::tree(server.pid() as i32)
}

/// Sends `sig` to `pid`, a process this test started (directly or through the server).
pub fn signal(pid: i32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    procfs::stat(pid).is_ok_and(|s| s.state != 'Z')
}

/// Whether `pid` is a zombie (exited, not yet reaped).
pub fn zombie(pid: i32) -> bool {
    procfs::stat(pid).is_ok_and(|s| s.state == 'Z')
}
