//! What the integration tests share: starting a `serve` process (the library's
//! [`ServerProcess`], which stops it and everything it forked when dropped), looking at its
//! process tree, and loopback clients with bounded waits.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use server_models::harness::measure::procfs;
pub use server_models::harness::spawn::ServerProcess;
use server_models::harness::spawn::serve_command;
use server_models::server::protocol::Protocol;

/// How long any single client wait may take before the test fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

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

/// A loopback client with timeouts, so a broken server fails the test instead of hanging it.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Writes `msg` and reads back exactly as many bytes.
pub fn echo_exchange(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// Reads one HTTP response (head and Content-Length body); returns (status, head, body).
pub fn read_http_response(s: &mut TcpStream) -> io::Result<(u16, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF inside a response head: {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    Ok((status, head, body))
}

/// Reads until EOF; `Ok(bytes)` if the peer closed (FIN or RST after the bytes).
pub fn read_to_close(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(all),
            Err(e) => return Err(e),
        }
    }
}

/// Deterministic bytes that make misordering and loss visible.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
