//! Syscalls per request, counted by the kernel itself: a perf counter (perf_event_open(2)) on
//! each syscall tracepoint, attached to the server before it runs a single instruction of its
//! own, inherited by every thread and child it will ever start.
//!
//! - **What is counted.** `raw_syscalls:sys_enter` fires on entry to every syscall: its count is
//!   the total. `syscalls:sys_enter_NAME` fires on entry to one syscall: one counter per name in
//!   [`NAMED`]. Nothing is traced per call in user space: the kernel increments a counter, and
//!   the harness reads it twice, at the edges of the measured window.
//! - **Events per wait.** A counter counts calls, not what they returned. But a tracepoint
//!   counter can take a filter (PERF_EVENT_IOC_SET_FILTER, the ftrace filter language), and the
//!   filter language has a bit test: a counter on `syscalls:sys_exit_poll` with the filter
//!   `ret > 0 && ret & 4` counts the calls whose return value has bit 2 set. Fourteen such
//!   counters, one per bit, give the exact sum of the returned values: Σ 2^k · count_k. So the
//!   readiness reports returned by the waits are summed inside the kernel, without a BPF
//!   program and without a record per call. One more counter (`ret >= 16384`) says when a return
//!   was too large for the bits; the figure is then not given. For io_uring the reports are the
//!   completions: `io_uring:io_uring_complete` fires once per completion queue entry posted.
//! - **Inherited from the first instruction.** `inherit` only covers tasks created after the
//!   counter is opened, so the counters are opened by the server's own process in the gap
//!   between fork and exec (a `pre_exec` hook), on itself, and handed to the harness over a
//!   Unix socket (SCM_RIGHTS) before the exec. Every thread and child the server then starts
//!   inherits them; a child's counts fold into the parent counter when it exits, so a read sees
//!   the whole tree, the exited included.
//! - **What it costs.** Enabling a syscall tracepoint sends every syscall of *every* process on
//!   the machine through the kernel's slow syscall path while a counter exists (about 100 ns
//!   per syscall on the 2-vCPU VM the README's figures come from), and every inherited counter
//!   is copied into each new task (about 1.3 KiB each: `perf_event` in /proc/slabinfo).
//!   `compare` therefore counts in a run of its own, never in the run whose CPU, latency and
//!   throughput it reports.
//!
//! Needs tracefs (for the tracepoint ids; mounted here when missing and root) and a
//! perf_event_paranoid setting or capability that allows tracepoint counters (root, or
//! CAP_PERFMON); [`CountPlan::new`] says which is missing.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::raw::{c_char, c_int, c_ulong};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
};
use perf_event_open_sys as perf;
use perf_event_open_sys::bindings::perf_event_attr;

/// The syscalls counted one by one: the ones that tell each model's story. Every other
/// syscall is in the total and shows as `other`. A name whose tracepoint this kernel or
/// architecture lacks (`epoll_wait` on arm64, say) is left out.
pub const NAMED: &[&str] = &[
    "accept",
    "accept4",
    "read",
    "readv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "select",
    "pselect6",
    "poll",
    "ppoll",
    "io_uring_enter",
    "futex",
    "sched_yield",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "close",
    "shutdown",
    "setsockopt",
    "ioctl",
    "fcntl",
    "flock",
    "rt_sigprocmask",
    "mmap",
    "munmap",
    "madvise",
];

/// The waits: calls that sleep until descriptors are ready and say how many are.
pub const WAITS: &[&str] = &[
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "select",
    "pselect6",
    "poll",
    "ppoll",
];

/// The waits whose returned counts are summed: those the C library calls on this
/// architecture (glibc's `epoll_wait`, `poll` and `select` become these syscalls; strace shows
/// it). A wait outside this list that is called anyway leaves events per wait unknown, and
/// says so.
#[cfg(target_arch = "x86_64")]
pub const SUMMED_WAITS: &[&str] = &["epoll_wait", "poll", "pselect6"];
/// The waits whose returned counts are summed: those the C library calls on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub const SUMMED_WAITS: &[&str] = &["epoll_pwait", "ppoll", "pselect6"];

