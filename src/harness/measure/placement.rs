//! Where the measured processes run: the server on its CPUs, the load generator on others, so
//! that neither takes CPU from the other and each one's CPU is its own (by default one CPU
//! each; `--server-cpus` and `--load-cpus` lay out more); and with descriptors enough for ten
//! thousand connections.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::Pid;

use super::procfs;

/// The CPUs this process may run on, lowest first.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// The CPUs online, from /sys/devices/system/cpu/online (`0-3,6`).
pub fn online_cpus() -> io::Result<Cpus> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    text.trim()
        .parse()
        .map_err(|e: String| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A set of CPUs, written as the kernel writes them (`0-3,6`, as in `Cpus_allowed_list` and
/// `taskset -c`). Copied freely: it is a bit mask.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cpus {
    bits: [u64; Cpus::WORDS],
}

impl Cpus {
    const WORDS: usize = 16;
    /// The highest CPU number a set can hold, plus one (1024, as glibc's `cpu_set_t`).
    pub const LIMIT: usize = Cpus::WORDS * 64;

    /// No CPU.
    pub const fn empty() -> Cpus {
        Cpus {
            bits: [0; Cpus::WORDS],
        }
    }

    /// The set holding `cpus` (those past [`Cpus::LIMIT`] are left out).
    pub fn of(cpus: impl IntoIterator<Item = usize>) -> Cpus {
        let mut set = Cpus::empty();
        for c in cpus.into_iter().filter(|&c| c < Cpus::LIMIT) {
            set.bits[c / 64] |= 1 << (c % 64);
        }
        set
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < Cpus::LIMIT && self.bits[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// The CPUs, lowest first.
    pub fn list(&self) -> Vec<usize> {
        (0..Cpus::LIMIT).filter(|&c| self.contains(c)).collect()
    }

    /// How many CPUs.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lowest `n` CPUs of the set.
    pub fn first(&self, n: usize) -> Cpus {
        Cpus::of(self.list().into_iter().take(n))
    }

    /// The CPUs of this set that are not in `other`.
    pub fn without(&self, other: &Cpus) -> Cpus {
        Cpus {
            bits: std::array::from_fn(|i| self.bits[i] & !other.bits[i]),
        }
    }

    /// The CPUs in both sets.
    pub fn and(&self, other: &Cpus) -> Cpus {
        Cpus {
            bits: std::array::from_fn(|i| self.bits[i] & other.bits[i]),
        }
    }

    fn cpu_set(&self) -> io::Result<CpuSet> {
        let mut set = CpuSet::new();
        for c in self.list() {
            set.set(c)?;
        }
        Ok(set)
    }
}

impl From<usize> for Cpus {
    fn from(cpu: usize) -> Cpus {
        Cpus::of([cpu])
    }
}

impl std::str::FromStr for Cpus {
    type Err = String;

    /// `0-3`, `4-7`, `0,2`, `0-1,6`: CPU numbers and inclusive ranges, comma-separated.
    fn from_str(s: &str) -> Result<Cpus, String> {
        let bad = || format!("'{s}' is not a CPU list (try 0-3, 4-7 or 0,2)");
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let (lo, hi): (usize, usize) = (
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            );
            if lo > hi || hi >= Cpus::LIMIT {
                return Err(bad());
            }
            cpus.extend(lo..=hi);
        }
        Ok(Cpus::of(cpus))
    }
}

impl std::fmt::Display for Cpus {
    /// As the kernel writes a list: ranges of consecutive CPUs, `0-3,6`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = self.list();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < list.len() {
            let mut j = i;
            while j + 1 < list.len() && list[j + 1] == list[j] + 1 {
                j += 1;
            }
            parts.push(if i == j {
                list[i].to_string()
            } else {
                format!("{}-{}", list[i], list[j])
            });
            i = j + 1;
        }
        f.write_str(&parts.join(","))
    }
}

impl std::fmt::Debug for Cpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cpus({self})")
    }
}

/// Which CPUs the server and the client (load generator and harness) run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The server's CPUs, or `None` when nothing is pinned.
    pub server: Option<Cpus>,
    /// The load generator's CPUs (one load thread each).
    pub client: Option<Cpus>,
}

impl Placement {
    /// The first two allowed CPUs, or no pinning with fewer than two.
    pub fn choose() -> io::Result<Placement> {
        let cpus = allowed_cpus()?;
        Ok(match cpus.as_slice() {
            [server, client, ..] => Placement {
                server: Some(Cpus::from(*server)),
                client: Some(Cpus::from(*client)),
            },
            _ => Placement {
                server: None,
                client: None,
            },
        })
    }

    /// The layout asked for (`--server-cpus`, `--load-cpus`), checked against the CPUs online
    /// and those this process may use; a list left out gets every allowed CPU the other does
    /// not take. Overlapping, missing or empty lists are refused with the reason
    /// (`InvalidInput`).
    pub fn layout(server: Option<Cpus>, load: Option<Cpus>) -> io::Result<Placement> {
        Placement::layout_within(server, load, &online_cpus()?, &Cpus::of(allowed_cpus()?))
    }

