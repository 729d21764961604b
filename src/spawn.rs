//! Starting `server-models serve` as a child process, learning its address from its listening
//! line, and stopping it — with everything it forked — when done.
//!
//! The server runs in a process group of its own, so that if it does not stop on SIGTERM the
//! whole group (the server and any child it forked) can be killed without touching anything
//! else.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How many of the server's last stderr lines are kept, to say why it failed.
const LOG_LINES: usize = 20;

/// A `serve` command for this executable: `serve MODEL --addr 127.0.0.1:0 --protocol P`, to
/// which the caller adds options (`--workers`) before [`Server::spawn`].
pub fn serve_command(model: &str, protocol: &str) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args([
        "serve",
        model,
        "--addr",
        "127.0.0.1:0",
        "--protocol",
        protocol,
    ]);
    Ok(command)
}

/// A running server process.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    listening: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Spawns `command` (a `serve` command line) with stderr piped, and waits up to `timeout`
    /// for the line `... listening on ADDR ...`. The server's later stderr lines are kept (the
    /// last few), so that a failure can say what the server said.
    pub fn spawn(mut command: Command, timeout: Duration) -> io::Result<Server> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn()?;
        let Some(stderr) = child.stderr.take() else {
            return Err(io::Error::other("the server's stderr was not piped"));
        };
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        // Drains stderr for the server's whole life: a server blocked writing to a full pipe
        // (an EMFILE line) would stall the measurement.
        thread::Builder::new()
            .name("server-stderr".into())
            .spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("listening on ")
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(line.clone());
                    }
                    let Ok(mut log) = sink.lock() else { break };
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            })?;
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            listening: String::new(),
            log,
        };
        match rx.recv_timeout(timeout) {
            Ok(line) => {
                server.addr = parse_listening_addr(&line).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("no address in the listening line: {line}"),
                    )
                })?;
                server.listening = line;
                Ok(server)
            }
            Err(_) => {
                // The server exited, or said nothing in time: stop it and report what it said.
                let status = server.stop(Duration::from_millis(500)).ok();
                let said = server.log_tail().join(" / ");
                Err(io::Error::other(match status {
                    Some(s) => format!("the server exited ({s}) before listening: {said}"),
                    None => format!("the server did not listen within {timeout:?}: {said}"),
                }))
            }
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's pid: the root of its process tree.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The line in which the server announced its address.
    pub fn listening_line(&self) -> &str {
        &self.listening
    }

    /// The last lines the server printed to stderr.
    pub fn log_tail(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The server's exit status if it has exited, without waiting.
    pub fn try_exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Asks the server to stop (SIGTERM) and waits up to `grace` for it to exit; then kills its
    /// whole process group and reaps it.
    pub fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(self.pid());
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = killpg(pid, Signal::SIGKILL);
        self.child.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(2));
        // Children the server forked and failed to stop share its process group.
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
    }
}

/// The address in a line `... listening on ADDR ...`.
pub fn parse_listening_addr(line: &str) -> Option<SocketAddr> {
    line.split("listening on ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address is the word after `listening on`.
    #[test]
    fn address_from_the_listening_line() {
        let line =
            "server-models[12]: epoll listening on 127.0.0.1:4242 (protocol echo, workers 1)";
        assert_eq!(
            parse_listening_addr(line),
            Some("127.0.0.1:4242".parse().expect("literal"))
        );
        assert_eq!(parse_listening_addr("no address here"), None);
    }
}
