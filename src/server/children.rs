//! Child processes for the process models: fork them, reap them as they exit, stop them all.
//!
//! The parent keeps the pid of every live child. A SIGCHLD handler installed without
//! `SA_RESTART` makes the parent's blocking call (`accept`, `waitpid`) return EINTR when a child
//! exits, so the parent reaps at once and no zombie (僵尸进程) waits for the next connection.

use std::collections::HashSet;
use std::io;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

/// The live children of this process.
#[derive(Debug, Default)]
pub struct Children {
    pids: HashSet<Pid>,
}

extern "C" fn on_sigchld(_: libc::c_int) {
    // Nothing to do here: the point is that the parent's blocking call returns EINTR.
}

impl Children {
    /// Starts tracking children, installing the SIGCHLD handler that interrupts the parent.
    pub fn new() -> io::Result<Children> {
        let action = SigAction::new(
            SigHandler::Handler(on_sigchld),
            SaFlags::SA_NOCLDSTOP,
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, which is async-signal-safe.
        unsafe { signal::sigaction(Signal::SIGCHLD, &action) }?;
        Ok(Children::default())
    }

    /// Forks a child that runs `child` and exits with the code it returns.
    ///
    /// The caller must be single-threaded: after `fork` in a process with threads, the child may
    /// only call async-signal-safe functions, and `child` allocates and locks freely.
    pub fn spawn(&mut self, child: impl FnOnce() -> i32) -> io::Result<Pid> {
        let parent = nix::unistd::getpid();
        // SAFETY: the process models call this before starting any thread (see above).
        match unsafe { fork() }? {
            ForkResult::Parent { child: pid } => {
                self.pids.insert(pid);
                Ok(pid)
            }
            ForkResult::Child => {
                // If the parent dies without stopping us (SIGKILL), SIGTERM us rather than leave
                // an orphan serving on the old listener; if it died already, do not start.
                let orphaned = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
                    || nix::unistd::getppid() != parent;
                let code = if orphaned { 1 } else { child() };
                // SAFETY: _exit(2) ends the process and returns nothing. _exit, not exit: the
                // parent's atexit handlers and buffers are not the child's to run or flush.
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// Reaps every child that has exited, without blocking; returns their pids.
    pub fn reap(&mut self) -> Vec<Pid> {
        let mut reaped = Vec::new();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.pids.remove(&pid);
                        reaped.push(pid);
                    }
                }
            }
        }
    }

    /// Blocks until a child exits (returns its pid) or a signal interrupts the wait (`None`).
    pub fn wait_any(&mut self) -> io::Result<Option<Pid>> {
        match waitpid(None, None) {
            Ok(status) => {
                let pid = status.pid();
                if let Some(pid) = pid {
                    self.pids.remove(&pid);
                }
                Ok(pid)
            }
            Err(Errno::EINTR) => Ok(None),
            Err(Errno::ECHILD) => {
                self.pids.clear();
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for child `pid` to exit, for a caller that knows it is exiting (its end of a
    /// socket reached EOF), so that it does not linger as a zombie until the next SIGCHLD.
    pub fn wait_for(&mut self, pid: Pid) {
        while let Err(Errno::EINTR) = waitpid(pid, None) {}
        self.pids.remove(&pid);
    }

    /// Sends SIGTERM to every live child and waits for each to exit.
    pub fn stop_all(&mut self) {
        for &pid in &self.pids {
            let _ = signal::kill(pid, Signal::SIGTERM);
        }
        while !self.pids.is_empty() {
            match waitpid(None, None) {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.pids.remove(&pid);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// How many children are alive.
    pub fn len(&self) -> usize {
        self.pids.len()
    }

    /// Whether no child is alive.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }
}
