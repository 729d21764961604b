//! `io-models`: UNP ch. 6's five I/O models, one after another on one socket.
//!
//! For each model a peer thread waits 30 ms and then writes "ping"; this thread receives it:
//!
//! 1. **blocking** (阻塞): read() sleeps until the bytes are there.
//! 2. **nonblocking** (非阻塞): read() returns EAGAIN at once, and the program asks again and
//!    again — counted — until the bytes are there.
//! 3. **I/O multiplexing** (I/O 复用 / 多路 I/O 转接): select() sleeps until the socket is
//!    readable, then read() copies.
//! 4. **signal-driven** (信号驱动): F_SETOWN names this process, F_SETSIG asks for SIGIO with
//!    the descriptor in `si_fd`, O_ASYNC turns it on; the program goes on with other work and
//!    a SIGIO handler says when the bytes have come; then read() copies.
//! 5. **asynchronous** (异步): the program asks for the whole operation and is told when the
//!    bytes are already in its buffer. The books' call is POSIX aio_read; on Linux glibc
//!    implements it in user space with a helper thread that does an ordinary blocking read
//!    (aio(7)), which the lab shows by counting this process's threads. io_uring is the
//!    kernel's own asynchronous model: one IORING_OP_RECV submitted, the program goes on, and
//!    the completion arrives with the bytes copied, no read() called and no thread of ours
//!    asleep in the copy.
//!
//! In the books' terms the first four are synchronous: the process is blocked while the
//! kernel copies the data to it (in read), however it learned the data was there.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::select::{FdSet, select};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::time::TimeVal;
use serde_json::{Value, json};

use super::{Lab, Recorder, Verdict, accept_within, connect, loopback_any, millis, outcome};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "io-models",
    summary: "UNP ch. 6's five I/O models on one socket: blocking, nonblocking, select, SIGIO, asynchronous",
    claim: "there are five I/O models — blocking, nonblocking, I/O multiplexing (select/poll), \
            signal-driven (SIGIO) and asynchronous (POSIX aio_read); the first four block the \
            process while the kernel copies the data, and with aio_read the kernel does the \
            whole operation and tells the process when the data is in its buffer",
    run,
};

const MESSAGE: &[u8] = b"ping";
/// How long the peer waits before it writes, each time.
const DELAY: Duration = Duration::from_millis(30);
const WAIT: Duration = Duration::from_secs(2);

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    let peer_end = connect(listener.local_addr()?)?;
    let sock = accept_within(&listener, WAIT)?;
    sock.set_read_timeout(Some(WAIT))?;

    // The peer thread must not take the SIGIO meant for this one: a signal sent to the
    // process goes to any thread that does not block it, and a new thread starts with its
    // creator's mask.
    let mut sigio = SigSet::empty();
    sigio.add(Signal::SIGIO);
    sigio.thread_block()?;
    let (go, orders) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let peer = s.spawn(move || -> io::Result<()> {
            while orders.recv().is_ok() {
                std::thread::sleep(DELAY);
                (&peer_end).write_all(MESSAGE)?;
            }
            Ok(())
        });
        let unblocked = sigio.thread_unblock();
        let result = unblocked
            .map_err(io::Error::from)
            .and_then(|()| models(rec, &sock, &go));
        drop(go);
        let peer_result = peer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the peer thread panicked")));
        result.and_then(|v| peer_result.map(|()| v))
    })
}

