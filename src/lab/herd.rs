//! `herd`: how many of N waiters one new connection wakes — the thundering herd (惊群).
//!
//! Four threads wait for one listener, four ways: in a blocking accept(); in poll() on a
//! nonblocking listener; each in its own epoll instance with the listener registered
//! EPOLLIN; and the same registered EPOLLIN | EPOLLEXCLUSIVE (Linux 4.5). One client connects.
//!
//! Who woke is read from the kernel, not guessed: each thread's `voluntary_ctxt_switches`
//! (/proc/self/task/TID/status) is taken while all four sleep, before the connection and
//! after it. A thread the kernel woke has run and gone back to sleep, so its count grew —
//! also when it found nothing and slept again inside poll() or epoll_wait() without returning
//! to the program, a wake-up the program itself never sees. Each thread also records what
//! its wait gave it: the connection, EAGAIN (another thread took it first), or nothing yet.
//!
//! A blocking accept() sleeps on the listener's wait queue as an exclusive waiter
//! (`prepare_to_wait_exclusive` in `inet_csk_wait_for_connect`), and a wake-up stops at the
//! first exclusive waiter: one thread. poll() and epoll entries are non-exclusive, so all of
//! them wake. EPOLLEXCLUSIVE adds the epoll entries as exclusive; epoll_ctl(2) promises "one
//! or more" woken. Exclusive waiters join the queue at its tail and a wake-up walks it from the
//! head, so the one woken is the one that started waiting (or registered) first: the threads
//! start one at a time, each once the one before sleeps, and the lab records the place of a
//! thread woken alone.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self, Shutdown};
use serde_json::{Value, json};

use super::{Lab, Recorder, Verdict, bind, connect, listen_exact, loopback_any};

/// The lab.
pub const LAB: Lab = Lab {
    name: "herd",
    summary: "N threads wait for one listener: who wakes in accept(), poll(), epoll, EPOLLEXCLUSIVE",
    claim: "when N processes or threads wait for one listener and a connection arrives, a \
            blocking accept() wakes one of them; N poll() callers or N epoll instances without \
            EPOLLEXCLUSIVE are all woken and N−1 find nothing; with EPOLLEXCLUSIVE one is woken",
    run,
};

const WAITERS: usize = 4;
const ROUNDS: usize = 3;
const WAIT: Duration = Duration::from_secs(2);
/// epoll tokens.
const LISTENER: u64 = 1;
const STOP: u64 = 2;

/// How the waiters wait.
#[derive(Clone, Copy)]
enum Way {
    Accept,
    Poll,
    Epoll,
    Exclusive,
}

impl Way {
    fn key(self) -> &'static str {
        match self {
            Way::Accept => "accept",
            Way::Poll => "poll",
            Way::Epoll => "epoll",
            Way::Exclusive => "epoll_exclusive",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Way::Accept => "4 threads in blocking accept(); one connect(), per round",
            Way::Poll => "4 threads in poll(listener); one connect(), per round",
            Way::Epoll => "4 epoll instances, listener EPOLLIN; one connect(), per round",
            Way::Exclusive => {
                "4 epoll instances, listener EPOLLIN|EPOLLEXCLUSIVE; one connect(), per round"
            }
        }
    }
}