/// The syscalls in families, for the breakdown table and the plot: what each model spends its
/// calls on. A name in none of them is `other`.
pub const FAMILIES: &[(&str, &[&str])] = &[
    ("recv", &["read", "readv", "recvfrom", "recvmsg"]),
    ("send", &["write", "writev", "sendto", "sendmsg"]),
    (
        "wait",
        &[
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
            "select",
            "pselect6",
            "poll",
            "ppoll",
            "io_uring_enter",
        ],
    ),
    ("epoll_ctl", &["epoll_ctl"]),
    ("accept", &["accept", "accept4"]),
    ("close", &["close", "shutdown"]),
    ("futex", &["futex", "sched_yield"]),
    (
        "task",
        &[
            "clone",
            "clone3",
            "fork",
            "vfork",
            "exit",
            "exit_group",
            "wait4",
            "waitid",
        ],
    ),
];

/// The family of a syscall name: one of [`FAMILIES`], or `other`.
pub fn family(name: &str) -> &'static str {
    FAMILIES
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map_or("other", |f| f.0)
}

/// Calls per request summed by family, in [`FAMILIES`] order and `other` last.
pub fn by_family(by_name: &BTreeMap<String, f64>) -> Vec<(&'static str, f64)> {
    let mut out: Vec<(&'static str, f64)> = FAMILIES.iter().map(|f| (f.0, 0.0)).collect();
    out.push(("other", 0.0));
    for (name, v) in by_name {
        let fam = family(name);
        if let Some(slot) = out.iter_mut().find(|s| s.0 == fam) {
            slot.1 += v;
        }
    }
    out
}

/// Bits of a wait's return value that are counted: returns up to 2^14 − 1 are summed exactly
/// (epoll's loops ask for at most 256 events, select returns at most 3 × 1024, poll at most its
/// descriptors).
pub const RET_BITS: u32 = 14;

/// What one counter counts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    /// Every syscall.
    Total,
    /// Calls of one syscall.
    Calls(String),
    /// Calls of a wait whose positive return value has this bit set.
    RetBit { call: &'static str, bit: u32 },
    /// Calls of a wait that returned more than the bits can hold.
    RetOverflow(&'static str),
    /// io_uring completions posted.
    Completions,
}

struct Event {
    role: Role,
    tracepoint: String,
    id: u64,
    filter: Option<CString>,
}

/// The counters to open on a server, resolved against this kernel's tracepoints.
pub struct CountPlan {
    events: Vec<Event>,
    /// Named syscalls this kernel has no tracepoint for.
    missing: Vec<String>,
}

/// Whether and how `compare` counts syscalls.
pub enum Counting {
    /// Not asked for (`--no-syscalls`).
    Off,
    /// Asked for, but this machine refuses: why.
    Unavailable(String),
    /// Ready to attach to each server.
    Ready(CountPlan),
}

impl Counting {
    /// The plan for the standard counters, or why there is none.
    pub fn standard() -> Counting {
        match CountPlan::new(&[]) {
            Ok(plan) => Counting::Ready(plan),
            Err(why) => Counting::Unavailable(why),
        }
    }
}

/// The tracefs `events` folder: where tracefs is mounted, or mounted now at
/// `/sys/kernel/tracing` when it is not and this process is root. Err says why there is none.
pub fn tracefs_events() -> Result<PathBuf, String> {
    const PLACES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let found = || {
        PLACES
            .iter()
            .map(|p| Path::new(p).join("events"))
            .find(|e| e.join("raw_syscalls").is_dir())
    };
    if let Some(events) = found() {
        return Ok(events);
    }
    let root = nix::unistd::geteuid().is_root();
    if !root {
        // Mounted, tracefs is root's alone (mode 0700): another user cannot even list it.
        let unreadable = PLACES.iter().any(
            |p| matches!(fs::read_dir(p), Err(e) if e.kind() == io::ErrorKind::PermissionDenied),
        );
        return Err(if unreadable {
            "tracefs is readable by root only".into()
        } else {
            "tracefs is not mounted, and mounting it needs root".into()
        });
    }
    nix::mount::mount(
        Some("nodev"),
        PLACES[0],
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| format!("tracefs is not mounted, and mounting it failed: {e}"))?;
    found().ok_or_else(|| {
        "tracefs has no raw_syscalls events (a kernel without CONFIG_FTRACE_SYSCALLS)".into()
    })
}

fn tracepoint_id(events: &Path, tracepoint: &str) -> Option<u64> {
    fs::read_to_string(events.join(tracepoint).join("id"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn attr(id: u64) -> perf_event_attr {
    let mut attr = perf_event_attr::default();
    attr.type_ = perf::bindings::PERF_TYPE_TRACEPOINT;
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.config = id;
    // Counting from the start (the harness reads differences), in this task and every task it
    // creates; the kernel side is what is counted, so nothing is excluded.
    attr.set_inherit(1);
    attr
}

impl CountPlan {
    /// The standard counters ([`NAMED`], the total, the wait returns, io_uring completions)
    /// and `extra` syscalls besides (a test's `getppid`). Err says why this machine cannot count:
    /// no tracefs, or perf_event_open refused.
    pub fn new(extra: &[&str]) -> Result<CountPlan, String> {
        let events_dir = tracefs_events()?;
        let mut events = Vec::new();
        let mut missing = Vec::new();
        let mut add = |role: Role, tracepoint: String, filter: Option<String>| -> bool {
            match tracepoint_id(&events_dir, &tracepoint) {
                Some(id) => {
                    events.push(Event {
                        role,
                        tracepoint,
                        id,
                        filter: filter.and_then(|f| CString::new(f).ok()),
                    });
                    true
                }
                None => false,
            }
        };
        if !add(Role::Total, "raw_syscalls/sys_enter".into(), None) {
            return Err("tracefs has no raw_syscalls/sys_enter tracepoint".into());
        }
        for &name in NAMED.iter().chain(extra) {
            let tracepoint = format!("syscalls/sys_enter_{name}");
            if !add(Role::Calls(name.to_string()), tracepoint, None) {
                missing.push(name.to_string());
            }
        }
        for &call in SUMMED_WAITS {
            let tracepoint = format!("syscalls/sys_exit_{call}");
            for bit in 0..RET_BITS {
                let filter = format!("ret > 0 && ret & {}", 1u64 << bit);
                add(Role::RetBit { call, bit }, tracepoint.clone(), Some(filter));
            }
            let filter = format!("ret >= {}", 1u64 << RET_BITS);
            add(Role::RetOverflow(call), tracepoint, Some(filter));
        }
        add(Role::Completions, "io_uring/io_uring_complete".into(), None);
        let plan = CountPlan { events, missing };
        plan.check_permission()?;
        Ok(plan)
    }

    /// How many counters each server gets (each inherited into every task it creates).
    pub fn counters(&self) -> usize {
        self.events.len()
    }

    /// Named syscalls this kernel has no tracepoint for.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// Opens the total counter on this process once and closes it, so that a refusal is told
    /// here, with its reason, rather than from inside each server's start.
    fn check_permission(&self) -> Result<(), String> {
        let mut a = attr(self.events[0].id);
        a.set_inherit(0);
        // SAFETY: `a` is a fully initialised perf_event_attr of its own size; pid 0 and cpu −1
        // count this thread on any CPU; the returned descriptor, if any, is closed at once.
        let fd = unsafe {
            perf::perf_event_open(&mut a, 0, -1, -1, perf::bindings::PERF_FLAG_FD_CLOEXEC as _)
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let paranoid = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
            return Err(format!(
                "perf_event_open refused a tracepoint counter ({e}; kernel.perf_event_paranoid = {paranoid}; needs root or CAP_PERFMON)"
            ));
        }
        // SAFETY: `fd` was just returned by perf_event_open and is owned here alone.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(())
    }

    /// Keeps every tracepoint of the plan registered while the result lives: one disabled
    /// counter per tracepoint, on this thread. Closing the last counter of a tracepoint
    /// unregisters it, and perf_trace_event_unreg() then waits in tracepoint_synchronize_unregister()
    /// for an RCU grace period — about 40 ms here, per tracepoint, so nearly 2 s after every
    /// counting run. Held across a sweep's counting runs, the servers' counters are never the
    /// last. While held, every syscall on the machine takes the slow path (as in a counting run),
    /// so it must not be held across a run whose CPU or latency is measured.
    pub fn hold(&self) -> Result<Registrations, String> {
        let mut ids: Vec<u64> = self.events.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut fds = Vec::with_capacity(ids.len());
        for id in ids {
            let mut a = attr(id);
            a.set_inherit(0);
            a.set_disabled(1);
            // SAFETY: `a` is a fully initialised perf_event_attr of its own size; pid 0 and
            // cpu −1 name this thread on any CPU; the descriptor returned is owned below.
            let fd = unsafe {
                perf::perf_event_open(&mut a, 0, -1, -1, perf::bindings::PERF_FLAG_FD_CLOEXEC as _)
            };
            if fd < 0 {
                return Err(format!(
                    "holding tracepoint {id}: {}",
                    io::Error::last_os_error()
                ));
            }
            // SAFETY: `fd` was just returned by perf_event_open and is owned here alone.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(Registrations { _fds: fds })
    }

    /// Makes `command` open the counters on itself between fork and exec and hand them over;
    /// [`Handoff::receive`] takes them once the command has been spawned.
    pub fn attach(&self, command: &mut Command) -> io::Result<Handoff> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let n = self.events.len();
        if n > SCM_MAX_FD {
            return Err(io::Error::other(format!(
                "{n} counters are more than one message can pass ({SCM_MAX_FD})"
            )));
        }
        let mut child = ChildSide {
            attrs: self.events.iter().map(|e| attr(e.id)).collect(),
            filters: self.events.iter().map(|e| e.filter.clone()).collect(),
            sock: theirs,
            fds: vec![-1; n],
            status: vec![0; n],
            // CMSG_SPACE of n descriptors, with room to spare for the header's alignment.
            control: vec![0u64; (n * 4 + 64).div_ceil(8)],
        };
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: it makes perf_event_open, ioctl, sendmsg and
        // close system calls on buffers allocated before the fork, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                child.open_and_send();
                Ok(())
            });
        }
        Ok(Handoff {
            sock: ours,
            roles: self.events.iter().map(|e| e.role.clone()).collect(),
            tracepoints: self.events.iter().map(|e| e.tracepoint.clone()).collect(),
        })
    }
}

/// Tracepoints kept registered ([`CountPlan::hold`]); they are released when this is dropped.
pub struct Registrations {
    _fds: Vec<OwnedFd>,
}

/// The most descriptors one SCM_RIGHTS message may carry (the kernel's SCM_MAX_FD).
const SCM_MAX_FD: usize = 253;

/// What the child needs to open the counters, allocated before the fork.
struct ChildSide {
    attrs: Vec<perf_event_attr>,
    filters: Vec<Option<CString>>,
    sock: OwnedFd,
    fds: Vec<c_int>,
    /// 0 for a counter opened, else the errno that refused it; sent as the message's bytes.
    status: Vec<i32>,
    /// The control buffer, as u64 for the alignment cmsghdr needs.
    control: Vec<u64>,
}

impl ChildSide {
    /// Opens every counter on this process and sends the descriptors, with a status per
    /// counter, in one message. Never fails the exec: a counter that cannot be opened is
    /// reported as its errno, a message that cannot be sent leaves the harness without
    /// counters, and the server starts either way.
    fn open_and_send(&mut self) {
        let errno = || {
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        };
        let mut opened = 0;
        for i in 0..self.attrs.len() {
            // SAFETY: attrs[i] is an initialised perf_event_attr of its own size; pid 0 is this
            // process (inherited by what it creates after the exec), cpu −1 any CPU.
            let fd = unsafe {
                perf::perf_event_open(
                    &mut self.attrs[i],
                    0,
                    -1,
                    -1,
                    perf::bindings::PERF_FLAG_FD_CLOEXEC as c_ulong,
                )
            };
            if fd < 0 {
                self.status[i] = errno();
                continue;
            }
            if let Some(filter) = &self.filters[i] {
                // SAFETY: `fd` is a perf event just opened; the filter is a NUL-terminated
                // string that the kernel only reads (the binding's pointer is `*mut` by C's
                // signature).
                if unsafe { perf::ioctls::SET_FILTER(fd, filter.as_ptr() as *mut c_char) } < 0 {
                    self.status[i] = errno();
                    // SAFETY: `fd` is ours and not used again.
                    unsafe { libc::close(fd) };
                    continue;
                }
            }
            self.fds[opened] = fd;
            opened += 1;
        }
        let fd_bytes = opened * std::mem::size_of::<c_int>();
        let mut iov = libc::iovec {
            iov_base: self.status.as_mut_ptr().cast(),
            iov_len: self.status.len() * std::mem::size_of::<i32>(),
        };
        // SAFETY: msghdr is plain data; zeroed is its empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if opened > 0 {
            msg.msg_control = self.control.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE only computes a size.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as _;
            // SAFETY: the control buffer holds CMSG_SPACE(fd_bytes) bytes (it was sized for
            // every counter), so the first header and its data fit inside it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
                std::ptr::copy_nonoverlapping(
                    self.fds.as_ptr().cast::<u8>(),
                    libc::CMSG_DATA(cmsg),
                    fd_bytes,
                );
            }
        }
        // SAFETY: `msg` points at the status bytes and the control buffer, both alive here.
        unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        for &fd in &self.fds[..opened] {
            // SAFETY: our copies; the harness holds its own after the send.
            unsafe { libc::close(fd) };
        }
    }
}

