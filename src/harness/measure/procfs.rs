//! Reading one process from /proc: its CPU times, memory, threads, context switches and children.
//!
//! Every reader takes a pid that may vanish at any moment (a forked child exits, a thread ends):
//! a vanished process is an ordinary `NotFound` error that the caller skips, not a failure.

use std::fs;
use std::io;

/// A process's `/proc/PID/stat`, the fields the harness reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// The process state: `R` running, `S` sleeping, `Z` zombie (exited, not yet reaped), ...
    pub state: char,
    /// The parent's pid.
    pub ppid: i32,
    /// CPU in user mode, in clock ticks, of every thread of the process, live or exited.
    pub utime: u64,
    /// CPU in kernel mode, in clock ticks.
    pub stime: u64,
    /// User CPU of the children this process has waited for (reaped), in clock ticks.
    pub cutime: u64,
    /// Kernel CPU of the reaped children, in clock ticks.
    pub cstime: u64,
    /// How many threads the process has now.
    pub num_threads: u64,
}

/// Parses the text of `/proc/PID/stat`.
///
/// The second field, the command name in parentheses, may itself hold spaces and parentheses,
/// so the fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) ...
    // num_threads(20). `fields[0]` is field 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        utime: field(14)?,
        stime: field(15)?,
        // cutime and cstime are signed in the kernel's format (`long`), never negative in practice.
        cutime: field(16)?,
        cstime: field(17)?,
        num_threads: field(20)?,
    })
}

/// Reads `/proc/PID/stat`.
pub fn stat(pid: i32) -> io::Result<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| invalid(format!("/proc/{pid}/stat: unexpected format")))
}

/// Resident memory of one process, from `/proc/PID/smaps_rollup`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Proportional set size: each resident page divided by the number of processes mapping
    /// it, so that summing PSS over processes counts every page once.
    pub pss: u64,
    /// Resident set size: every resident page in full, however many processes share it.
    pub rss: u64,
}

/// Parses the text of `/proc/PID/smaps_rollup` (values in kB) into bytes.
pub fn parse_smaps_rollup(text: &str) -> Option<Memory> {
    let kb = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Memory {
        pss: kb("Pss:")? * 1024,
        rss: kb("Rss:")? * 1024,
    })
}

/// Reads `/proc/PID/smaps_rollup` (Linux 4.14). The kernel walks the page tables to answer, so
/// this costs in proportion to the process's mapped memory.
pub fn memory(pid: i32) -> io::Result<Memory> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    parse_smaps_rollup(&text)
        .ok_or_else(|| invalid(format!("/proc/{pid}/smaps_rollup: unexpected format")))
}

/// The anonymous part of a process's PSS, in bytes: `Pss_Anon` of `/proc/PID/smaps_rollup`
/// (Linux 5.3) — its heap, stacks and other private memory, shared only with processes it
/// forked. The file-backed part (the binary's text, the C library) moves whenever another
/// process mapping the same files starts or exits, whatever this one does.
pub fn anon_pss(pid: i32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss_Anon:"))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| invalid(format!("/proc/{pid}/smaps_rollup: no Pss_Anon line")))
}

/// Context switches of one task (thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    /// The task gave up the CPU itself: it blocked in a read, a wait, a futex.
    pub voluntary: u64,
    /// The scheduler took the CPU away: its slice ran out or a more urgent task woke.
    pub involuntary: u64,
}

/// Parses the context-switch lines of a `/proc/.../status` file.
pub fn parse_switches(text: &str) -> Option<Switches> {
    let value = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().parse().ok()
    };
    Some(Switches {
        voluntary: value("voluntary_ctxt_switches:")?,
        involuntary: value("nonvoluntary_ctxt_switches:")?,
    })
}

/// The thread ids of a process, from `/proc/PID/task`.
pub fn tasks(pid: i32) -> io::Result<Vec<i32>> {
    let mut tids = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Reads the context switches of one task. `/proc/PID/status` counts the thread-group leader
/// only, so a process's total is the sum over `/proc/PID/task/TID/status`.
pub fn task_switches(pid: i32, tid: i32) -> io::Result<Switches> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?;
    parse_switches(&text)
        .ok_or_else(|| invalid(format!("/proc/{pid}/task/{tid}/status: unexpected format")))
}

