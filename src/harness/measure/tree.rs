//! A server's whole process tree, measured as one: the root, every live descendant, and the
//! children already reaped.
//!
//! - CPU: `utime + stime + cutime + cstime` summed over the live processes of the tree. A child
//!   that exits and is reaped moves its time into its parent's `cutime` and `cstime` at that
//!   moment, so the sum carries on without a jump; a fork-per-connection server is charged for
//!   every child it ever had. `stat` rounds each process down to a clock tick (10 ms), which
//!   for a hundred preforked children each using a few milliseconds loses everything; so a
//!   single-threaded process is counted by its scheduler runtime (`schedstat`, exact to the
//!   nanosecond) when that is higher. The user/sys split comes from the ticks alone.
//! - Memory: PSS and RSS summed over the live processes. PSS divides every shared page among
//!   the processes that map it, so the sum counts each page once; RSS counts a page once per
//!   process and is kept only to show beside PSS how much forking shares.
//!   The root is read before its descendants, so a child reaped during a reading is missed
//!   (the total dips, and is held at its last value) rather than counted twice. A child that
//!   has exited but is not yet reaped (a zombie) still shows its CPU, and is counted.
//! - Threads and processes: counted at each sample.
//! - Context switches: summed over every task of every process. The kernel keeps them per task
//!   and drops them when a thread exits, so each task's count is remembered from the last sample
//!   it was seen in, and a thread that lived and died between two samples is missed.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use super::procfs::{self, Memory, Switches, vanished};

/// One look at a process tree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When the sample was taken (when its reading finished).
    pub at: Instant,
    /// CPU of the tree so far, user and sys, reaped children included, in nanoseconds.
    pub cpu_ns: u64,
    /// User CPU of the tree so far, reaped children included, in clock ticks.
    pub user_ticks: u64,
    /// Kernel CPU of the tree so far, reaped children included, in clock ticks.
    pub sys_ticks: u64,
    /// Context switches of every task seen so far in the tree.
    pub switches: Switches,
    /// Summed PSS and RSS of the live processes.
    pub memory: Memory,
    /// Live processes in the tree.
    pub processes: u64,
    /// Live threads in the tree, every process's main thread included.
    pub threads: u64,
}

/// Watches one process tree, sample after sample.
#[derive(Debug)]
pub struct TreeWatch {
    root: i32,
    /// The last switch count read for each task, so that a later reading adds only the change.
    last_switches: HashMap<i32, Switches>,
    /// Context switches accumulated over every task ever seen.
    switches: Switches,
    /// The highest CPU totals (ns, user ticks, sys ticks) reported so far; see
    /// [`TreeWatch::sample`].
    cpu_floor: (u64, u64, u64),
    /// Nanoseconds per clock tick.
    tick_ns: u64,
}

impl TreeWatch {
    /// Watches the tree rooted at `root`.
    pub fn new(root: i32) -> TreeWatch {
        TreeWatch {
            root,
            last_switches: HashMap::new(),
            switches: Switches::default(),
            cpu_floor: (0, 0, 0),
            tick_ns: 1_000_000_000 / procfs::ticks_per_second(),
        }
    }

    /// The root's pid.
    pub fn root(&self) -> i32 {
        self.root
    }

    /// Reads the whole tree once. Fails only if the root itself cannot be read (it has exited);
    /// descendants that exit during the reading are skipped.
    pub fn sample(&mut self) -> io::Result<Sample> {
        let pids = procfs::tree(self.root)?;
        let mut sample = Sample {
            at: Instant::now(),
            cpu_ns: 0,
            user_ticks: 0,
            sys_ticks: 0,
            switches: Switches::default(),
            memory: Memory::default(),
            processes: 0,
            threads: 0,
        };
        for pid in pids {
            match self.add_process(pid, &mut sample) {
                Ok(()) => {}
                Err(e) if vanished(&e) && pid != self.root => {}
                Err(e) => return Err(e),
            }
        }
        // The tree's CPU never goes down, but a reading can dip: a child reaped after the root's
        // stat was read and before its own was is in neither. Its time shows in the root's
        // cutime at the next reading; until then the total holds at the last one.
        self.cpu_floor = (
            self.cpu_floor.0.max(sample.cpu_ns),
            self.cpu_floor.1.max(sample.user_ticks),
            self.cpu_floor.2.max(sample.sys_ticks),
        );
        (sample.cpu_ns, sample.user_ticks, sample.sys_ticks) = self.cpu_floor;
        sample.switches = self.switches;
        sample.at = Instant::now();
        Ok(sample)
    }