/// The harness's end of the hand-over, until the spawned command has sent its counters.
pub struct Handoff {
    sock: OwnedFd,
    roles: Vec<Role>,
    tracepoints: Vec<String>,
}

impl Handoff {
    /// Takes the counters the spawned command opened. Call after `spawn` has returned: the
    /// child sent them before its exec, which `spawn` waits for. Err says why there are none.
    pub fn receive(self) -> Result<Counters, String> {
        let n = self.roles.len();
        let mut status = vec![0u8; n * 4];
        let mut control = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
        let mut iov = [IoSliceMut::new(&mut status)];
        let msg = recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("the server did not hand its counters over: {e}"))?;
        let bytes = msg.bytes;
        let mut fds = Vec::new();
        for c in msg
            .cmsgs()
            .map_err(|e| format!("the counters' message: {e}"))?
        {
            if let ControlMessageOwned::ScmRights(got) = c {
                // SAFETY: descriptors just received are new in this process and owned here.
                fds.extend(
                    got.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if bytes != n * 4 {
            return Err(format!(
                "the counters' message is {bytes} bytes, not {}",
                n * 4
            ));
        }
        let mut fds = fds.into_iter();
        let mut counters = Vec::with_capacity(n);
        let mut refused = Vec::new();
        for (i, role) in self.roles.into_iter().enumerate() {
            let errno = i32::from_ne_bytes([
                status[4 * i],
                status[4 * i + 1],
                status[4 * i + 2],
                status[4 * i + 3],
            ]);
            let fd = if errno == 0 {
                Some(fds.next().ok_or("fewer counters than the message says")?)
            } else {
                refused.push(format!(
                    "{}: {}",
                    self.tracepoints[i],
                    nix::errno::Errno::from_raw(errno).desc()
                ));
                None
            };
            counters.push((role, fd));
        }
        if counters.first().is_none_or(|c| c.1.is_none()) {
            return Err(format!(
                "the total counter was refused ({})",
                refused.join("; ")
            ));
        }
        Ok(Counters { counters, refused })
    }
}

/// The counters of one server's tree.
pub struct Counters {
    counters: Vec<(Role, Option<OwnedFd>)>,
    refused: Vec<String>,
}

/// The counters' values at one instant.
#[derive(Clone, Debug)]
pub struct Reading {
    /// When the reading was taken (before its first read).
    pub at: Instant,
    values: Vec<Option<u64>>,
}

impl Counters {
    /// Reads every counter: the count of the task it was opened on plus every task that
    /// inherited it, live or exited.
    pub fn read(&self) -> io::Result<Reading> {
        let at = Instant::now();
        let mut values = Vec::with_capacity(self.counters.len());
        for (_, fd) in &self.counters {
            values.push(match fd {
                Some(fd) => {
                    let mut buf = [0u8; 8];
                    let n = nix::unistd::read(fd, &mut buf)?;
                    if n != 8 {
                        return Err(io::Error::other(format!("a counter read gave {n} bytes")));
                    }
                    Some(u64::from_ne_bytes(buf))
                }
                None => None,
            });
        }
        Ok(Reading { at, values })
    }

    /// Reads the counters at each of `instants` (in order) on a thread of its own, so that the
    /// readings fall at the edges of a window whatever the caller is doing then.
    pub fn read_at(
        self: &Arc<Self>,
        instants: Vec<Instant>,
    ) -> JoinHandle<io::Result<Vec<Reading>>> {
        let counters = Arc::clone(self);
        thread::spawn(move || {
            let mut readings = Vec::with_capacity(instants.len());
            for t in instants {
                thread::sleep(t.saturating_duration_since(Instant::now()));
                readings.push(counters.read()?);
            }
            Ok(readings)
        })
    }

    /// Counters the kernel refused, with the reason: `tracepoint: error`.
    pub fn refused(&self) -> &[String] {
        &self.refused
    }

    /// What was counted between two readings.
    pub fn between(&self, from: &Reading, to: &Reading) -> Window {
        let delta = |i: usize| -> Option<u64> {
            Some(
                to.values
                    .get(i)
                    .copied()??
                    .saturating_sub(from.values.get(i).copied()??),
            )
        };
        let mut w = Window {
            span: to.at.saturating_duration_since(from.at),
            total: 0,
            calls: BTreeMap::new(),
            ret_sums: BTreeMap::new(),
            overflow: BTreeMap::new(),
            completions: None,
        };
        for (i, (role, _)) in self.counters.iter().enumerate() {
            let Some(d) = delta(i) else {
                if let Role::RetBit { call, .. } | Role::RetOverflow(call) = role {
                    // A bit the kernel refused makes that wait's sum unknown.
                    w.ret_sums.insert(call, None);
                }
                continue;
            };
            match role {
                Role::Total => w.total = d,
                Role::Calls(name) => {
                    w.calls.insert(name.clone(), d);
                }
                Role::RetBit { call, bit } => {
                    let sum = w.ret_sums.entry(call).or_insert(Some(0));
                    if let Some(s) = sum {
                        *s += d << bit;
                    }
                }
                Role::RetOverflow(call) => {
                    w.overflow.insert(call, d);
                }
                Role::Completions => w.completions = Some(d),
            }
        }
        w
    }
}

/// What the counters counted between two readings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Time between the readings.
    pub span: Duration,
    /// Every syscall.
    pub total: u64,
    /// Calls of each named syscall.
    pub calls: BTreeMap<String, u64>,
    /// The sum of the positive returns of each summed wait; `None` where a bit was refused.
    pub ret_sums: BTreeMap<&'static str, Option<u64>>,
    /// Calls of each summed wait that returned more than the bits hold.
    pub overflow: BTreeMap<&'static str, u64>,
    /// io_uring completions posted, if counted.
    pub completions: Option<u64>,
}

/// Why a window has no events per wait when the model never waits (a blocking model).
pub const NO_WAITS: &str = "no wait calls";

/// Syscalls per request over a window, ready for a row.
#[derive(Clone, Debug, PartialEq)]
pub struct PerRequest {
    /// Every syscall, per request.
    pub total: f64,
    /// Each named syscall that was called, and `other` for the rest, per request.
    pub by_name: BTreeMap<String, f64>,
    /// Readiness reports (or completions) per wait call, or why it is not known.
    pub events_per_wait: Result<f64, String>,
}

impl Window {
    /// The readiness reports returned by the waits plus the io_uring completions, divided by
    /// the wait and `io_uring_enter` calls; Err says why there is no figure (no wait at all,
    /// a wait whose returns were not summed, a return too large for the bits).
    pub fn events_per_wait(&self) -> Result<f64, String> {
        let calls = |name: &str| self.calls.get(name).copied().unwrap_or(0);
        let enters = calls("io_uring_enter");
        let waits: u64 = WAITS.iter().map(|w| calls(w)).sum::<u64>() + enters;
        if waits == 0 {
            return Err(NO_WAITS.into());
        }
        let mut events = 0;
        for w in WAITS {
            if calls(w) == 0 {
                continue;
            }
            match self.ret_sums.get(w) {
                Some(Some(sum)) => events += sum,
                _ => return Err(format!("the returns of {w} are not counted")),
            }
            if let Some(&over) = self.overflow.get(w)
                && over > 0
            {
                return Err(format!(
                    "{over} calls of {w} returned {} or more",
                    1u64 << RET_BITS
                ));
            }
        }
        if enters > 0 {
            match self.completions {
                Some(c) => events += c,
                None => return Err("io_uring completions are not counted".into()),
            }
        }
        Ok(events as f64 / waits as f64)
    }

