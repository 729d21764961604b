//! What the integration tests share: starting a `serve` process and reading its address,
//! stopping it and everything it forked, and loopback clients with bounded waits.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How long any single client wait may take before the test fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A `server-models serve` child process.
pub struct Server {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Every stderr line it has printed so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve MODEL --addr 127.0.0.1:0 --protocol PROTOCOL` plus `extra` arguments and
    /// waits for its listening line.
    pub fn start(model: &str, protocol: &str, extra: &[&str]) -> io::Result<Server> {
        Server::start_with(model, protocol, extra, |_| {})
    }

    /// As [`Server::start`], letting the caller adjust the command (resource limits).
    pub fn start_with(
        model: &str,
        protocol: &str,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> io::Result<Server> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_server-models"));
        cmd.args([
            "serve",
            model,
            "--addr",
            "127.0.0.1:0",
            "--protocol",
            protocol,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: "127.0.0.1:0".parse().expect("literal"),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => {
                server.addr = addr
                    .parse()
                    .map_err(|e| io::Error::other(format!("bad address {addr}: {e}")))?;
                Ok(server)
            }
            Err(_) => Err(io::Error::other(format!(
                "no listening line from `serve {model}`; stderr: {:?}",
                server.log.lock().expect("log lock")
            ))),
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// The server and every live descendant.
    pub fn tree(&self) -> Vec<u32> {
        process_tree(self.pid())
    }

    /// Sends SIGTERM and waits up to `within` for the exit; returns its code (`None`: killed by
    /// a signal or did not exit in time — then it is killed).
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    kill_tree(child.id());
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// Whether the server process has exited (and reaps it if so).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The stderr lines so far, joined.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(child.id());
            let _ = child.wait();
        }
    }
}

/// Sends `sig` to `pid`, a process this test started (directly or through the server).
pub fn signal(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
}

/// Kills `pid` and its descendants (all started by the test, through the server).
pub fn kill_tree(pid: u32) {
    let tree = process_tree(pid);
    for p in tree {
        signal(p, Signal::SIGKILL);
    }
}

/// `pid` followed by its live descendants, found through the parent pid in /proc/*/stat.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse().ok())) {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree.retain(|&p| alive(p));
    tree
}

/// The fields of /proc/PID/stat after the command name: state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
}

/// Whether `pid` is a zombie (exited, not yet reaped).
pub fn zombie(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"))
}

/// User+system CPU seconds of the server tree, reaped children included.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    process_tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            // utime, stime, cutime, cstime are fields 14..17 of stat; here indices 11..14.
            let at = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            (at(11) + at(12) + at(13) + at(14)) / tick
        })
        .sum()
}

/// Summed proportional set size of the server tree, in bytes.
pub fn tree_pss_bytes(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .sum()
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
