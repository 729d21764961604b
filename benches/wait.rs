//! `wait/METHOD/N`: the cost of one wait call watching N descriptors, one of them ready — the
//! experiment of TLPI's Table 63-9 (Kerrisk), redone on this kernel.
//!
//! The descriptors are N pipes (FIFOs, one descriptor each; see [`Pipes`]). Before each call one
//! of them, picked at random, is made ready (a byte written into it); after it, the byte is read
//! back out. Timed is
//! the wait call alone, from just before it to just after it returns:
//! - `select`: a copy of the fd_set with the N descriptors, then `select(2)` with no timeout.
//!   Up to FD_SETSIZE (1024) only: N = 10, 100, 1000.
//! - `poll`: `poll(2)` on the array of N `pollfd`s, kept between calls, with no timeout.
//! - `epoll`: `epoll_wait(2)`, no timeout, on an epoll instance with the N descriptors
//!   registered once, level-triggered.
//!
//! Every call may block (no timeout), as a server's does; one descriptor being ready, none ever
//! sleeps. A zero timeout would be cheaper for select and poll and not the server's cost: with
//! one, the kernel skips putting the caller on each descriptor's wait queue (`do_poll` and
//! `do_select` in fs/select.c clear the poll table's queueing function when the timeout is
//! zero), which a blocking call does for every descriptor it scans before the ready one.
//! - `io_uring`: N multishot poll requests armed once; the ready descriptor's wakeup posts a
//!   completion, and the timed call is `io_uring_enter(2)` waiting for one completion (reaping
//!   it from the shared ring is done in user space, outside the timing).
//!
//! N = 10, 100, 1 000, 10 000; the descriptor limit is raised to fit (the hard limit too, where
//! the process may); where it cannot be, that N is skipped with a note.

use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use io_uring::{IoUring, opcode, types};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::select::{FdSet, select};
use nix::sys::time::TimeVal;

const SIZES: [usize; 4] = [10, 100, 1000, 10_000];

/// select's fd_set holds descriptors below this (glibc's FD_SETSIZE).
const FD_SETSIZE: usize = 1024;

/// N pipes, each one descriptor: a FIFO opened for reading and writing at once (Linux allows it;
/// fifo(7)), so that a byte written through the descriptor makes it readable and reading it
/// back makes it not. One descriptor a pipe, where pipe(2) needs two: 10 000 pipes then fit a
/// limit of 20 000 descriptors, this machine's hard limit, which root without
/// CAP_SYS_RESOURCE cannot raise. The descriptors are consecutive, lowest first (for select).
struct Pipes {
    fds: Vec<OwnedFd>,
}

