//! Runnable labs: each one puts a classic claim about sockets to the kernel it runs on.
//!
//! Readers learned sockets from sentences such as "accept returns after the third handshake
//! segment" or "close only drops a reference". A lab turns one such sentence into real sockets
//! on loopback, or between two network namespaces (`netns`) when it needs a second host,
//! prints each call and what the kernel answered (return values, errno names, TCP
//! states and queue lengths read through [`diag`], the interface `ss` uses), and ends with
//! whether the claim held here. Where Linux differs from the books, the lab shows what Linux
//! does.
//!
//! A lab records [`Observation`]s under stable keys, so that `server-models lab NAME --json`
//! gives tests the values to assert on, not only the verdict. Where the kernel counts what a
//! lab shows, the lab reads the counters before and after ([`counters`]) and its verdict rests
//! on them.
//!
//! Where the kernel counts what a lab claims — an RST sent, a SYN dropped, a delayed ACK — the
//! verdict rests on the counter ([`counters`], read before and after as `nstat` does), not on
//! inference. The counters belong to a network namespace, so those labs enter a fresh one of
//! their own when they may (`netns::Scope`, as root) and count exactly; otherwise they count in
//! the shared namespace, say so, and check "at least".
//!
//! Every wait in a lab is bounded, and every socket, process and namespace a lab makes is gone
//! when it returns. The labs that fork (`fork-close`, `sigpipe`, `accept-reset`) refuse to run in
//! a process with more than one thread, since after `fork` in a threaded process the child may
//! only call async-signal-safe functions; `peer-gone` and `connect-errors` block in a second
//! thread while the first watches, and join it before they return.

pub mod counters;
pub mod diag;
mod forked;
pub mod netns;

pub use forked::{Forked, Orders, ensure_single_threaded};

mod accept_reset;
mod backlog;
mod buffers;
mod connect_errors;
mod fork_close;
mod half_close;
mod handshake;
mod keepalive;
mod nonblocking_connect;
mod peer_gone;
mod ports;
mod sigpipe;
mod syn_flood;
mod time_wait;

mod herd;
mod io_models;
mod linger;
mod nagle;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrStorage, sockopt,
};
use nix::sys::wait::WaitStatus;
use serde::Serialize;
use serde_json::Value;

/// One lab: its name on the command line, what it shows, the claim it tests, and the code.
pub struct Lab {
    /// The name on the command line (`time-wait`).
    pub name: &'static str,
    /// One line for `server-models lab`.
    pub summary: &'static str,
    /// The classic claim, as the books put it.
    pub claim: &'static str,
    /// Runs the lab, recording what the kernel answered, and judges the claim.
    pub run: fn(&mut Recorder) -> io::Result<Verdict>,
}

/// Every lab, in the order the notes teach them.
pub fn all() -> &'static [Lab] {
    &[
        handshake::LAB,
        backlog::LAB,
        accept_reset::LAB,
        nonblocking_connect::LAB,
        half_close::LAB,
        time_wait::LAB,
        fork_close::LAB,
        sigpipe::LAB,
        buffers::LAB,
        keepalive::LAB,
        nagle::LAB,
        linger::LAB,
        herd::LAB,
        io_models::LAB,
        syn_flood::LAB,
        peer_gone::LAB,
        connect_errors::LAB,
        ports::LAB,
    ]
}

/// Finds a lab by name.
pub fn find(name: &str) -> Option<&'static Lab> {
    all().iter().find(|lab| lab.name == name)
}

/// Whether the claim held, and the one line that says how.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The claim held exactly as the books state it.
    pub held: bool,
    /// One line: what held, and where this kernel differs.
    pub summary: String,
}

impl Verdict {
    /// A verdict from a condition and its line.
    pub fn new(held: bool, summary: impl Into<String>) -> Verdict {
        Verdict {
            held,
            summary: summary.into(),
        }
    }
}

/// One thing the kernel answered, under a key tests can look up.
#[derive(Clone, Debug, Serialize)]
pub struct Observation {
    /// A stable identifier (`completed`, `second_write`).
    pub key: String,
    /// What was done or looked at, in words.
    pub what: String,
    /// What the kernel answered: a number, an errno name, a TCP state, or a small object.
    pub value: Value,
}

/// What a lab run comes to: the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct LabReport {
    /// The lab's name.
    pub lab: &'static str,
    /// The claim it tested.
    pub claim: &'static str,
    /// The kernel release it ran on (`uname -r`).
    pub kernel: String,
    /// Whether the claim held exactly.
    pub held: bool,
    /// The verdict in one line.
    pub verdict: String,
    /// Everything the kernel answered, in order.
    pub observations: Vec<Observation>,
}

/// Collects a lab's observations, and prints each step as it happens unless asked for JSON.
#[derive(Debug)]
pub struct Recorder {
    echo: bool,
    observations: Vec<Observation>,
}

impl Recorder {
    /// A recorder that prints as it goes (`echo`) or stays quiet for `--json`.
    pub fn new(echo: bool) -> Recorder {
        Recorder {
            echo,
            observations: Vec::new(),
        }
    }