    fn add_process(&mut self, pid: i32, sample: &mut Sample) -> io::Result<()> {
        let stat = procfs::stat(pid)?;
        // A process that has exited but is not yet reaped (a zombie) still has its CPU times
        // but no memory and no tasks to read: its CPU counts, the rest is zero.
        let memory = match procfs::memory(pid) {
            Ok(m) => m,
            Err(e) if vanished(&e) => Memory::default(),
            Err(e) => return Err(e),
        };
        match procfs::tasks(pid) {
            Ok(tids) => {
                for tid in tids {
                    match procfs::task_switches(pid, tid) {
                        Ok(now) => self.add_switches(tid, now),
                        Err(e) if vanished(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) if vanished(&e) => {}
            Err(e) => return Err(e),
        }
        let own_ticks_ns = (stat.utime + stat.stime) * self.tick_ns;
        let own_ns = match stat.num_threads {
            1 => match procfs::main_thread_runtime_ns(pid) {
                Ok(ns) => ns.max(own_ticks_ns),
                Err(_) => own_ticks_ns,
            },
            // Threads that have exited are in `stat` only; one rounding per process is small.
            _ => own_ticks_ns,
        };
        sample.cpu_ns += own_ns + (stat.cutime + stat.cstime) * self.tick_ns;
        sample.user_ticks += stat.utime + stat.cutime;
        sample.sys_ticks += stat.stime + stat.cstime;
        sample.memory.pss += memory.pss;
        sample.memory.rss += memory.rss;
        sample.processes += 1;
        sample.threads += stat.num_threads;
        Ok(())
    }

    fn add_switches(&mut self, tid: i32, now: Switches) {
        let before = self.last_switches.insert(tid, now).unwrap_or_default();
        // A count lower than last time is a new task that reuses the tid: all of it is new.
        let grown = |now: u64, before: u64| if now >= before { now - before } else { now };
        self.switches.voluntary += grown(now.voluntary, before.voluntary);
        self.switches.involuntary += grown(now.involuntary, before.involuntary);
    }
}

/// What the tree spent between two instants.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TreeUsage {
    /// CPU of the whole tree, user and sys.
    pub cpu: Duration,
    /// The share of it spent in user mode, from the clock ticks; `None` when no tick fell in
    /// the window or before it (too little CPU to tell).
    pub user_share: Option<f64>,
    /// Context switches of every task in the tree.
    pub switches: Switches,
}

impl TreeUsage {
    /// User CPU, if the split is known.
    pub fn user(&self) -> Option<Duration> {
        self.user_share.map(|f| self.cpu.mul_f64(f))
    }

    /// Kernel CPU, if the split is known.
    pub fn sys(&self) -> Option<Duration> {
        self.user_share.map(|f| self.cpu.mul_f64(1.0 - f))
    }
}

/// The tree's CPU and context switches between `from` and `to`, read off a series of samples
/// (in time order) by linear interpolation between the samples either side of each instant.
///
/// `None` if the samples do not cover both instants. The figures are exact at sample instants;
/// between them they assume the tree worked at a steady rate, which holds in a measured window
/// of steady load. The user/sys split is the ticks' split within the window, or, when too few
/// ticks fell in it, since the tree started.
pub fn window(samples: &[Sample], from: Instant, to: Instant) -> Option<TreeUsage> {
    let at = |t: Instant| -> Option<[f64; 5]> {
        let after = samples.iter().position(|s| s.at >= t)?;
        let b = &samples[after];
        let values = |s: &Sample| {
            [
                s.cpu_ns as f64,
                s.user_ticks as f64,
                s.sys_ticks as f64,
                s.switches.voluntary as f64,
                s.switches.involuntary as f64,
            ]
        };
        if after == 0 {
            // Exactly at the first sample, or before it: only exact is acceptable.
            return (b.at == t).then(|| values(b));
        }
        let a = &samples[after - 1];
        let span = b.at.duration_since(a.at).as_secs_f64();
        let f = if span > 0.0 {
            t.duration_since(a.at).as_secs_f64() / span
        } else {
            1.0
        };
        let (va, vb) = (values(a), values(b));
        Some(std::array::from_fn(|i| va[i] + f * (vb[i] - va[i])))
    };
    let (start, end) = (at(from)?, at(to)?);
    let delta = |i: usize| (end[i] - start[i]).max(0.0);
    /// Fewer ticks than this in the window make its own split too coarse to use.
    const ENOUGH_TICKS: f64 = 20.0;
    let share = |user: f64, sys: f64| (user + sys > 0.0).then(|| user / (user + sys));
    let user_share = if delta(1) + delta(2) >= ENOUGH_TICKS {
        share(delta(1), delta(2))
    } else {
        share(end[1], end[2])
    };
    Some(TreeUsage {
        cpu: Duration::from_nanos(delta(0).round() as u64),
        user_share,
        switches: Switches {
            voluntary: delta(3).round() as u64,
            involuntary: delta(4).round() as u64,
        },
    })
}

/// The highest figures a series of samples reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peaks {
    /// Peak summed PSS, in bytes.
    pub pss: u64,
    /// Peak summed RSS, in bytes (not necessarily at the same sample as the PSS peak).
    pub rss: u64,
    /// Peak number of live processes.
    pub processes: u64,
    /// Peak number of live threads.
    pub threads: u64,
}

/// The peaks of a series of samples.
pub fn peaks(samples: &[Sample]) -> Peaks {
    samples.iter().fold(Peaks::default(), |p, s| Peaks {
        pss: p.pss.max(s.memory.pss),
        rss: p.rss.max(s.memory.rss),
        processes: p.processes.max(s.processes),
        threads: p.threads.max(s.threads),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, user: u64, sys: u64, vol: u64) -> Sample {
        Sample {
            at,
            cpu_ns: (user + sys) * 10_000_000,
            user_ticks: user,
            sys_ticks: sys,
            switches: Switches {
                voluntary: vol,
                involuntary: 0,
            },
            memory: Memory {
                pss: user,
                rss: sys,
            },
            processes: 1,
            threads: vol,
        }
    }

    /// Instants between samples are interpolated; instants at samples are exact.
    #[test]
    fn window_interpolates_between_samples() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let samples = [
            sample(s(0), 0, 0, 0),
            sample(s(100), 10, 20, 100),
            sample(s(200), 30, 20, 300),
        ];
        let w = window(&samples, s(50), s(200)).expect("covered");
        // CPU: 15 ticks' worth at 50 ms, 50 at 200 ms -> 35 ticks = 350 ms.
        assert_eq!(w.cpu, Duration::from_millis(350));
        // Ticks in the window: user 5 -> 30, sys 10 -> 20: 25 of 35 are user.
        assert_eq!(w.user_share, Some(25.0 / 35.0));
        assert_eq!(w.user().map(|d| d.as_millis()), Some(250));
        assert_eq!(w.switches.voluntary, 250);
    }

    /// With too few ticks inside the window, the split comes from the whole run so far; with
    /// none at all, it is unknown rather than made up.
    #[test]
    fn split_falls_back_to_the_whole_run() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut few = [sample(s(0), 30, 10, 0), sample(s(100), 31, 10, 0)];
        let w = window(&few, s(0), s(100)).expect("covered");
        assert_eq!(w.user_share, Some(31.0 / 41.0));
        few[1].cpu_ns += 5_000_000;
        for smp in &mut few {
            (smp.user_ticks, smp.sys_ticks) = (0, 0);
        }
        let w = window(&few, s(0), s(100)).expect("covered");
        assert_eq!(w.user_share, None);
        assert!(w.cpu > Duration::ZERO);
    }