/// The five models in turn; the verdict from what each gave.
fn models(rec: &mut Recorder, sock: &TcpStream, go: &mpsc::Sender<()>) -> io::Result<Verdict> {
    let start_peer = || {
        go.send(())
            .map_err(|_| io::Error::other("the peer thread is gone"))
    };
    rec.say(format!(
        "each time, the peer writes {:?} {} ms after being told to",
        String::from_utf8_lossy(MESSAGE),
        DELAY.as_millis()
    ));

    // 1. Blocking.
    start_peer()?;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = (&mut &*sock).read(&mut buf)?;
    let blocking = rec.saw(
        "blocking",
        "1. blocking read(): bytes, ms asleep in it",
        json!({ "read": received(&buf[..n]), "blocked_ms": millis(start.elapsed()) }),
    );

    // 2. Nonblocking: ask until there is something.
    sock.set_nonblocking(true)?;
    start_peer()?;
    let start = Instant::now();
    let mut eagain = 0u64;
    let got = loop {
        match (&mut &*sock).read(&mut buf) {
            Ok(n) => break received(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < WAIT => {
                eagain += 1
            }
            Err(e) => break outcome::<u64>(Err(e)),
        }
    };
    let nonblocking = rec.saw(
        "nonblocking",
        "2. nonblocking read() in a loop: EAGAINs before the bytes, ms",
        json!({ "eagain": eagain, "read": got, "ms": millis(start.elapsed()) }),
    );

    // 3. Multiplexing: sleep in select(), then read.
    start_peer()?;
    let start = Instant::now();
    let mut readable = FdSet::new();
    readable.insert(sock.as_fd());
    let mut timeout = TimeVal::new(2, 0);
    let ready = select(None, &mut readable, None, None, &mut timeout)?;
    let waited = millis(start.elapsed());
    let n = (&mut &*sock).read(&mut buf)?;
    let multiplexed = rec.saw(
        "select",
        "3. select(readfds = {sock}): ready count, ms asleep; then read()",
        json!({ "select": ready, "waited_ms": waited, "read": received(&buf[..n]) }),
    );

    // 4. Signal-driven.
    let signal_driven = rec.saw(
        "sigio",
        "4. F_SETOWN, F_SETSIG SIGIO, O_ASYNC; other work until the handler runs; then read()",
        sigio_model(sock, &start_peer)?,
    );

    // 5a. POSIX aio, as glibc does it.
    sock.set_nonblocking(false)?;
    let aio = rec.saw(
        "posix_aio",
        "5. aio_read(): this process's threads before and while it waits; what it returned",
        aio_model(sock, &start_peer)?,
    );

    // 5b. io_uring.
    let uring = rec.saw(
        "io_uring",
        "5. io_uring: one RECV submitted, no read() called; CQ checks until the completion",
        uring_model(sock, &start_peer)?,
    );

    let ping = Value::from(String::from_utf8_lossy(MESSAGE).into_owned());
    let floor = millis(DELAY) / 2;
    let blocked = blocking["read"] == ping && blocking["blocked_ms"].as_u64() >= Some(floor);
    let polled = nonblocking["read"] == ping && nonblocking["eagain"].as_u64() >= Some(1);
    let selected = multiplexed["select"] == 1 && multiplexed["read"] == ping;
    let signalled = signal_driven["sigio"].as_u64() >= Some(1)
        && signal_driven["si_code"] == "POLL_IN"
        && signal_driven["si_fd_is_sock"] == true
        && signal_driven["read"] == ping;
    let aio_threads = aio["threads_while_waiting"].as_u64() > aio["threads_before"].as_u64();
    let aio_read = aio["returned"] == ping;
    let uring_done = uring["res"] == MESSAGE.len() && uring["buffer"] == ping;
    let summary = format!(
        "blocking read slept {} ms; nonblocking read said EAGAIN {} times first; select slept \
         {} ms; {} SIGIO ({}) came while the program worked; aio_read {} — glibc ran it on a \
         helper thread ({} threads while it waited, {} before), so POSIX aio on Linux is \
         threads doing a blocking read; {}",
        blocking["blocked_ms"],
        nonblocking["eagain"],
        multiplexed["waited_ms"],
        signal_driven["sigio"],
        super::render(&signal_driven["si_code"]),
        if aio_read {
            "returned the bytes"
        } else {
            "failed"
        },
        aio["threads_while_waiting"],
        aio["threads_before"],
        if uring_done {
            format!(
                "io_uring's RECV completed with res {} and the bytes in the buffer, no read() \
                 and no thread of ours blocked: the asynchronous model",
                uring["res"]
            )
        } else {
            format!("io_uring not shown: {}", super::render(&uring["error"]))
        }
    );
    // The books' asynchronous model is aio_read done by the kernel: on glibc it is not.
    let books = !aio_threads;
    Ok(Verdict::new(
        blocked && polled && selected && signalled && aio_read && uring_done && books,
        summary,
    ))
}

/// The bytes as text, for observations.
fn received(bytes: &[u8]) -> Value {
    Value::from(String::from_utf8_lossy(bytes).into_owned())
}

/// SIGIOs delivered, and what the last one's siginfo said.
static SIGIOS: AtomicU32 = AtomicU32::new(0);
static SIGIO_CODE: AtomicI32 = AtomicI32::new(0);
static SIGIO_FD: AtomicI32 = AtomicI32::new(-1);

/// The head of a `siginfo_t` for SIGIO/SIGPOLL (include/uapi/asm-generic/siginfo.h): after
/// signo, errno and code, the `_sigpoll` member of the union, `long si_band; int si_fd`.
/// `repr(C)` puts `band` at the union's offset (16 on 64-bit, 12 on 32-bit).
#[repr(C)]
struct SigPollInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    band: libc::c_long,
    fd: libc::c_int,
}