/// The pids of the children of a process: the union of `/proc/PID/task/TID/children` over
/// its threads (a child belongs to the thread that forked it).
pub fn children(pid: i32) -> io::Result<Vec<i32>> {
    let mut kids = Vec::new();
    for tid in tasks(pid)? {
        match fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
            Ok(text) => kids.extend(
                text.split_ascii_whitespace()
                    .filter_map(|s| s.parse::<i32>().ok()),
            ),
            // The thread ended since the directory was listed.
            Err(e) if vanished(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(kids)
}

/// The root and every live descendant, parents before children. A process that exits during
/// the walk is left out, not reported as an error.
pub fn tree(root: i32) -> io::Result<Vec<i32>> {
    let mut pids = vec![root];
    let mut next = 0;
    while next < pids.len() {
        match children(pids[next]) {
            Ok(kids) => pids.extend(kids),
            Err(e) if vanished(&e) && next > 0 => {}
            Err(e) => return Err(e),
        }
        next += 1;
    }
    Ok(pids)
}

/// The open descriptors of a process: the entries of `/proc/PID/fd`.
pub fn descriptor_count(pid: i32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// The inodes of the sockets a process holds open: the `socket:[INODE]` links of
/// `/proc/PID/fd` (proc(5)), the numbers sock_diag reports as each socket's inode.
pub fn socket_inodes(pid: i32) -> io::Result<Vec<u64>> {
    let mut inodes = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed since the directory was listed has no link to read.
        let Ok(link) = fs::read_link(entry?.path()) else {
            continue;
        };
        if let Some(inode) = link
            .to_str()
            .and_then(|l| l.strip_prefix("socket:["))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            inodes.push(inode);
        }
    }
    Ok(inodes)
}

/// Whether an error reading /proc means the process or thread is gone (it exited, or exited
/// and was reaped, between listing and reading).
pub fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ESRCH)
}

/// CPU time of a process's main thread, in nanoseconds, from `/proc/PID/schedstat`: the
/// scheduler's own count, exact where `stat` rounds down to clock ticks. It is the main
/// thread's alone, so it is the process's only while the process has one thread.
pub fn main_thread_runtime_ns(pid: i32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    text.split_ascii_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid(format!("/proc/{pid}/schedstat: unexpected format")))
}

/// Clock ticks per second, the unit of the CPU fields of `/proc/PID/stat` (`_SC_CLK_TCK`).
pub fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        // Linux has reported USER_HZ = 100 to user space on every architecture for decades.
        _ => 100,
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command name with spaces and parentheses does not shift the fields.
    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let text = "42 (a (b) c) S 7 42 42 0 -1 4194304 1 0 0 0 11 22 33 44 20 0 5 0 1 2 3";
        let s = parse_stat(text).expect("parses");
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 7,
                utime: 11,
                stime: 22,
                cutime: 33,
                cstime: 44,
                num_threads: 5
            }
        );
    }

    /// Truncated input is refused rather than read as zeros.
    #[test]
    fn truncated_stat_is_refused() {
        assert_eq!(parse_stat("42 (x) S 7 42 42 0 -1 4194304 1 0 0 0 11"), None);
    }

    /// Kilobytes become bytes, and Pss is not confused with Pss_Anon.
    #[test]
    fn smaps_rollup_in_bytes() {
        let text =
            "55-7f ---p 00000000 00:00 0 [rollup]\nRss:  1760 kB\nPss:  281 kB\nPss_Anon: 116 kB\n";
        assert_eq!(
            parse_smaps_rollup(text),
            Some(Memory {
                pss: 281 * 1024,
                rss: 1760 * 1024
            })
        );
    }

    /// Both switch counts are read.
    #[test]
    fn switches_from_status() {
        let text = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(
            parse_switches(text),
            Some(Switches {
                voluntary: 12,
                involuntary: 3
            })
        );
    }

    /// This process is found as the root of its own tree, with at least one task.
    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        assert_eq!(tree(me).expect("tree")[0], me);
        assert!(stat(me).expect("stat").num_threads >= 1);
        assert!(memory(me).expect("memory").pss > 0);
        let anon = anon_pss(me).expect("anonymous PSS");
        assert!(anon > 0 && anon <= memory(me).expect("memory").pss);
        assert!(!tasks(me).expect("tasks").is_empty());
    }

    /// A socket this process opens is among its descriptors, by the inode its link names.
    #[test]
    fn finds_this_process_sockets() {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id() as i32;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let inode = fs::metadata(format!("/proc/self/fd/{fd}"))
            .expect("stat the socket")
            .ino();
        assert!(socket_inodes(me).expect("sockets").contains(&inode));
        assert!(descriptor_count(me).expect("fd") >= 1);
    }
}
