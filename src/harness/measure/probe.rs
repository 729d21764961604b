//! Probe processes whose answer is known, to test the measurement against: one that touches a
//! given amount of memory, one that forks children sharing memory, one whose children spin for
//! a given CPU time.
//!
//! A probe runs as its own executable (`server-models probe ...`, hidden from the help), since
//! forking from a multi-threaded test binary is unsafe. It sets itself up, prints `ready` on
//! stdout, and waits for its stdin to close; then it stops its children and exits.

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
    // Wait for the test to close our stdin.
    let mut line = String::new();
    while io::stdin().lock().read_line(&mut line)? > 0 {
        line.clear();
    }
    children.stop_all();
    Ok(())
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