    /// Narrates a step (printed only, not recorded).
    pub fn say(&mut self, text: impl fmt::Display) {
        if self.echo {
            println!("  {text}");
        }
    }

    /// Records what the kernel answered and returns the value for the lab's own judgement.
    pub fn saw(&mut self, key: &str, what: impl Into<String>, value: impl Into<Value>) -> Value {
        let observation = Observation {
            key: key.to_string(),
            what: what.into(),
            value: value.into(),
        };
        if self.echo {
            println!(
                "    {:<62} -> {}",
                observation.what,
                render(&observation.value)
            );
        }
        let value = observation.value.clone();
        self.observations.push(observation);
        value
    }
}

/// A value as a person reads it: strings without quotes, everything else as compact JSON.
pub fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs one lab and returns its report; with `echo`, prints the story as it goes.
pub fn run(lab: &Lab, echo: bool) -> io::Result<LabReport> {
    let kernel = kernel_release();
    if echo {
        println!("lab {} (Linux {kernel}): {}", lab.name, lab.summary);
        println!("claim: {}", lab.claim);
    }
    let mut recorder = Recorder::new(echo);
    let verdict = (lab.run)(&mut recorder)?;
    if echo {
        let word = if verdict.held {
            "held"
        } else {
            "did not hold as stated"
        };
        println!("verdict on Linux {kernel}: {word} — {}", verdict.summary);
    }
    Ok(LabReport {
        lab: lab.name,
        claim: lab.claim,
        kernel,
        held: verdict.held,
        verdict: verdict.summary,
        observations: recorder.observations,
    })
}

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    sysctl("kernel/osrelease").unwrap_or_else(|_| "unknown".to_string())
}

/// Reads a sysctl through /proc/sys (`net/core/somaxconn`), trimmed.
pub fn sysctl(name: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/sys/{name}"))?
        .trim()
        .to_string())
}

/// Reads a numeric sysctl.
pub fn sysctl_number(name: &str) -> io::Result<i64> {
    let text = sysctl(name)?;
    text.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sysctl {name} is not a number: {text}"),
        )
    })
}

/// An I/O error as the errno name the man pages use (`ECONNRESET`), or its text if it has none.
pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?}", Errno::from_raw(code)),
        None => e.to_string(),
    }
}

/// A call's outcome as a value: the number it returned, or the errno name it failed with.
pub fn outcome<T: Into<Value>>(result: io::Result<T>) -> Value {
    match result {
        Ok(v) => v.into(),
        Err(e) => Value::String(errno_name(&e)),
    }
}

/// A nix call's outcome: `"ok"` or the errno name.
pub fn status(result: nix::Result<()>) -> Value {
    match result {
        Ok(()) => Value::from("ok"),
        Err(e) => Value::from(format!("{e:?}")),
    }
}

/// The socket's pending error (getsockopt SO_ERROR), which reading also clears: `"0"` when
/// there is none, else the errno name.
pub fn so_error(fd: &impl AsFd) -> io::Result<String> {
    let code = socket::getsockopt(fd, sockopt::SocketError)?;
    Ok(if code == 0 {
        "0".to_string()
    } else {
        format!("{:?}", Errno::from_raw(code))
    })
}

/// Sets an integer socket option that nix does not wrap (TCP_CORK, TCP_QUICKACK,
/// TCP_DEFER_ACCEPT).
pub fn set_int_option(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt(2) reads `size_of::<c_int>()` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads an integer socket option that nix does not wrap.
pub fn int_option(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into a live c_int and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// The kernel's per-connection TCP state (getsockopt TCP_INFO, tcp(7)): segments sent, the
/// delayed-ACK timeout in force, and the rest of `struct tcp_info`.
pub fn tcp_info(fd: &impl AsRawFd) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `info` and updates `len`; a kernel
    // with a shorter struct leaves the rest zero.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(info)
    }
}

/// Waits at most `timeout` for any of `events` on `fd`; returns what poll reported (empty on
/// timeout). A signal does not cut the wait short.
pub fn wait_for(fd: &impl AsFd, events: PollFlags, timeout: Duration) -> io::Result<PollFlags> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll(&mut fds, ms) {
            Ok(0) => return Ok(PollFlags::empty()),
            Ok(_) => return Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
            Err(Errno::EINTR) if !left.is_zero() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Poll flags by name (`["POLLOUT", "POLLERR"]`), the way the man page spells them.
pub fn poll_names(flags: PollFlags) -> Value {
    let names: Vec<&str> = [
        (PollFlags::POLLIN, "POLLIN"),
        (PollFlags::POLLOUT, "POLLOUT"),
        (PollFlags::POLLERR, "POLLERR"),
        (PollFlags::POLLHUP, "POLLHUP"),
        (PollFlags::POLLNVAL, "POLLNVAL"),
    ]
    .into_iter()
    .filter(|(flag, _)| flags.contains(*flag))
    .map(|(_, name)| name)
    .collect();
    Value::from(names)
}

/// 127.0.0.1 with port 0: the kernel picks a free port.
pub fn loopback_any() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
}