    /// [`layout`](Self::layout) against given sets of CPUs online and allowed.
    pub fn layout_within(
        server: Option<Cpus>,
        load: Option<Cpus>,
        online: &Cpus,
        allowed: &Cpus,
    ) -> io::Result<Placement> {
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let usable = online.and(allowed);
        for (flag, cpus) in [("--server-cpus", server), ("--load-cpus", load)] {
            let Some(cpus) = cpus else { continue };
            if cpus.is_empty() {
                return Err(bad(format!("{flag} names no CPU")));
            }
            let offline = cpus.without(online);
            if !offline.is_empty() {
                return Err(bad(format!(
                    "{flag} {cpus}: CPU {offline} not online (online: {online})"
                )));
            }
            let refused = cpus.without(allowed);
            if !refused.is_empty() {
                return Err(bad(format!(
                    "{flag} {cpus}: CPU {refused} not in this process's affinity (allowed: {allowed}; \
                     see `taskset -p $$` or the cgroup's cpuset)"
                )));
            }
        }
        let (server, load) = match (server, load) {
            (Some(s), Some(l)) => (s, l),
            (Some(s), None) => (s, usable.without(&s)),
            (None, Some(l)) => (usable.without(&l), l),
            (None, None) => return Placement::choose(),
        };
        let shared = server.and(&load);
        if !shared.is_empty() {
            return Err(bad(format!(
                "--server-cpus {server} and --load-cpus {load} overlap on CPU {shared}: the server and \
                 the load would take CPU from each other"
            )));
        }
        if server.is_empty() || load.is_empty() {
            let (empty, other, given) = if server.is_empty() {
                ("server", "--load-cpus", load)
            } else {
                ("load", "--server-cpus", server)
            };
            return Err(bad(format!(
                "no CPU is left for the {empty} beside {other} {given} (usable: {usable})"
            )));
        }
        Ok(Placement {
            server: Some(server),
            client: Some(load),
        })
    }
}

/// The CPUs one task may run on, from its `Cpus_allowed_list` in /proc/PID/task/TID/status.
pub fn task_affinity(pid: i32, tid: i32) -> io::Result<Cpus> {
    let path = format!("/proc/{pid}/task/{tid}/status");
    let text = std::fs::read_to_string(&path)?;
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path}: no Cpus_allowed_list"),
            )
        })?;
    list.trim()
        .parse()
        .map_err(|e: String| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

/// Checks that every task (thread) of every process of `root`'s tree may run on exactly
/// `want`, as the kernel reports it; returns how many tasks it read, or an error naming the
/// first task placed elsewhere. Tasks that end during the walk are left out.
pub fn check_tree_affinity(root: i32, want: Cpus) -> io::Result<usize> {
    let mut seen = 0;
    for pid in procfs::tree(root)? {
        let tids = match procfs::tasks(pid) {
            Ok(t) => t,
            Err(e) if procfs::vanished(&e) && pid != root => continue,
            Err(e) => return Err(e),
        };
        for tid in tids {
            match task_affinity(pid, tid) {
                Ok(got) if got == want => seen += 1,
                Ok(got) => {
                    return Err(io::Error::other(format!(
                        "task {tid} of process {pid} may run on CPUs {got}, not {want} as placed"
                    )));
                }
                Err(e) if procfs::vanished(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(seen)
}

/// Pins the calling thread, and every thread it starts from now on, to `cpus`.
pub fn pin_current_thread(cpus: Cpus) -> io::Result<()> {
    sched_setaffinity(Pid::from_raw(0), &cpus.cpu_set()?)?;
    Ok(())
}

/// Makes `command` start pinned to `cpus`: the affinity is set in the child between fork and
/// exec, so that every thread and process the program starts inherits it from its first
/// instruction (setting it after spawn would miss threads started in between).
pub fn pin_command(command: &mut Command, cpus: Cpus) -> io::Result<()> {
    let set = cpus.cpu_set()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(s: &str) -> Cpus {
        s.parse().expect("a CPU list")
    }

    /// Lists read and write as the kernel writes them; nonsense is refused.
    #[test]
    fn cpu_lists() {
        assert_eq!(cpus("0-3").list(), [0, 1, 2, 3]);
        assert_eq!(cpus("0,2").list(), [0, 2]);
        assert_eq!(cpus("4-7,0").to_string(), "0,4-7");
        assert_eq!(cpus(" 1 - 2 , 5").to_string(), "1-2,5");
        assert_eq!(cpus("0-7").first(3).to_string(), "0-2");
        for bad in ["", "a", "3-1", "0-", "-1", "5000"] {
            assert!(bad.parse::<Cpus>().is_err(), "{bad}");
        }
    }

    /// A layout is refused when its lists overlap, name a CPU offline or outside the affinity,
    /// or leave nothing for the other side; a list left out gets the rest.
    #[test]
    fn layouts_refused_with_the_reason() {
        let (online, allowed) = (cpus("0-15"), cpus("0-15"));
        let ok = Placement::layout_within(Some(cpus("0-3")), Some(cpus("4-7")), &online, &allowed)
            .expect("a layout");
        assert_eq!(
            (ok.server, ok.client),
            (Some(cpus("0-3")), Some(cpus("4-7")))
        );
        let rest = Placement::layout_within(Some(cpus("0-7")), None, &online, &allowed)
            .expect("the rest for the load");
        assert_eq!(rest.client, Some(cpus("8-15")));
        let err = |s: Option<&str>, l: Option<&str>, online: &str, allowed: &str| {
            Placement::layout_within(s.map(cpus), l.map(cpus), &cpus(online), &cpus(allowed))
                .expect_err("refused")
        };
        let e = err(Some("0-3"), Some("3-7"), "0-15", "0-15");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("overlap on CPU 3"), "{e}");
        let e = err(Some("0-3"), Some("4-7"), "0-1", "0-1");
        assert!(
            e.to_string().contains("CPU 2-3 not online (online: 0-1)"),
            "{e}"
        );
        let e = err(Some("0"), Some("1"), "0-3", "0,2");
        assert!(
            e.to_string()
                .contains("CPU 1 not in this process's affinity"),
            "{e}"
        );
        let e = err(Some("0-1"), None, "0-1", "0-1");
        assert!(e.to_string().contains("no CPU is left for the load"), "{e}");
    }
}
