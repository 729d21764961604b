//! `wait/METHOD/N`: the cost of one wait call watching N descriptors, one of them ready — the
//! experiment of TLPI's Table 63-9 (Kerrisk, section 63.4.5), redone on this kernel.
//!
//! The descriptors are the read ends of N pipes. Before each call one of them, picked at random,
//! is made ready (a byte written into its pipe); after it, the byte is read back out. Timed is
//! the wait call alone, from just before it to just after it returns:
//! - `select`: a copy of the fd_set with the N read ends, then `select(2)` with a zero timeout
//!   (one is ready, so it never sleeps). Up to FD_SETSIZE (1024) only: N = 10, 100, 1000.
//! - `poll`: `poll(2)` on the array of N `pollfd`s, kept between calls.
//! - `epoll`: `epoll_wait(2)` on an epoll instance with the N read ends registered once,
//!   level-triggered.
//! - `io_uring`: N multishot poll requests armed once; the ready descriptor's wakeup posts a
//!   completion, and the timed call is `io_uring_enter(2)` waiting for one completion (reaping
//!   it from the shared ring is done in user space, outside the timing).
//!
//! N = 10, 100, 1 000, 10 000; 10 000 pipes need 20 000 descriptors, so the descriptor limit is
//! raised (the hard limit too, as root); where it cannot be, that N is skipped with a note.

use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use io_uring::{IoUring, opcode, types};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::select::{FdSet, select};
use nix::sys::time::TimeVal;

const SIZES: [usize; 4] = [10, 100, 1000, 10_000];

/// select's fd_set holds descriptors below this (glibc's FD_SETSIZE).
const FD_SETSIZE: usize = 1024;

/// N pipes: the read ends in consecutive low descriptors (for select), the write ends moved
/// above them.
struct Pipes {
    reads: Vec<OwnedFd>,
    writes: Vec<OwnedFd>,
}

impl Pipes {
    fn new(n: usize) -> nix::Result<Pipes> {
        let high = n as i32 + 256;
        let mut reads = Vec::with_capacity(n);
        let mut writes = Vec::with_capacity(n);
        for _ in 0..n {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
            // The write end moves above every read end; the freed number is the next read end.
            let moved = fcntl(&w, FcntlArg::F_DUPFD_CLOEXEC(high))?;
            drop(w);
            // SAFETY: `moved` was just returned by fcntl(F_DUPFD_CLOEXEC) and is owned here alone.
            writes.push(unsafe { OwnedFd::from_raw_fd(moved) });
            reads.push(r);
        }
        Ok(Pipes { reads, writes })
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
        let i = picker.next(pipes.reads.len());
        nix::unistd::write(&pipes.writes[i], b"x").expect("write into the pipe");
        let t = Instant::now();
        wait();
        spent += t.elapsed();
        then();
        nix::unistd::read(&pipes.reads[i], &mut byte).expect("read from the pipe");
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
        let needed = 2 * n as u64 + 512;
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
        let highest = pipes.reads.last().map_or(0, |fd| fd.as_raw_fd() as usize);

        if highest < FD_SETSIZE {
            let mut set = FdSet::new();
            for fd in &pipes.reads {
                set.insert(fd.as_fd());
            }
            group.bench_function(BenchmarkId::new("select", n), |b| {
                b.iter_custom(|iters| {
                    let mut wait = || {
                        // select rewrites its sets: each call starts from a fresh copy.
                        let mut ready = set;
                        let mut zero = TimeVal::new(0, 0);
                        let nfds = highest as i32 + 1;
                        let got = select(nfds, Some(&mut ready), None, None, Some(&mut zero));
                        assert_eq!(got, Ok(1), "select: one ready");
                    };
                    timed(&pipes, &mut picker, iters, &mut wait, &mut nothing)
                })
            });
        } else {
            eprintln!("wait/select/{n}: not run, descriptor {highest} is past FD_SETSIZE");
        }

        let mut fds: Vec<PollFd> = pipes
            .reads
            .iter()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        group.bench_function(BenchmarkId::new("poll", n), |b| {
            b.iter_custom(|iters| {
                let mut wait = || {
                    let got = poll(&mut fds, PollTimeout::ZERO);
                    assert_eq!(got, Ok(1), "poll: one ready");
                };
                timed(&pipes, &mut picker, iters, &mut wait, &mut nothing)
            })
        });
        drop(fds);

        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
        for (i, fd) in pipes.reads.iter().enumerate() {
            epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                .expect("epoll_ctl ADD");
        }
        let mut events = vec![EpollEvent::empty(); 64];
        group.bench_function(BenchmarkId::new("epoll", n), |b| {
            b.iter_custom(|iters| {
                let mut wait = || {
                    let got = epoll.wait(&mut events, 0u16);
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
    for chunk in pipes.reads.chunks(entries as usize) {
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