/// One round's count.
#[derive(Default)]
struct Count {
    /// Threads whose voluntary context switches grew: the kernel woke them.
    woken: usize,
    /// Threads whose wait gave them the connection.
    connection: usize,
    /// Threads that returned to the program and found the queue empty.
    eagain: usize,
    /// Threads woken that went back to sleep inside the call, never returning.
    slept_again: usize,
    /// When exactly one thread was woken, its place in the wait queue (0: the first to start
    /// waiting); `None` when more were.
    sole_woken: Option<usize>,
}

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    rec.say(format!(
        "{WAITERS} threads wait for one listener; each round one client connects; wake-ups \
         counted from each thread's voluntary context switches"
    ));
    let mut lines = Vec::new();
    let mut held = true;
    for way in [Way::Accept, Way::Poll, Way::Epoll, Way::Exclusive] {
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            rounds.push(round(way)?);
        }
        let per = |f: fn(&Count) -> usize| rounds.iter().map(f).collect::<Vec<_>>();
        let value: Value = json!({
            "woken": per(|c| c.woken),
            "connection": per(|c| c.connection),
            "eagain": per(|c| c.eagain),
            "slept_again": per(|c| c.slept_again),
            "sole_woken": rounds.iter().map(|c| c.sole_woken).collect::<Vec<_>>(),
        });
        rec.saw(way.key(), way.what(), value);
        let one_connection = rounds.iter().all(|c| c.connection == 1);
        let woken: Vec<usize> = per(|c| c.woken);
        let as_claimed = one_connection
            && match way {
                Way::Accept | Way::Exclusive => woken.iter().all(|&w| w == 1),
                Way::Poll | Way::Epoll => rounds
                    .iter()
                    .all(|c| c.woken == WAITERS && c.eagain + c.slept_again == WAITERS - 1),
            };
        held &= as_claimed;
        let woke = woken
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("/");
        let first_waiter = rounds.iter().all(|c| c.sole_woken == Some(0));
        lines.push(match way {
            Way::Accept | Way::Exclusive => format!(
                "{} woke {woke} of {WAITERS}{}",
                way.key(),
                if first_waiter {
                    ", each time the first to have started waiting"
                } else {
                    ""
                }
            ),
            Way::Poll | Way::Epoll => format!(
                "{} woke {woke} of {WAITERS} ({} EAGAIN, {} back to sleep unseen)",
                way.key(),
                rounds.iter().map(|c| c.eagain).sum::<usize>(),
                rounds.iter().map(|c| c.slept_again).sum::<usize>()
            ),
        });
    }
    let summary = format!(
        "per connection, over {ROUNDS} rounds: {}; one thread got each connection",
        lines.join("; ")
    );
    Ok(Verdict::new(held, summary))
}

/// One round: WAITERS threads wait `way`, one client connects, the wake-ups are counted.
///
/// The threads start one at a time, each only once the one before is asleep, so that thread
/// *i* is the *i*-th on the listener's wait queue: the order a wake-up walks it in.
fn round(way: Way) -> io::Result<Count> {
    let listener = listen_exact(bind(loopback_any(), true)?, 64)?;
    if !matches!(way, Way::Accept) {
        listener.set_nonblocking(true)?;
    }
    let stop = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)?;
    let gate = Gate::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (said_tx, said_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let started = || -> io::Result<Vec<i32>> {
            let mut tids = Vec::with_capacity(WAITERS);
            for _ in 0..WAITERS {
                let (ready, said) = (ready_tx.clone(), said_tx.clone());
                let (listener, stop, gate) = (&listener, &stop, &gate);
                s.spawn(move || {
                    let got = waiter(way, listener, stop, &ready);
                    let _ = said.send(got);
                    // Sleep here, not exit, so that the count after the connection finds
                    // every thread asleep and still there.
                    gate.wait();
                });
                tids.push(
                    ready_rx
                        .recv_timeout(WAIT)
                        .map_err(|_| io::Error::other("a waiter did not start"))??,
                );
                all_asleep(&tids)?;
            }
            Ok(tids)
        };
        let counted =
            started().and_then(|tids| count_round(way, &listener, &stop, &tids, &said_rx));
        // Whatever happened, wake everyone and let them go.
        if !matches!(way, Way::Accept) {
            let _ = stop.write(1);
        }
        let _ = socket::shutdown(listener.as_raw_fd(), Shutdown::Both);
        gate.open();
        counted
    })
}

/// Where the waiters sleep once their wait is over, until the round ends.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }
}

