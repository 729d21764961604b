//! Where the measured processes run: the server on one CPU, the load generator on another, so
//! that neither takes CPU from the other and each one's CPU is its own; and with descriptors
//! enough for ten thousand connections.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::Pid;

/// The CPUs this process may run on, lowest first.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// Which CPU the server and the client (load generator and harness) run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The server's CPU, or `None` when there is only one CPU and nothing is pinned.
    pub server: Option<usize>,
    /// The load generator's CPU.
    pub client: Option<usize>,
}

impl Placement {
    /// The first two allowed CPUs, or no pinning with fewer than two.
    pub fn choose() -> io::Result<Placement> {
        let cpus = allowed_cpus()?;
        Ok(match cpus.as_slice() {
            [server, client, ..] => Placement {
                server: Some(*server),
                client: Some(*client),
            },
            _ => Placement {
                server: None,
                client: None,
            },
        })
    }
}

fn cpu_set(cpu: usize) -> io::Result<CpuSet> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    Ok(set)
}

/// Pins the calling thread, and every thread it starts from now on, to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    sched_setaffinity(Pid::from_raw(0), &cpu_set(cpu)?)?;
    Ok(())
}

/// Makes `command` start pinned to `cpu`: the affinity is set in the child between fork and
/// exec, so that every thread and process the program starts inherits it from its first
/// instruction (setting it after spawn would miss threads started in between).
pub fn pin_command(command: &mut Command, cpu: usize) -> io::Result<()> {
    let set = cpu_set(cpu)?;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed; it makes one sched_setaffinity(2) system call on a `CpuSet` copied
    // before the fork, and allocates nothing.
    unsafe {
        command
            .pre_exec(move || sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from));
    }
    Ok(())
}

/// Raises this process's soft limit on open descriptors to the hard limit, so that it and the
/// children it starts (which inherit the limit) can hold ten thousand connections. Returns the
/// new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}
