//! A server started as a child process — `server-models serve MODEL --addr 127.0.0.1:0` — with
//! the address it bound read from its `listening on` line, stopped and reaped when dropped.
//!
//! Tests, benches and `compare` all run servers this way: in a process of their own, so that a
//! forking model never forks a multi-threaded harness and the server's CPU and memory can be
//! measured apart from the client's. `check` runs any other server the same way
//! ([`ServerProcess::start_on`]): told its port, ready once a connection succeeds.
//!
//! The server runs in a process group of its own (its pid is the group id). Stopping sends
//! SIGTERM and waits; if the server has not exited within the grace period, or left children
//! behind, the whole group gets SIGKILL — only while the leader is unreaped, so the group id
//! cannot have been reused by a process this one did not start. [`ServerProcess::terminate`]
//! is the first half alone, for a test that checks the server's children went by themselves.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::server::protocol::Protocol;

/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to shut down after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a stopped server's orphaned children may take to be gone.
pub const GROUP_GONE: Duration = Duration::from_secs(30);

/// Lines of the server's stderr kept for error messages.
const KEEP_LINES: usize = 50;

/// A running server process; dropping it stops and reaps it (and anything it forked).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    status: Option<ExitStatus>,
}

/// What the stderr reader keeps: the last lines, and how many there were in all.
#[derive(Debug, Default)]
struct Log {
    tail: Vec<String>,
    lines: usize,
    /// The server's stderr reached its end: every line it wrote is in.
    closed: bool,
}

impl ServerProcess {
    /// Starts `bin serve MODEL --addr 127.0.0.1:0 --protocol P EXTRA...` and waits for it to
    /// say where it listens.
    pub fn start(
        bin: &Path,
        model: &str,
        protocol: Protocol,
        extra_args: &[&str],
    ) -> io::Result<ServerProcess> {
        ServerProcess::start_command(serve_command(bin, model, protocol, extra_args))
    }

    /// Starts any command that prints `... listening on ADDR ...` on stderr (a `serve` wrapped
    /// in `taskset`, say). Stdin and stdout are null; stderr is read by a thread that keeps the
    /// last lines, so a chatty server never blocks on a full pipe.
    pub fn start_command(cmd: Command) -> io::Result<ServerProcess> {
        let (mut server, listening) = ServerProcess::spawn(cmd)?;
        match listening.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(e) => {
                let why = match e {
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("no 'listening on' line within {START_TIMEOUT:?}")
                    }
                    mpsc::RecvTimeoutError::Disconnected => {
                        "it exited before listening".to_string()
                    }
                };
                Err(server.failed_to_start(&why))
            }
        }
    }

    /// Starts a command that was told to listen on `addr` (any server: nginx, a C program, a
    /// student's own) and waits until a connection to `addr` succeeds. The probe connection is
    /// closed at once; a server that exits first, or is not accepting within
    /// [`START_TIMEOUT`], is an error carrying its stderr.
    pub fn start_on(cmd: Command, addr: SocketAddr) -> io::Result<ServerProcess> {
        let (mut server, _) = ServerProcess::spawn(cmd)?;
        server.addr = addr;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if server.has_exited() {
                return Err(server.failed_to_start("it exited before accepting connections"));
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let why =
                    format!("nothing accepted connections on {addr} within {START_TIMEOUT:?}");
                return Err(server.failed_to_start(&why));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Spawns `cmd` in a process group of its own, its stderr read by a thread that keeps the
    /// last lines and sends the address of the first `listening on` line.
    fn spawn(mut cmd: Command) -> io::Result<(ServerProcess, mpsc::Receiver<SocketAddr>)> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("the server's stderr was not captured"))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let (tx, rx) = mpsc::channel();
        let keep = Arc::clone(&log);
        let server = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            status: None,
        };
        std::thread::Builder::new()
            .name("server-stderr".into())
            .spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let addr = listening_addr(&line);
                    // Into the tail first: whoever is told the address may read the tail at
                    // once, and must find the listening line in it.
                    {
                        let mut keep = keep.lock().unwrap_or_else(|p| p.into_inner());
                        if keep.tail.len() == KEEP_LINES {
                            keep.tail.remove(0);
                        }
                        keep.tail.push(line);
                        keep.lines += 1;
                    }
                    if let Some(addr) = addr
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(addr);
                    }
                }
                keep.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
            })?;
        Ok((server, rx))
    }

    /// Stops and reaps a server that did not come up, and says why with its stderr.
    fn failed_to_start(&mut self, why: &str) -> io::Error {
        let _ = self.stop();
        // The reader thread may still be taking the last lines off the pipe.
        std::thread::sleep(Duration::from_millis(20));
        io::Error::other(format!(
            "server did not start: {why}; its stderr:\n{}",
            self.log_tail()
        ))
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server wrote to stderr.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tail
            .join("\n")
    }

    /// Waits up to `within` until the server's stderr is closed (it and everything it forked
    /// have exited), so that its last lines are in the tail; says whether it was.
    pub fn wait_log_closed(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log.lock().unwrap_or_else(|p| p.into_inner()).closed {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// How many lines the server has written to stderr so far (the tail keeps only the last).
    pub fn log_lines(&self) -> usize {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).lines
    }

    /// Whether the server has exited, without reaping it (it stays a zombie until
    /// [`stop`](Self::stop), so its pid and group id stay its own).
    pub fn has_exited(&self) -> bool {
        self.status.is_some() || !matches!(self.peek_exit(), Ok(WaitStatus::StillAlive))
    }

    /// The signal that ended the server, if one did (it stays unreaped, as with
    /// [`has_exited`](Self::has_exited)).
    pub fn killed_by(&self) -> Option<Signal> {
        if let Some(status) = self.status {
            return std::os::unix::process::ExitStatusExt::signal(&status)
                .and_then(|n| Signal::try_from(n).ok());
        }
        match self.peek_exit() {
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(sig),
            _ => None,
        }
    }

    /// Sends SIGTERM and waits up to `within` for the server to exit by itself, without
    /// reaping it and without touching anything it forked — so that a caller can check that
    /// its children went too. Returns its exit code; `None` if it was killed by a signal or is
    /// still running (then [`stop`](Self::stop), or dropping it, kills it).
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        if let Some(status) = self.status {
            return status.code();
        }
        let _ = signal::kill(self.nix_pid(), Signal::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            match self.peek_exit() {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(WaitStatus::Exited(_, code)) => return Some(code),
                _ => return None,
            }
        }
    }

    /// Stops the server: SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL to its whole process
    /// group (stragglers it forked included); reaps it and returns how it exited.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        // `terminate` waits without reaping: while the leader is a zombie its pid, and so the
        // group id, cannot be reused, and killing the group reaches only what it started.
        self.terminate(STOP_GRACE);
        let _ = signal::killpg(self.nix_pid(), Signal::SIGKILL);
        let status = self.child.wait()?;
        self.status = Some(status);
        self.wait_for_group();
        Ok(status)
    }

    /// Sends `sig` to the server's whole process group — the server and everything it forked
    /// — as SIGSTOP and SIGCONT need to freeze a preforked server entire. Only while the
    /// leader is unreaped (the group id is then still this server's); after
    /// [`stop`](Self::stop) it does nothing.
    pub fn signal_group(&self, sig: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        signal::killpg(self.nix_pid(), sig)?;
        Ok(())
    }

    /// Waits, up to [`GROUP_GONE`], until no process of the server's group is left: children
    /// the SIGKILL above orphaned are reaped by init, and ten thousand of them take seconds to
    /// go — seconds in which a measurement started next would share the CPUs with their exit.
    /// Signal 0 only asks whether the group exists. While any member lives (or is an unreaped
    /// zombie) the group id is held and cannot be given to a new process, so the probe reaches
    /// only what this server started; once it answers ESRCH it is not sent again.
    fn wait_for_group(&self) {
        let deadline = Instant::now() + GROUP_GONE;
        while signal::killpg(self.nix_pid(), None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// How the server exited, if it has, leaving it unreaped (`WNOWAIT`).
    fn peek_exit(&self) -> nix::Result<WaitStatus> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        waitid(Id::Pid(self.nix_pid()), flags)
    }
}