    /// A window reaching outside the samples has no answer rather than a guessed one.
    #[test]
    fn window_outside_the_samples_is_none() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let samples = [sample(t0, 0, 0, 0), sample(ms(100), 1, 1, 1)];
        assert!(window(&samples, t0, ms(101)).is_none());
        assert!(window(&samples, ms(1), ms(50)).is_some());
    }

    /// A tid whose count falls is a new task: its whole count is added, none is subtracted.
    #[test]
    fn reused_tid_adds_its_whole_count() {
        let mut w = TreeWatch::new(1);
        w.add_switches(
            9,
            Switches {
                voluntary: 10,
                involuntary: 1,
            },
        );
        w.add_switches(
            9,
            Switches {
                voluntary: 15,
                involuntary: 1,
            },
        );
        w.add_switches(
            9,
            Switches {
                voluntary: 3,
                involuntary: 0,
            },
        );
        assert_eq!(
            w.switches,
            Switches {
                voluntary: 18,
                involuntary: 1
            }
        );
    }

    /// Peaks are taken field by field.
    #[test]
    fn peaks_field_by_field() {
        let t0 = Instant::now();
        let p = peaks(&[sample(t0, 5, 1, 2), sample(t0, 3, 9, 1)]);
        assert_eq!(
            p,
            Peaks {
                pss: 5,
                rss: 9,
                processes: 1,
                threads: 2
            }
        );
    }
}