/// The SIGIO handler: only atomic stores, which are async-signal-safe.
extern "C" fn on_sigio(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t, at least as large as SigPollInfo; for a
        // SIGIO queued by F_SETSIG its union holds the _sigpoll member.
        let info = unsafe { &*info.cast::<SigPollInfo>() };
        SIGIO_CODE.store(info.code, Ordering::SeqCst);
        SIGIO_FD.store(info.fd, Ordering::SeqCst);
    }
    SIGIOS.fetch_add(1, Ordering::SeqCst);
}

/// fcntl(2) commands libc does not define for this target (include/uapi/asm-generic/fcntl.h).
const F_SETSIG: libc::c_int = 10;
/// `si_code` of a SIGIO for readable and writable data (include/uapi/asm-generic/siginfo.h).
const POLL_IN: libc::c_int = 1;
const POLL_OUT: libc::c_int = 2;

/// fcntl(fd, cmd, arg) with an integer argument.
fn fcntl_int(fd: &impl AsRawFd, cmd: libc::c_int, arg: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: fcntl(2) with an integer argument reads no memory of ours.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Model 4: SIGIO tells the program, which meanwhile counts the other work it did.
fn sigio_model(sock: &TcpStream, start_peer: &dyn Fn() -> io::Result<()>) -> io::Result<Value> {
    let action = SigAction::new(
        SigHandler::SigAction(on_sigio),
        SaFlags::SA_SIGINFO | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only does atomic stores; nothing else in this process handles SIGIO.
    let previous = unsafe { signal::sigaction(Signal::SIGIO, &action) }?;
    SIGIOS.store(0, Ordering::SeqCst);
    let pid = nix::unistd::getpid().as_raw();
    let flags = fcntl_int(sock, libc::F_GETFL, 0)?;
    let setup = fcntl_int(sock, libc::F_SETOWN, pid)
        .and_then(|_| fcntl_int(sock, F_SETSIG, libc::SIGIO))
        .and_then(|_| {
            fcntl_int(
                sock,
                libc::F_SETFL,
                flags | libc::O_ASYNC | libc::O_NONBLOCK,
            )
        });
    let result = setup.and_then(|_| {
        start_peer()?;
        let start = Instant::now();
        let mut other_work = 0u64;
        while SIGIOS.load(Ordering::SeqCst) == 0 && start.elapsed() < WAIT {
            // The program's "other work": here, short naps, counted.
            std::thread::sleep(Duration::from_millis(1));
            other_work += 1;
        }
        let signalled_ms = millis(start.elapsed());
        let mut buf = [0u8; 64];
        let read = match (&mut &*sock).read(&mut buf) {
            Ok(n) => received(&buf[..n]),
            Err(e) => outcome::<u64>(Err(e)),
        };
        // Any more SIGIOs for the same bytes?
        std::thread::sleep(Duration::from_millis(50));
        let code = SIGIO_CODE.load(Ordering::SeqCst);
        Ok(json!({
            "sigio": SIGIOS.load(Ordering::SeqCst),
            "si_code": match code {
                POLL_IN => "POLL_IN".to_string(),
                POLL_OUT => "POLL_OUT".to_string(),
                other => other.to_string(),
            },
            "si_fd_is_sock": SIGIO_FD.load(Ordering::SeqCst) == sock.as_raw_fd(),
            "signalled_ms": signalled_ms,
            "other_work": other_work,
            "read": read,
        }))
    });
    // Off again, and the old disposition back, whatever happened.
    let _ = fcntl_int(sock, libc::F_SETFL, flags);
    // SAFETY: restores the disposition saved above.
    let _ = unsafe { signal::sigaction(Signal::SIGIO, &previous) };
    result
}

/// This process's thread count (/proc/self/status).
fn threads() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads line in /proc/self/status"))
}

/// Model 5 as POSIX has it: aio_read, completion polled with aio_error.
fn aio_model(sock: &TcpStream, start_peer: &dyn Fn() -> io::Result<()>) -> io::Result<Value> {
    let threads_before = threads()?;
    // Boxed, so that on a timeout both can be leaked instead of freed under a pending read.
    let mut buf = Box::new([0u8; 64]);
    // SAFETY: aiocb is plain data; all zeroes is the documented way to start one (aio(7)).
    let mut cb: Box<libc::aiocb> = Box::new(unsafe { std::mem::zeroed() });
    cb.aio_fildes = sock.as_raw_fd();
    cb.aio_buf = buf.as_mut_ptr().cast();
    cb.aio_nbytes = buf.len();
    cb.aio_sigevent.sigev_notify = libc::SIGEV_NONE;
    start_peer()?;
    // SAFETY: `cb` and `buf` stay alive and unmoved until the request completes, or are
    // leaked below if it does not.
    if unsafe { libc::aio_read(&mut *cb) } != 0 {
        return Ok(json!({ "error": super::errno_name(&io::Error::last_os_error()) }));
    }
    let threads_while_waiting = threads()?;
    let start = Instant::now();
    let mut checks = 0u64;
    loop {
        // SAFETY: `cb` is the control block of the request submitted above.
        let state = unsafe { libc::aio_error(&*cb) };
        if state != libc::EINPROGRESS {
            break;
        }
        if start.elapsed() >= WAIT {
            // SAFETY: cancels the request submitted above on its own descriptor.
            unsafe { libc::aio_cancel(sock.as_raw_fd(), &mut *cb) };
            // The read may still be running in glibc's thread: never free what it writes to.
            Box::leak(cb);
            Box::leak(buf);
            return Ok(json!({ "error": "no completion within 2 s" }));
        }
        std::thread::sleep(Duration::from_millis(1));
        checks += 1;
    }
    // SAFETY: the request has completed (aio_error no longer EINPROGRESS); aio_return is
    // called once, as aio(7) requires.
    let n = unsafe { libc::aio_return(&mut *cb) };
    let returned = match usize::try_from(n) {
        Ok(n) => received(&buf[..n.min(buf.len())]),
        Err(_) => Value::from(super::errno_name(&io::Error::last_os_error())),
    };
    Ok(json!({
        "threads_before": threads_before,
        "threads_while_waiting": threads_while_waiting,
        "checks": checks,
        "returned": returned,
    }))
}

/// Model 5 as the Linux kernel has it: io_uring.
fn uring_model(sock: &TcpStream, start_peer: &dyn Fn() -> io::Result<()>) -> io::Result<Value> {
    use io_uring::{IoUring, opcode, types};
    let mut ring = match IoUring::new(4) {
        Ok(ring) => ring,
        Err(e) => return Ok(json!({ "error": super::errno_name(&e) })),
    };
    let mut buf = Box::new([0u8; 64]);
    let recv = opcode::Recv::new(types::Fd(sock.as_raw_fd()), buf.as_mut_ptr(), 64)
        .build()
        .user_data(1);
    start_peer()?;
    // SAFETY: `buf` stays alive and unmoved until the completion arrives, or is leaked below.
    unsafe { ring.submission().push(&recv) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    let start = Instant::now();
    let submitted = ring.submit()?;
    let submit_us = start.elapsed().as_micros() as u64;
    let mut checks = 0u64;
    let cqe = loop {
        // Reading the completion queue is reading shared memory: no system call.
        if let Some(cqe) = ring.completion().next() {
            break cqe;
        }
        if start.elapsed() >= WAIT {
            Box::leak(buf);
            std::mem::forget(ring);
            return Ok(json!({ "error": "no completion within 2 s" }));
        }
        std::thread::sleep(Duration::from_millis(1));
        checks += 1;
    };
    let res = cqe.result();
    let buffer = match usize::try_from(res) {
        Ok(n) => received(&buf[..n.min(buf.len())]),
        Err(_) => Value::from(format!(
            "{:?}",
            nix::errno::Errno::from_raw(res.saturating_neg())
        )),
    };
    Ok(json!({
        "submitted": submitted,
        "submit_us": submit_us,
        "checks": checks,
        "res": res,
        "buffer": buffer,
    }))
}