/// The command `bin serve MODEL --addr 127.0.0.1:0 --protocol P EXTRA...`, for a caller that
/// adjusts it (a resource limit, say) before [`ServerProcess::start_command`].
pub fn serve_command(bin: &Path, model: &str, protocol: Protocol, extra_args: &[&str]) -> Command {
    serve_command_on(bin, model, protocol, "127.0.0.1:0", extra_args)
}

/// The command `bin serve MODEL --addr ADDR --protocol P EXTRA...`: a server listening on
/// `addr` (`0.0.0.0:0`: every interface, for clients on other hosts).
pub fn serve_command_on(
    bin: &Path,
    model: &str,
    protocol: Protocol,
    addr: &str,
    extra_args: &[&str],
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        model,
        "--addr",
        addr,
        "--protocol",
        protocol.name(),
    ])
    .args(extra_args);
    cmd
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The address in a `... listening on ADDR ...` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("listening on ")?.1;
    rest.split_whitespace()
        .next()?
        .trim_end_matches([',', ';'])
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address is read from the serve command's line, and from nothing else.
    #[test]
    fn reads_the_listening_line() {
        let line =
            "server-models[42]: iterative listening on 127.0.0.1:38211 (protocol echo, workers 2)";
        assert_eq!(
            listening_addr(line),
            Some("127.0.0.1:38211".parse().expect("address"))
        );
        assert_eq!(
            listening_addr("listening on [::1]:80"),
            Some("[::1]:80".parse().expect("address"))
        );
        assert_eq!(listening_addr("server-models[42]: shut down cleanly"), None);
        assert_eq!(listening_addr("listening on nowhere"), None);
    }

    /// A command that never listens is reported with its stderr, and reaped.
    #[test]
    fn a_server_that_exits_early_is_an_error_with_its_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'bind: address in use' >&2; exit 3"]);
        let err = ServerProcess::start_command(cmd).expect_err("must not start");
        assert!(err.to_string().contains("address in use"), "{err}");
    }
}
