//! Child processes for the process models: fork them, reap them as they exit, stop them all
//! ([`Children`]); and keep N of them alive, one per worker, replacing any that dies
//! ([`Supervisor`], for the preforked models).
//!
//! The parent keeps the pid of every live child. A SIGCHLD handler installed without
//! `SA_RESTART` makes a parent blocked in `accept` (`fork-per-conn`) return EINTR when a child
//! exits, and writes an eventfd that a parent blocked in `poll` ([`Supervisor`]) wakes on —
//! `poll` would return EINTR with or without `SA_RESTART` (signal(7)), but a signal arriving just
//! before it blocks would be missed, and a readable eventfd is not. Either way the parent reaps at
//! once and no zombie (僵尸进程) waits for the next connection.

use std::collections::HashSet;
use std::io;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::server::shutdown::{self, Shutdown};

/// How long to wait before forking again after `fork` failed (out of processes or memory:
/// EAGAIN, ENOMEM) or after a child died while the server runs (a child that dies at once,
/// from a persistent error, must not turn into a fork loop). Long enough not to spin, short
/// enough that a freed process slot is used soon.
pub const FORK_BACKOFF: Duration = Duration::from_millis(50);

/// The live children of this process.
#[derive(Debug, Default)]
pub struct Children {
    pids: HashSet<Pid>,
    /// `fork` has been failing since the last success: logged once per episode.
    fork_failing: bool,
}

/// An eventfd the SIGCHLD handler writes, so that a parent can wait for "a child exited" and
/// "shutdown" at once, in one poll, without the race of checking a flag and then blocking.
static EXITED_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    // The parent's blocking call returns EINTR (no SA_RESTART); and the eventfd becomes
    // readable, for a parent about to block in poll. errno is kept for the interrupted code.
    let saved = Errno::last_raw();
    let fd = EXITED_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe and the buffer is a live u64; an error (the
        // counter full) leaves the eventfd readable, which is all that is wanted.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
    Errno::set_raw(saved);
}

impl Children {
    /// Starts tracking children, installing the SIGCHLD handler that interrupts the parent.
    pub fn new() -> io::Result<Children> {
        static MADE: OnceLock<Result<(), Errno>> = OnceLock::new();
        let made = *MADE.get_or_init(|| {
            let efd =
                EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
            // It lives as long as the process: leaked into the static.
            EXITED_FD.store(OwnedFd::from(efd).into_raw_fd(), Ordering::SeqCst);
            Ok(())
        });
        made?;
        let action = SigAction::new(
            SigHandler::Handler(on_sigchld),
            SaFlags::SA_NOCLDSTOP,
            SigSet::empty(),
        );
        // SAFETY: the handler only calls write(2) and touches errno, both async-signal-safe.
        unsafe { signal::sigaction(Signal::SIGCHLD, &action) }?;
        Ok(Children::default())
    }

