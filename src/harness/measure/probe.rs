//! Probe processes whose answer is known, to test the measurement against: one that touches a
//! given amount of memory, one that forks children sharing memory, one whose children spin for
//! a given CPU time, one that makes a known number of syscalls.
//!
//! A probe runs as its own executable (`server-models probe ...`, hidden from the help), since
//! forking from a multi-threaded test binary is unsafe. It sets itself up, prints `ready` on
//! stdout, and waits for its stdin to close; then it stops its children and exits. (The
//! syscall probe waits for a `go` line first, makes its calls, prints `done`, then waits.)

use std::hint::black_box;
use std::io::{self, BufRead, Read, Write};
use std::time::Duration;

use nix::sys::time::TimeValLike;
use nix::time::{ClockId, clock_gettime};

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, waitid};

use crate::server::children::Children;

/// What the probe does before it says `ready`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Probe {
    /// Allocate and touch MIB mebibytes.
    Touch {
        /// Mebibytes to touch.
        #[arg(long)]
        mib: usize,
    },
    /// Touch MIB mebibytes, then fork CHILDREN children that share them copy-on-write.
    Share {
        /// Mebibytes to touch before forking.
        #[arg(long)]
        mib: usize,
        /// Children to fork.
        #[arg(long)]
        children: usize,
    },
    /// Fork CHILDREN children that each spin for MS milliseconds of their own CPU time.
    Spin {
        /// Children to fork.
        #[arg(long)]
        children: usize,
        /// CPU milliseconds each child spends.
        #[arg(long)]
        ms: u64,
        /// What the children do once they have spun.
        #[arg(long, value_enum, default_value = "stay")]
        then: AfterSpin,
    },
    /// On `go`: CALLS getppid calls in the main thread, CALLS in a new thread and CALLS in a
    /// forked child; then WAITS calls each of epoll_wait, poll and select on READY descriptors
    /// that are all ready, each call returning READY. Prints `done`.
    Syscalls {
        /// getppid calls in each of the main thread, a thread and a child.
        #[arg(long)]
        calls: u64,
        /// Calls of each wait.
        #[arg(long)]
        waits: u64,
        /// Descriptors watched, every one ready.
        #[arg(long)]
        ready: usize,
    },
}

/// What a spinning child does when its CPU time is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AfterSpin {
    /// Stay alive (its CPU is its own, found by walking the tree).
    Stay,
    /// Exit and be left unreaped, a zombie (its CPU is still its own).
    Exit,
    /// Exit and be reaped (its CPU moves into the parent's cutime and cstime).
    Reap,
}

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// Runs a probe: sets up, prints `ready`, waits for stdin to close, cleans up.
pub fn run(probe: &Probe) -> io::Result<()> {
    let mut children = Children::new()?;
    // Kept alive until the end: the memory the probe is measured by.
    let mut _held = Vec::new();
    match *probe {
        // Set up after `ready`, so that its calls fall between the test's readings.
        Probe::Syscalls { .. } => {}
        Probe::Touch { mib } => _held = touched(mib),
        Probe::Share { mib, children: n } => {
            _held = touched(mib);
            for _ in 0..n {
                // SAFETY: the probe process runs on one thread: it starts none.
                unsafe {
                    children.spawn(|| {
                        // Never writes the inherited pages, so they stay shared.
                        loop {
                            nix::unistd::pause();
                        }
                    })
                }?;
            }
        }
        Probe::Spin {
            children: n,
            ms,
            then,
        } => {
            let (done_read, done_write) = nix::unistd::pipe()?;
            let mut pids = Vec::with_capacity(n);
            for _ in 0..n {
                let done_write = &done_write;
                // SAFETY: the probe process runs on one thread: it starts none.
                pids.push(unsafe {
                    children.spawn(move || {
                        spin_cpu(Duration::from_millis(ms));
                        if then != AfterSpin::Stay {
                            return 0;
                        }
                        let _ = nix::unistd::write(done_write, b"x");
                        loop {
                            nix::unistd::pause();
                        }
                    })
                }?);
            }
            drop(done_write);
            match then {
                AfterSpin::Stay => {
                    let mut done = vec![0u8; n];
                    std::fs::File::from(done_read).read_exact(&mut done)?;
                }
                AfterSpin::Exit => {
                    // Wait for each to exit without reaping it (WNOWAIT).
                    for pid in pids {
                        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
                        while let Err(Errno::EINTR) = waitid(Id::Pid(pid), flags) {}
                    }
                }
                AfterSpin::Reap => {
                    while !children.is_empty() {
                        children.wait_any()?;
                    }
                }
            }
        }
    }
    println!("ready");
    io::stdout().flush()?;
    if let Probe::Syscalls {
        calls,
        waits,
        ready,
    } = *probe
    {
        known_syscalls(calls, waits, ready)?;
    }
    // Wait for the test to close our stdin.
    let mut line = String::new();
    while io::stdin().lock().read_line(&mut line)? > 0 {
        line.clear();
    }
    children.stop_all();
    Ok(())
}