impl Pipes {
    fn new(n: usize) -> std::io::Result<Pipes> {
        let dir = std::env::temp_dir().join(format!("wait-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut fds = Vec::with_capacity(n);
        let made = (0..n).try_for_each(|i| -> std::io::Result<()> {
            let path = dir.join(i.to_string());
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU)?;
            let fd = nix::fcntl::open(
                &path,
                OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?;
            // The open descriptor keeps the pipe; its name is no longer needed.
            std::fs::remove_file(&path)?;
            fds.push(fd);
            Ok(())
        });
        let removed = std::fs::remove_dir_all(&dir);
        made?;
        removed?;
        Ok(Pipes { fds })
    }
}

/// Which pipe is made ready next: a xorshift sequence over the pipes.
struct Picker(u64);

impl Picker {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Times `wait` once per iteration: before it, one pipe picked at random is made readable;
/// after it (untimed), `then` runs and the byte is read back out.
fn timed(
    pipes: &Pipes,
    picker: &mut Picker,
    iters: u64,
    wait: &mut dyn FnMut(),
    then: &mut dyn FnMut(),
) -> Duration {
    let mut spent = Duration::ZERO;
    let mut byte = [0u8; 1];
    for _ in 0..iters {
        let i = picker.next(pipes.fds.len());
        nix::unistd::write(&pipes.fds[i], b"x").expect("write into the pipe");
        let t = Instant::now();
        wait();
        spent += t.elapsed();
        then();
        nix::unistd::read(&pipes.fds[i], &mut byte).expect("read from the pipe");
    }
    spent
}

/// Raises the descriptor limit to fit `needed` (the hard limit too, which root may raise).
fn fit_descriptors(needed: u64) -> bool {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return false;
    };
    if soft >= needed {
        return true;
    }
    setrlimit(Resource::RLIMIT_NOFILE, needed, hard.max(needed)).is_ok()
        || (hard >= needed && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok())
}

fn wait(c: &mut Criterion) {
    let mut group = c.benchmark_group("wait");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut picker = Picker(0x9e37_79b9_7f4a_7c15);
    let mut nothing = || {};
    for n in SIZES {
        let needed = n as u64 + 512;
        if !fit_descriptors(needed) {
            eprintln!("wait/*/{n}: skipped, the descriptor limit cannot reach {needed}");
            continue;
        }
        let pipes = match Pipes::new(n) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("wait/*/{n}: skipped, {n} pipes could not be made: {e}");
                continue;
            }
        };
        let highest = pipes.fds.last().map_or(0, |fd| fd.as_raw_fd() as usize);

        if highest < FD_SETSIZE {
            let mut set = FdSet::new();
            for fd in &pipes.fds {
                set.insert(fd.as_fd());
            }
            group.bench_function(BenchmarkId::new("select", n), |b| {
                b.iter_custom(|iters| {
                    let mut wait = || {
                        // select rewrites its sets: each call starts from a fresh copy.
                        let mut ready = set;
                        let nfds = highest as i32 + 1;
                        let got = select(nfds, Some(&mut ready), None, None, None::<&mut TimeVal>);
                        assert_eq!(got, Ok(1), "select: one ready");
                    };
                    timed(&pipes, &mut picker, iters, &mut wait, &mut nothing)
                })
            });
        } else {
            eprintln!("wait/select/{n}: not run, descriptor {highest} is past FD_SETSIZE");
        }

        let mut fds: Vec<PollFd> = pipes
            .fds
            .iter()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        group.bench_function(BenchmarkId::new("poll", n), |b| {
            b.iter_custom(|iters| {
                let mut wait = || {
                    let got = poll(&mut fds, PollTimeout::NONE);
                    assert_eq!(got, Ok(1), "poll: one ready");
                };
                timed(&pipes, &mut picker, iters, &mut wait, &mut nothing)
            })
        });
        drop(fds);

        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
        for (i, fd) in pipes.fds.iter().enumerate() {
            epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                .expect("epoll_ctl ADD");
        }
        let mut events = vec![EpollEvent::empty(); 64];
        group.bench_function(BenchmarkId::new("epoll", n), |b| {
            b.iter_custom(|iters| {
                let mut wait = || {
                    let got = epoll.wait(&mut events, EpollTimeout::NONE);
                    assert_eq!(got.ok(), Some(1), "epoll_wait: one ready");
                };
                timed(&pipes, &mut picker, iters, &mut wait, &mut nothing)
            })
        });
        drop(epoll);

        match armed_ring(&pipes) {
            Ok(ring) => {
                let ring = std::cell::RefCell::new(ring);
                group.bench_function(BenchmarkId::new("io_uring", n), |b| {
                    b.iter_custom(|iters| {
                        let mut wait = || {
                            ring.borrow_mut()
                                .submit_and_wait(1)
                                .expect("io_uring_enter");
                        };
                        // The completion is reaped from the shared ring outside the timing.
                        let mut reap = || {
                            let mut ring = ring.borrow_mut();
                            let got = ring.completion().next();
                            assert!(got.is_some_and(|c| c.result() > 0), "one readiness report");
                        };
                        timed(&pipes, &mut picker, iters, &mut wait, &mut reap)
                    })
                });
                black_box(ring);
            }
            Err(e) => eprintln!("wait/io_uring/{n}: skipped, io_uring is not available: {e}"),
        }
    }
    group.finish();
}

/// A ring with one multishot poll armed on every read end.
fn armed_ring(pipes: &Pipes) -> std::io::Result<IoUring> {
    let entries = 1024;
    let mut ring = IoUring::builder().setup_cqsize(16 * 1024).build(entries)?;
    for chunk in pipes.fds.chunks(entries as usize) {
        for fd in chunk {
            let poll = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), nix::libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(fd.as_raw_fd() as u64);
            // SAFETY: the descriptor outlives the ring (the pipes are dropped after it), and a
            // poll request points at no buffer.
            unsafe { ring.submission().push(&poll) }
                .map_err(|_| std::io::Error::other("the submission queue is full"))?;
        }
        ring.submit()?;
    }
    Ok(ring)
}

criterion_group!(benches, wait);
criterion_main!(benches);
