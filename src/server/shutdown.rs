//! SIGINT and SIGTERM turned into one shutdown signal every model can wait on.
//!
//! A signal handler may only do async-signal-safe things, so this one does three:
//! 1. sets a flag, for loops that check it between blocking calls;
//! 2. writes to an eventfd, for event loops that wait in select, poll or epoll — the self-pipe
//!    trick, with the modern single descriptor;
//! 3. calls `shutdown(2)` on the few descriptors a blocking process has registered
//!    ([`Shutdown::shut_on_signal`], undone when its [`ShutGuard`] drops): a listener shut this
//!    way makes a blocked `accept` fail
//!    with EINVAL, a connection makes a blocked `read` return 0. Checking a flag and then
//!    blocking leaves a window in which the signal is missed; shutting the descriptor closes
//!    it, because the call that would block now returns at once.
//!
//! The handlers are installed without `SA_RESTART`, so a blocked call also returns EINTR.
//!
//! Threaded blocking models, which have a descriptor per thread, keep their connections in a
//! [`ConnSet`] and shut them all from the thread that notices the shutdown.

use std::collections::HashSet;
use std::io;
use std::marker::PhantomData;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::libc;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static EVENT_FD: AtomicI32 = AtomicI32::new(-1);

/// Descriptors the signal handler shuts down, one per [`BlockedIn`].
static SHUT_FDS: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

/// The calls a single-threaded blocking process may be blocked in when a signal comes: one
/// registered descriptor each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockedIn {
    /// Waiting for the next connection: `accept` on the listener (or, in a child fed
    /// descriptors, `recvmsg` on its channel).
    Accept = 0,
    /// Serving one connection: `read` or `write` on it.
    Io = 1,
}

/// A descriptor registered with [`Shutdown::shut_on_signal`]; dropping it clears the
/// registration. It borrows the descriptor, so the compiler sees to it that the registration
/// ends before the descriptor is closed — the handler never shuts a number reused by another
/// socket.
#[derive(Debug)]
#[must_use = "the registration ends when the guard is dropped"]
pub struct ShutGuard<'fd> {
    call: BlockedIn,
    _fd: PhantomData<BorrowedFd<'fd>>,
}

impl Drop for ShutGuard<'_> {
    fn drop(&mut self) {
        SHUT_FDS[self.call as usize].store(-1, Ordering::SeqCst);
    }
}

/// Clears every registration in a freshly forked child: the parent's registrations name the
/// calls the parent blocks in. A child registers what it blocks in itself.
pub fn forget_registrations_after_fork() {
    for fd in &SHUT_FDS {
        fd.store(-1, Ordering::SeqCst);
    }
}

/// A handle on the process's one shutdown signal. Cheap to copy; every copy sees the same state.
#[derive(Clone, Copy, Debug)]
pub struct Shutdown {
    _private: (),
}

extern "C" fn on_signal(_: libc::c_int) {
    // The calls below set errno when they fail (shutdown of an already shut socket: ENOTCONN).
    // A signal that lands between a failed syscall and the read of its errno would hand the
    // interrupted code our errno instead of its own (an `accept` failing with ENOTCONN instead of
    // EINVAL), so errno is saved here and restored on the way out.
    let saved = nix::errno::Errno::last_raw();
    REQUESTED.store(true, Ordering::SeqCst);
    let fd = EVENT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe and the buffer is a live u64. An error (the
        // counter full) still leaves the eventfd readable, which is all that is wanted.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
    for slot in &SHUT_FDS {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: shutdown(2) is async-signal-safe; on a descriptor that is not a socket it
            // fails with ENOTSOCK and does nothing.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
    nix::errno::Errno::set_raw(saved);
}

impl Shutdown {
    /// Installs the SIGINT and SIGTERM handlers (once per process) and returns the handle.
    pub fn install() -> io::Result<Shutdown> {
        static INSTALLED: OnceLock<Result<(), nix::Error>> = OnceLock::new();
        let installed = *INSTALLED.get_or_init(|| {
            let efd =
                EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
            // The eventfd lives as long as the process: leak it into the static.
            EVENT_FD.store(
                std::os::fd::IntoRawFd::into_raw_fd(std::os::fd::OwnedFd::from(efd)),
                Ordering::SeqCst,
            );
            let action = SigAction::new(
                SigHandler::Handler(on_signal),
                SaFlags::empty(),
                SigSet::empty(),
            );
            for signal in [Signal::SIGINT, Signal::SIGTERM] {
                // SAFETY: the handler only calls async-signal-safe functions (see above).
                unsafe { sigaction(signal, &action) }?;
            }
            Ok(())
        });
        installed?;
        Ok(Shutdown { _private: () })
    }

    /// Whether shutdown has been requested.
    #[inline]
    pub fn requested(&self) -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }

    /// Requests shutdown from inside the process, exactly as a signal would.
    pub fn request(&self) {
        on_signal(0);
    }

    /// A descriptor that becomes readable when shutdown is requested, and stays readable: for
    /// event loops to wait on beside their sockets.
    pub fn fd(&self) -> BorrowedFd<'static> {
        // SAFETY: `install` stored a descriptor that is never closed.
        unsafe { BorrowedFd::borrow_raw(EVENT_FD.load(Ordering::SeqCst)) }
    }

    /// Asks the signal handler to `shutdown(2)` `fd` — the descriptor this process is about
    /// to block on in `call` — when a signal arrives, until the returned guard is dropped. Only
    /// for a process with one thread blocked at a time (the listener of a blocking accept loop,
    /// the one connection of a single-threaded server); a threaded model's connections go in a
    /// [`ConnSet`] instead.
    pub fn shut_on_signal<'fd>(&self, call: BlockedIn, fd: BorrowedFd<'fd>) -> ShutGuard<'fd> {
        let raw = fd.as_raw_fd();
        SHUT_FDS[call as usize].store(raw, Ordering::SeqCst);
        // A signal that came before the registration has already been handled: act on it now.
        if self.requested() {
            let _ = nix::sys::socket::shutdown(raw, nix::sys::socket::Shutdown::Both);
        }
        ShutGuard {
            call,
            _fd: PhantomData,
        }
    }
}

/// The live connections of a threaded blocking model, so that the thread that notices shutdown
/// can wake every thread blocked in `read` or `write` by shutting its socket.
#[derive(Debug, Default)]
pub struct ConnSet {
    inner: parking_lot::Mutex<ConnSetInner>,
}

#[derive(Debug, Default)]
struct ConnSetInner {
    fds: HashSet<RawFd>,
    closed: bool,
}

/// A connection registered in a [`ConnSet`]; dropping it deregisters it, then closes it.
#[derive(Debug)]
pub struct Tracked {
    stream: TcpStream,
    set: Arc<ConnSet>,
}

impl ConnSet {
    /// Registers `stream`; `None` if the set has already been shut (the stream is closed).
    pub fn track(self: &Arc<Self>, stream: TcpStream) -> Option<Tracked> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return None;
        }
        inner.fds.insert(stream.as_raw_fd());
        Some(Tracked {
            stream,
            set: Arc::clone(self),
        })
    }

    /// Shuts every registered connection (both directions) and refuses new ones.
    pub fn shut_all(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        for &fd in &inner.fds {
            // The lock is held, so no Tracked has closed this descriptor: the number is still
            // the connection's.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
    }

    /// How many connections are registered.
    pub fn len(&self) -> usize {
        self.inner.lock().fds.len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tracked {
    /// The connection.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Deregister before the field drops and closes the descriptor.
        self.set.inner.lock().fds.remove(&self.stream.as_raw_fd());
    }
}