    /// Forks a child that runs `child` and exits with the code it returns. The child starts
    /// with no descriptor registered for shutdown ([`shutdown::forget_registrations_after_fork`]).
    /// A failure is logged when an episode of failures begins, not every time.
    ///
    /// # Safety
    /// The calling process must have one thread. After `fork` in a process with threads, the
    /// child may only call async-signal-safe functions (fork(2), signal-safety(7)): a lock
    /// another thread held at the fork stays locked in the child for ever, and `child`
    /// allocates and locks freely.
    pub unsafe fn spawn(&mut self, child: impl FnOnce() -> i32) -> io::Result<Pid> {
        let parent = nix::unistd::getpid();
        // SAFETY: the caller guarantees a single-threaded process (see above).
        let forked = unsafe { fork() };
        match forked {
            Err(e) => {
                if !self.fork_failing {
                    self.fork_failing = true;
                    crate::event!("fork failed: {e}; retrying every {FORK_BACKOFF:?}");
                }
                Err(e.into())
            }
            Ok(ForkResult::Parent { child: pid }) => {
                self.fork_failing = false;
                self.pids.insert(pid);
                Ok(pid)
            }
            Ok(ForkResult::Child) => {
                shutdown::forget_registrations_after_fork();
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

/// Keeps one child alive per worker — Stevens' preforked server — and holds what the parent
/// keeps of each (`T`: nothing for `prefork`, the channel to it for `prefork-fdpass`).
///
/// One policy for every preforked model: a place whose child died, or whose fork failed, is
/// filled again no sooner than [`FORK_BACKOFF`] later, and not at all once shutdown is
/// requested.
#[derive(Debug)]
pub struct Supervisor<T> {
    children: Children,
    places: Vec<Place<T>>,
    shutdown: Shutdown,
    /// Preparing a child (before `fork`) has been failing: logged once per episode.
    start_failing: bool,
}

/// One worker's place in a [`Supervisor`].
#[derive(Debug)]
struct Place<T> {
    child: Option<(Pid, T)>,
    /// Not to be filled before this instant (after a death or a failed fork).
    not_before: Option<Instant>,
}

impl<T> Supervisor<T> {
    /// A supervisor of `workers` places (at least one), none filled yet.
    pub fn new(workers: usize, shutdown: Shutdown) -> io::Result<Supervisor<T>> {
        Ok(Supervisor {
            children: Children::new()?,
            places: (0..workers.max(1))
                .map(|_| Place {
                    child: None,
                    not_before: None,
                })
                .collect(),
            shutdown,
            start_failing: false,
        })
    }

    /// Forks a child into every empty place whose back-off has passed. `start(worker)` makes
    /// what the parent keeps of the child and the child's body (the code after `fork` in the
    /// child, whose return value is its exit code). Returns how long until an empty place may
    /// be filled, or `None` when every place holds a child.
    ///
    /// # Safety
    /// As for [`Children::spawn`]: the calling process must have one thread.
    pub unsafe fn fill<B: FnOnce() -> i32>(
        &mut self,
        mut start: impl FnMut(usize) -> io::Result<(T, B)>,
    ) -> Option<Duration> {
        let now = Instant::now();
        let mut soonest: Option<Duration> = None;
        for (worker, place) in self.places.iter_mut().enumerate() {
            if place.child.is_some() || self.shutdown.requested() {
                continue;
            }
            if let Some(wait) = place.not_before.map(|t| t.saturating_duration_since(now))
                && !wait.is_zero()
            {
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                continue;
            }
            let started = match start(worker) {
                Ok((kept, body)) => {
                    // SAFETY: the caller guarantees a single-threaded process.
                    unsafe { self.children.spawn(body) }.map(|pid| (pid, kept))
                }
                Err(e) => {
                    // Logged here, once per episode; a failed fork is logged by `spawn`.
                    if !self.start_failing {
                        self.start_failing = true;
                        crate::event!("starting worker {worker}: {e}; retrying");
                    }
                    Err(e)
                }
            };
            match started {
                Ok(child) => {
                    self.start_failing = false;
                    place.child = Some(child);
                    place.not_before = None;
                }
                Err(_) => {
                    place.not_before = Some(now + FORK_BACKOFF);
                    soonest = Some(FORK_BACKOFF);
                }
            }
        }
        soonest
    }

    /// Every live child, in worker order: its worker number, its pid and what the parent keeps
    /// of it.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Pid, &T)> {
        self.places
            .iter()
            .enumerate()
            .filter_map(|(worker, p)| p.child.as_ref().map(|(pid, kept)| (worker, *pid, kept)))
    }

    /// [`Supervisor::iter`], to change what the parent keeps.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, Pid, &mut T)> {
        self.places
            .iter_mut()
            .enumerate()
            .filter_map(|(worker, p)| p.child.as_mut().map(|(pid, kept)| (worker, *pid, kept)))
    }

    /// Blocks until a child exits (its place is freed; every child that exited is reaped) or
    /// shutdown is requested. One `poll` on two eventfds — the one the SIGCHLD handler writes
    /// and the shutdown one — so that neither event can slip in between a check and the wait:
    /// a blocking `waitpid` would sleep through a SIGTERM that landed just before it.
    pub fn wait(&mut self) -> io::Result<()> {
        // SAFETY: `Children::new` stored a descriptor that is never closed.
        let exited = unsafe { BorrowedFd::borrow_raw(EXITED_FD.load(Ordering::SeqCst)) };
        let mut fds = [
            PollFd::new(exited, PollFlags::POLLIN),
            PollFd::new(self.shutdown.fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let mut count = [0u8; 8];
        let _ = nix::unistd::read(exited, &mut count);
        self.reap();
        Ok(())
    }

    /// Reaps every child that has exited, without blocking, and frees their places.
    pub fn reap(&mut self) {
        for pid in self.children.reap() {
            self.exited(pid);
        }
    }

    /// Waits for child `pid`, known to be exiting (its end of a socket reached EOF), and frees
    /// its place.
    pub fn wait_for(&mut self, pid: Pid) {
        self.children.wait_for(pid);
        self.exited(pid);
    }

    fn exited(&mut self, pid: Pid) {
        for place in &mut self.places {
            if place.child.as_ref().is_some_and(|(p, _)| *p == pid) {
                place.child = None;
                place.not_before = Some(Instant::now() + FORK_BACKOFF);
                if !self.shutdown.requested() {
                    crate::event!("a child exited; forking a replacement");
                }
            }
        }
    }

    /// Drops what the parent keeps of every child (closing a channel lets an idle child see
    /// EOF), then sends SIGTERM to every child and waits for each to exit.
    pub fn stop_all(&mut self) {
        for place in &mut self.places {
            place.child = None;
        }
        self.children.stop_all();
    }
}
