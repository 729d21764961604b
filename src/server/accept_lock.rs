//! How preforked children take turns at `accept` (Stevens, UNP ch. 30.7–30.8): not at all, a
//! file lock, or a mutex in memory the processes share.
//!
//! Why lock at all: on some kernels N processes blocked in `accept` on one listener were all
//! woken by each connection (the thundering herd, 惊群), and on some systems `accept` from
//! several processes at once was not even safe. A lock around `accept` lets one child wait in it
//! while the others wait for the lock. Linux has woken a single `accept` waiter since 2.4
//! (`server-models lab herd` counts it), so here the lock only adds cost — which is the
//! measurement worth making.
//!
//! - `fcntl`: a POSIX record lock (`F_SETLKW`) on a temporary file. Record locks belong to the
//!   *process*, so one descriptor inherited through `fork` serves every child. Two syscalls per
//!   accept, and the kernel's lock lists in between. Released by the kernel if the holder dies.
//! - `flock`: a BSD `flock(2)` lock on the same kind of file. These locks belong to the *open file
//!   description*, which `fork` shares — a lock taken through an inherited descriptor would be
//!   held by every child at once and exclude nobody — so each child opens the file anew, through
//!   `/proc/self/fd`. Also released if the holder dies.
//! - `mutex`: a pthread mutex with PTHREAD_PROCESS_SHARED in a `MAP_SHARED` page. Uncontended,
//!   lock and unlock are one atomic instruction each, no syscall; contended, a futex. It is
//!   *robust*: if its holder dies, the next locker gets EOWNERDEAD and repairs it, where an
//!   ordinary mutex would hang every other child forever.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use nix::fcntl::{self, FcntlArg, OFlag};
use nix::libc;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use nix::sys::stat::Mode;

/// How the children of a preforked server serialize `accept`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AcceptLock {
    /// Every child blocks in `accept` itself; the kernel picks which one wakes.
    #[default]
    None,
    /// A POSIX record lock (`fcntl(F_SETLKW)`) on a temporary file: Stevens' `my_lock_wait`.
    Fcntl,
    /// A BSD `flock(2)` lock on a temporary file, opened anew by each child.
    Flock,
    /// A process-shared, robust pthread mutex in a `MAP_SHARED` page.
    Mutex,
}

impl AcceptLock {
    /// Every choice, for command-line help.
    pub const ALL: [AcceptLock; 4] = [
        AcceptLock::None,
        AcceptLock::Fcntl,
        AcceptLock::Flock,
        AcceptLock::Mutex,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AcceptLock::None => "none",
            AcceptLock::Fcntl => "fcntl",
            AcceptLock::Flock => "flock",
            AcceptLock::Mutex => "mutex",
        }
    }
}

impl std::str::FromStr for AcceptLock {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AcceptLock::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                format!("unknown accept lock '{s}' (expected none, fcntl, flock or mutex)")
            })
    }
}

/// The lock as the parent makes it, before any fork; each child then calls [`SharedLock::child`].
#[derive(Debug)]
pub struct SharedLock {
    kind: AcceptLock,
    /// The lock file (fcntl, flock): unnamed (O_TMPFILE), so nothing is left behind.
    file: Option<File>,
    /// The mutex's page (mutex).
    mutex: Option<NonNull<libc::pthread_mutex_t>>,
}

impl SharedLock {
    /// Makes the lock: a temporary file, or a mutex in a shared page, or nothing.
    pub fn new(kind: AcceptLock) -> io::Result<SharedLock> {
        let mut lock = SharedLock {
            kind,
            file: None,
            mutex: None,
        };
        match kind {
            AcceptLock::None => {}
            AcceptLock::Fcntl | AcceptLock::Flock => {
                let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
                let fd: OwnedFd =
                    fcntl::open(&std::env::temp_dir(), flags, Mode::S_IRUSR | Mode::S_IWUSR)?;
                lock.file = Some(File::from(fd));
            }
            AcceptLock::Mutex => lock.mutex = Some(shared_mutex()?),
        }
        Ok(lock)
    }

    /// The handle one child locks with; call it in the child, after `fork`.
    pub fn child(&self) -> io::Result<ChildLock<'_>> {
        let own = match (self.kind, &self.file) {
            // A new open file description, so that this child's flock is its own.
            (AcceptLock::Flock, Some(file)) => Some(
                File::options()
                    .read(true)
                    .write(true)
                    .open(format!("/proc/self/fd/{}", file.as_raw_fd()))?,
            ),
            _ => None,
        };
        Ok(ChildLock { shared: self, own })
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if let Some(mutex) = self.mutex {
            // SAFETY: the page was mapped by `shared_mutex` and no child is left to use it
            // (the parent drops the lock after reaping them).
            unsafe {
                let _ = munmap(mutex.cast(), PAGE);
            }
        }
    }
}

const PAGE: usize = 4096;

/// A robust, process-shared pthread mutex in a fresh `MAP_SHARED` page.
fn shared_mutex() -> io::Result<NonNull<libc::pthread_mutex_t>> {
    let len = NonZeroUsize::new(PAGE).ok_or(io::ErrorKind::InvalidInput)?;
    // SAFETY: a fresh anonymous mapping aliases nothing.
    let page = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }?;
    let mutex = page.cast::<libc::pthread_mutex_t>();
    // SAFETY: the attribute object is initialised before use and destroyed after; the mutex is
    // initialised once, in the page just mapped, before any child exists.
    let rc = unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        libc::pthread_mutexattr_init(attr.as_mut_ptr());
        libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
        let rc = libc::pthread_mutex_init(mutex.as_ptr(), attr.as_ptr());
        libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        rc
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(mutex)
}

/// One child's handle on the accept lock.
#[derive(Debug)]
pub struct ChildLock<'a> {
    shared: &'a SharedLock,
    /// This child's own open file description of the lock file (flock).
    own: Option<File>,
}

impl ChildLock<'_> {
    /// Runs `f` (the `accept`) holding the lock. A signal while waiting for a file lock returns
    /// `Interrupted` without running `f`, so that the caller can check for shutdown.
    pub fn around<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        match self.shared.kind {
            AcceptLock::None => Ok(f()),
            AcceptLock::Fcntl => {
                let file = self.shared.file.as_ref().ok_or(io::ErrorKind::NotFound)?;
                fcntl::fcntl(file, FcntlArg::F_SETLKW(&record_lock(libc::F_WRLCK)))?;
                let result = f();
                fcntl::fcntl(file, FcntlArg::F_SETLK(&record_lock(libc::F_UNLCK)))?;
                Ok(result)
            }
            AcceptLock::Flock => {
                let file = self.own.as_ref().ok_or(io::ErrorKind::NotFound)?;
                file.lock()?;
                let result = f();
                file.unlock()?;
                Ok(result)
            }
            AcceptLock::Mutex => {
                let mutex = self.shared.mutex.ok_or(io::ErrorKind::NotFound)?.as_ptr();
                // SAFETY: the mutex was initialised in a page that stays mapped while any child
                // lives; a robust mutex whose holder died is made consistent before use.
                let rc = unsafe {
                    match libc::pthread_mutex_lock(mutex) {
                        libc::EOWNERDEAD => libc::pthread_mutex_consistent(mutex),
                        rc => rc,
                    }
                };
                if rc != 0 {
                    return Err(io::Error::from_raw_os_error(rc));
                }
                let result = f();
                // SAFETY: this process holds the mutex.
                unsafe { libc::pthread_mutex_unlock(mutex) };
                Ok(result)
            }
        }
    }
}

/// A record lock (or unlock) covering the whole file: start 0, length 0 (to the end).
fn record_lock(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}