    /// Per request, for `requests_per_sec` requests per second in the load generator's window:
    /// the counts are turned into rates over the span between the two readings first, so that
    /// a reading a little late or early does not bias the ratio.
    pub fn per_request(&self, requests_per_sec: f64) -> Option<PerRequest> {
        let secs = self.span.as_secs_f64();
        if secs <= 0.0 || requests_per_sec <= 0.0 {
            return None;
        }
        let per = |count: u64| count as f64 / secs / requests_per_sec;
        let mut by_name: BTreeMap<String, f64> = self
            .calls
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|(name, &n)| (name.clone(), per(n)))
            .collect();
        let named: u64 = self.calls.values().sum();
        let other = self.total.saturating_sub(named);
        if other > 0 {
            by_name.insert("other".into(), per(other));
        }
        Some(PerRequest {
            total: per(self.total),
            by_name,
            events_per_wait: self.events_per_wait(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(calls: &[(&str, u64)]) -> Window {
        Window {
            span: Duration::from_secs(1),
            total: 100,
            calls: calls.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            ..Window::default()
        }
    }

    /// A blocking model makes no wait: events per wait is unknown, and says why.
    #[test]
    fn no_waits_no_figure() {
        let w = window(&[("read", 10), ("write", 10)]);
        assert_eq!(w.events_per_wait(), Err(NO_WAITS.into()));
    }

    /// The sum of the returns over the calls, with io_uring's completions per enter added in.
    #[test]
    fn events_per_wait_sums_returns_and_completions() {
        let mut w = window(&[(SUMMED_WAITS[0], 4)]);
        w.ret_sums.insert(SUMMED_WAITS[0], Some(10));
        w.overflow.insert(SUMMED_WAITS[0], 0);
        assert_eq!(w.events_per_wait(), Ok(2.5));
        let mut u = window(&[("io_uring_enter", 5)]);
        u.completions = Some(20);
        assert_eq!(u.events_per_wait(), Ok(4.0));
        u.completions = None;
        assert!(u.events_per_wait().is_err());
    }

    /// A wait whose returns were not summed, or a return too big for the bits, leaves no figure
    /// rather than a wrong one.
    #[test]
    fn unsummed_or_overflowing_waits_leave_no_figure() {
        let w = window(&[("epoll_pwait2", 3)]);
        assert!(
            w.events_per_wait()
                .expect_err("unsummed")
                .contains("epoll_pwait2")
        );
        let mut o = window(&[(SUMMED_WAITS[1], 3)]);
        o.ret_sums.insert(SUMMED_WAITS[1], Some(3));
        o.overflow.insert(SUMMED_WAITS[1], 1);
        assert!(
            o.events_per_wait()
                .expect_err("overflow")
                .contains("or more")
        );
    }

    /// Each name falls in one family; unknown names are `other`.
    #[test]
    fn families() {
        let by_name: BTreeMap<String, f64> =
            [("recvfrom", 1.0), ("read", 0.5), ("setsockopt", 0.25)]
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
        let f = by_family(&by_name);
        assert_eq!(f[0], ("recv", 1.5));
        assert_eq!(f.last(), Some(&("other", 0.25)));
        assert_eq!(family("io_uring_enter"), "wait");
    }

    /// Counts become rates over the readings' span before they are divided by the load's rate;
    /// the rest of the total is `other`.
    #[test]
    fn per_request_uses_rates_and_names_the_rest() {
        let mut w = window(&[("read", 1000), ("write", 1000), ("epoll_ctl", 0)]);
        w.span = Duration::from_secs(2);
        w.total = 2500;
        let p = w.per_request(500.0).expect("figures");
        assert_eq!(p.total, 2.5);
        assert_eq!(p.by_name.get("read"), Some(&1.0));
        assert_eq!(p.by_name.get("other"), Some(&0.5));
        assert!(!p.by_name.contains_key("epoll_ctl"));
        assert!(w.per_request(0.0).is_none());
    }
}
