//! A child process a lab forks and drives step by step, for the labs about what two processes
//! holding one socket see (`fork-close`, `accept-reset`) and about signals (`sigpipe`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::PollFlags;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::wait_for;

/// Fails unless this process has exactly one thread: the labs that fork need that.
pub fn ensure_single_threaded() -> io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(str::trim);
    if threads == Some("1") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "this lab forks, so it must run in a single-threaded process; this one has {} \
             threads (run it as `server-models lab NAME`)",
            threads.unwrap_or("?")
        )))
    }
}

/// A child process a lab forks, driven through two pipes: the parent sends a one-byte order,
/// the child carries it out and answers with one byte. The waits on both sides are bounded or
/// end when the other side goes away, and a child not reaped by [`Forked::wait`] is killed and
/// reaped when the handle drops.
#[derive(Debug)]
pub struct Forked {
    pid: Pid,
    orders: Option<File>,
    answers: File,
    reaped: bool,
}

/// The child's end of the pipes.
#[derive(Debug)]
pub struct Orders {
    orders: File,
    answers: File,
}

impl Orders {
    /// Waits for the next order; `None` once the parent has gone or said it is done.
    pub fn wait(&mut self) -> Option<u8> {
        let mut byte = [0u8; 1];
        loop {
            match self.orders.read(&mut byte) {
                Ok(1) => return Some(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return None,
            }
        }
    }

    /// Answers the parent with one byte.
    pub fn answer(&mut self, byte: u8) {
        let _ = self.answers.write_all(&[byte]);
    }
}

impl Forked {
    /// Forks a child that runs `body` and exits with the code it returns (101 if it panics).
    pub fn spawn(body: impl FnOnce(&mut Orders) -> i32) -> io::Result<Forked> {
        ensure_single_threaded()?;
        let (order_rx, order_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (answer_rx, answer_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: the process is single-threaded (checked above), so the child may do anything
        // the parent could.
        match unsafe { nix::unistd::fork() }? {
            ForkResult::Child => {
                drop(order_tx);
                drop(answer_rx);
                let mut orders = Orders {
                    orders: File::from(order_rx),
                    answers: File::from(answer_tx),
                };
                // A panic must not unwind into the parent's code, running in the child.
                let code =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut orders)))
                        .unwrap_or(101);
                // SAFETY: _exit ends the child without running the parent's atexit handlers or
                // flushing buffers the parent also holds.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => Ok(Forked {
                pid: child,
                orders: Some(File::from(order_tx)),
                answers: File::from(answer_rx),
                reaped: false,
            }),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends an order and waits at most `timeout` for the answer.
    pub fn ask(&mut self, order: u8, timeout: Duration) -> io::Result<u8> {
        if let Some(orders) = self.orders.as_mut() {
            orders.write_all(&[order])?;
        }
        if wait_for(&self.answers, PollFlags::POLLIN, timeout)?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the child did not answer order {order:?} within {timeout:?}"),
            ));
        }
        let mut byte = [0u8; 1];
        match self.answers.read(&mut byte)? {
            1 => Ok(byte[0]),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the child exited without answering",
            )),
        }
    }

    /// Tells the child there are no more orders and waits at most `timeout` for it to exit;
    /// past that it is killed, and the error says so.
    pub fn wait(mut self, timeout: Duration) -> io::Result<WaitStatus> {
        self.orders = None;
        let deadline = Instant::now() + timeout;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("child {} still running after {timeout:?}; killed", self.pid),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = signal::kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}