/// A fresh IPv4 TCP socket, close-on-exec, nonblocking if asked.
pub fn tcp_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    Ok(socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        flags,
        SockProtocol::Tcp,
    )?)
}

/// Binds a new IPv4 socket to `addr`, with or without SO_REUSEADDR; the bind's errno is the
/// error.
pub fn bind(addr: SocketAddr, reuse_addr: bool) -> io::Result<OwnedFd> {
    let fd = tcp_socket(false)?;
    if reuse_addr {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}

/// Calls listen(2) with exactly `backlog`: nix's `Backlog` stops at the C library's SOMAXCONN,
/// and the labs want to see what the kernel itself does with a larger value.
pub fn listen_exact(fd: OwnedFd, backlog: i32) -> io::Result<TcpListener> {
    // SAFETY: listen(2) on a descriptor we own; it reads no memory of ours.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// Starts a nonblocking connect to `addr`; returns the socket and what connect() said at once
/// (`"EINPROGRESS"` on Linux, even on loopback).
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<(OwnedFd, String)> {
    let fd = tcp_socket(true)?;
    let said = match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    };
    Ok((fd, said))
}

/// Connects to `addr` within a second, as a blocking stream.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1))
}

/// Accepts one connection, waiting at most `timeout` for it.
pub fn accept_within(listener: &TcpListener, timeout: Duration) -> io::Result<TcpStream> {
    if wait_for(listener, PollFlags::POLLIN, timeout)?.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection to accept within {timeout:?}"),
        ));
    }
    let (stream, _) = listener.accept()?;
    Ok(stream)
}

/// The state of the socket `local`→`remote`, once it has left the `passing` states: on
/// loopback the segment that moves it on (a delayed ACK, say) may still be on its way when the
/// lab looks. Waits at most a second; returns the state then, or `"gone"`.
pub fn settled_state(
    local: SocketAddr,
    remote: SocketAddr,
    passing: &[&str],
) -> io::Result<&'static str> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let state = diag::state(local, remote)?;
        if !passing.contains(&state) || Instant::now() >= deadline {
            return Ok(state);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A socket's local address.
pub fn local_addr(fd: &impl AsRawFd) -> io::Result<SocketAddr> {
    let addr: SockaddrIn = socket::getsockname(fd.as_raw_fd())?;
    Ok(SocketAddr::V4(addr.into()))
}

/// Closes a socket with an RST instead of a FIN (SO_LINGER on, timeout 0): the abortive close.
pub fn abort(fd: impl Into<OwnedFd>) -> io::Result<()> {
    let fd = fd.into();
    socket::setsockopt(
        &fd,
        sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )?;
    drop(fd);
    Ok(())
}

/// How far writing to a peer that does not read got: see [`fill`].
#[derive(Debug)]
pub struct Filled {
    /// Bytes the kernel took.
    pub written: usize,
    /// Bytes written when the first EAGAIN came, if one did.
    pub first_eagain: Option<usize>,
    /// How the last write ended: `"EAGAIN"`, another errno name, or why the loop stopped.
    pub stopped: Value,
}

/// Writes `chunk` again and again on a nonblocking stream until it stays unwritable for
/// 100 ms, or `limit` bytes have gone. The first EAGAIN can come while segments are still
/// crossing loopback and holding buffer memory; full is when the socket stays unwritable.
pub fn fill(writer: &TcpStream, chunk: &[u8], limit: usize) -> io::Result<Filled> {
    let mut written = 0usize;
    let mut first_eagain = None;
    let stopped = loop {
        match (&mut &*writer).write(chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                first_eagain.get_or_insert(written);
                if wait_for(writer, PollFlags::POLLOUT, Duration::from_millis(100))?.is_empty() {
                    break outcome::<u64>(Err(e));
                }
            }
            Err(e) => break outcome::<u64>(Err(e)),
        }
        if written >= limit {
            break Value::from("no EAGAIN before the limit");
        }
    };
    Ok(Filled {
        written,
        first_eagain,
        stopped,
    })
}

/// Reads once from a nonblocking (or timed) socket: the byte count, or the errno name.
pub fn read_once(stream: &TcpStream) -> Value {
    let mut buf = [0u8; 4096];
    let mut reader = stream;
    outcome(reader.read(&mut buf).map(|n| n as u64))
}

/// A wait status in words: `"exited 0"`, `"killed by SIGPIPE"`.
pub fn describe_status(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {}", sig.as_str()),
        other => format!("{other:?}"),
    }
}

/// Waits at most `timeout` for a child we started; kills it past that.
pub fn wait_child(child: &mut Child, timeout: Duration) -> io::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("child {} did not exit within {timeout:?}", child.id()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child's exit status in words, like [`describe_status`].
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("killed by {}", sig.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// Milliseconds in a duration, rounded down, for observations.
pub fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