/// Waits for `go` on stdin, then makes the syscalls [`Probe::Syscalls`] promises and prints
/// `done`. The descriptors are eventfds holding a count, so each stays readable.
fn known_syscalls(calls: u64, waits: u64, ready: usize) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    use nix::sys::eventfd::{EfdFlags, EventFd};
    use nix::sys::select::{FdSet, select};
    use std::os::fd::AsFd;

    let fds: Vec<EventFd> = (0..ready)
        .map(|_| EventFd::from_value_and_flags(1, EfdFlags::EFD_CLOEXEC))
        .collect::<Result<_, _>>()?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, fd) in fds.iter().enumerate() {
        epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let mut events = vec![EpollEvent::empty(); ready.max(1)];
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(io::Error::other(format!("expected go, got {line:?}")));
    }
    let getppid = move || {
        for _ in 0..calls {
            black_box(nix::unistd::getppid());
        }
    };
    getppid();
    std::thread::spawn(getppid)
        .join()
        .map_err(|_| io::Error::other("the getppid thread panicked"))?;
    // A bare fork rather than `Children::spawn`, whose orphan check makes a getppid of its own.
    // SAFETY: the thread has been joined, so this process is single-threaded again; the child
    // makes getppid calls and _exits, touching no lock another thread could hold.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            getppid();
            // SAFETY: _exit ends the child without running the parent's exit handlers.
            unsafe { nix::libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => loop {
            match nix::sys::wait::waitpid(child, None) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => break,
            }
        },
    }
    for _ in 0..waits {
        returned("epoll_wait", epoll.wait(&mut events, 0u16)?, ready)?;
    }
    let mut pollfds: Vec<PollFd> = fds
        .iter()
        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
        .collect();
    for _ in 0..waits {
        returned(
            "poll",
            poll(&mut pollfds, PollTimeout::ZERO)? as usize,
            ready,
        )?;
    }
    for _ in 0..waits {
        let mut set = FdSet::new();
        for fd in &fds {
            set.insert(fd.as_fd());
        }
        let mut zero = nix::sys::time::TimeVal::new(0, 0);
        let n = select(None, Some(&mut set), None, None, Some(&mut zero))?;
        returned("select", n as usize, ready)?;
    }
    println!("done");
    io::stdout().flush()
}

/// A wait that did not return every descriptor breaks the probe's promise.
fn returned(call: &str, n: usize, ready: usize) -> io::Result<()> {
    if n == ready {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{call} returned {n}, not {ready}"
    )))
}

/// Allocates `mib` mebibytes and writes one byte in every page, so that every page is resident.
fn touched(mib: usize) -> Vec<u8> {
    // `vec![0; n]` maps zero pages the kernel has not yet backed with memory: writing one byte
    // in each makes it resident.
    let mut v = vec![0u8; mib * MIB];
    for i in (0..v.len()).step_by(PAGE) {
        v[i] = black_box(1);
    }
    black_box(v)
}

/// Spins until this process has used `cpu` of CPU time.
fn spin_cpu(cpu: Duration) {
    let used = || {
        clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).map_or(Duration::MAX, |t| {
            Duration::from_nanos(t.num_nanoseconds().max(0) as u64)
        })
    };
    let mut x = 0u64;
    while used() < cpu {
        for i in 0..10_000u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}