/// The main thread's side of a round, once every waiter sleeps.
fn count_round(
    way: Way,
    listener: &TcpListener,
    stop: &EventFd,
    tids: &[i32],
    said: &mpsc::Receiver<io::Result<&'static str>>,
) -> io::Result<Count> {
    let before = all_asleep(tids)?;
    let _client = connect(listener.local_addr()?)?;
    std::thread::sleep(Duration::from_millis(50));
    let after = all_asleep(tids)?;
    let woken_order: Vec<usize> = before
        .iter()
        .zip(&after)
        .enumerate()
        .filter(|(_, (b, a))| a > b)
        .map(|(i, _)| i)
        .collect();
    // Release the ones still waiting: the blocking accepts by shutting the listener (every
    // accept() then fails with EINVAL), the others through the stop eventfd.
    if matches!(way, Way::Accept) {
        socket::shutdown(listener.as_raw_fd(), Shutdown::Both)?;
    } else {
        stop.write(1)?;
    }
    let mut count = Count {
        woken: woken_order.len(),
        sole_woken: match woken_order.as_slice() {
            [only] => Some(*only),
            _ => None,
        },
        ..Count::default()
    };
    for _ in 0..WAITERS {
        match said
            .recv_timeout(WAIT)
            .map_err(|_| io::Error::other("a waiter did not report"))??
        {
            "connection" => count.connection += 1,
            "EAGAIN" => count.eagain += 1,
            _ => {}
        }
    }
    // Woken, but neither took the connection nor saw EAGAIN: it went back to sleep in the
    // kernel and only the stop brought it out.
    count.slept_again = count.woken.saturating_sub(count.connection + count.eagain);
    Ok(count)
}

/// One waiter: says its thread id, waits once, and says what the wait gave it.
fn waiter(
    way: Way,
    listener: &TcpListener,
    stop: &EventFd,
    ready: &mpsc::Sender<io::Result<i32>>,
) -> io::Result<&'static str> {
    let tid = nix::unistd::gettid().as_raw();
    let epoll = match way {
        Way::Epoll | Way::Exclusive => {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let mut flags = EpollFlags::EPOLLIN;
            if let Way::Exclusive = way {
                flags |= EpollFlags::EPOLLEXCLUSIVE;
            }
            epoll.add(listener, EpollEvent::new(flags, LISTENER))?;
            epoll.add(stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
            Some(epoll)
        }
        _ => None,
    };
    let _ = ready.send(Ok(tid));
    let listener_ready = match way {
        Way::Accept => {
            return Ok(match listener.accept() {
                Ok(_) => "connection",
                Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => "none",
                Err(_) => "error",
            });
        }
        Way::Poll => {
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            loop {
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        }
        Way::Epoll | Way::Exclusive => {
            let epoll = epoll.as_ref().ok_or_else(|| io::Error::other("no epoll"))?;
            let mut events = [EpollEvent::empty(); 2];
            let n = loop {
                match epoll.wait(&mut events, EpollTimeout::NONE) {
                    Ok(n) => break n,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            events[..n].iter().any(|e| e.data() == LISTENER)
        }
    };
    if !listener_ready {
        return Ok("none");
    }
    Ok(match listener.accept() {
        Ok(_) => "connection",
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => "EAGAIN",
        Err(_) => "error",
    })
}

/// Waits until every thread in `tids` sleeps (state S) with a voluntary-switch count that
/// holds still for 20 ms, and returns those counts.
fn all_asleep(tids: &[i32]) -> io::Result<Vec<u64>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let first = snapshot(tids)?;
        std::thread::sleep(Duration::from_millis(20));
        let second = snapshot(tids)?;
        if first == second && second.iter().all(|(state, _)| *state == 'S') {
            return Ok(second.into_iter().map(|(_, n)| n).collect());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other("the waiters did not settle asleep"));
        }
    }
}

/// Each thread's state letter and voluntary context switches.
fn snapshot(tids: &[i32]) -> io::Result<Vec<(char, u64)>> {
    tids.iter()
        .map(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .unwrap_or('?');
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))?;
            let switches = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| io::Error::other("no voluntary_ctxt_switches"))?;
            Ok((state, switches))
        })
        .collect()
}
