//! One load thread: its share of the connections on its own epoll instance.
//!
//! Every socket is registered once, edge-triggered, for both reading and writing, when it is
//! created; closing it removes it. So a request costs one `write` and one `read` (plus a share
//! of one `epoll_wait`), with no `epoll_ctl` per request. Edge-triggered writability only fires
//! after a write found the send buffer full, so it costs nothing in the common case; a read
//! shorter than the buffer means the socket is drained, so no read is wasted on EAGAIN.
//!
//! Time is nanoseconds since the run's origin (`CLOCK_MONOTONIC`, read through the vDSO). The
//! open loop's due times and reconnect back-offs sit in one min-heap; a `timerfd` in the epoll
//! set wakes the loop for the earliest with nanosecond precision, where `epoll_wait`'s
//! millisecond timeout would add up to a millisecond of the client's own lateness to every
//! latency measured from a schedule. Deadlines (connect and reply timeouts) are swept every
//! 100 ms.
//!
//! Nothing is allocated per request: the request bytes are shared, replies are read into one
//! scratch buffer per thread and judged in place (`reply`), the heap and histogram are sized
//! up front.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::libc;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt,
};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::reply::{Reply, ReplyCheck};
use super::{Errors, LoadOptions, Pacing};
use crate::server::net::{interrupted, would_block};
use crate::server::protocol::Protocol;

/// The epoll data of the timerfd; connections use `generation << 32 | slot`.
const TIMER: u64 = u64::MAX;
/// How often deadlines are checked.
const SWEEP_NS: u64 = 100_000_000;
/// The wait before reconnecting after a failed connect, so that a closed port is not hammered
/// in a tight loop.
const RECONNECT_BACKOFF_NS: u64 = 10_000_000;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 1024;
/// The read buffer, shared by the thread's connections.
const SCRATCH: usize = 64 * 1024;

/// The run's clock and its measured window, in nanoseconds since `origin`.
#[derive(Clone, Copy, Debug)]
pub(super) struct LoadWindow {
    pub origin: Instant,
    pub start: u64,
    pub end: u64,
}

impl LoadWindow {
    pub fn start_instant(&self) -> Instant {
        self.origin + Duration::from_nanos(self.start)
    }

    pub fn end_instant(&self) -> Instant {
        self.origin + Duration::from_nanos(self.end)
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// What one thread is to do.
pub(super) struct Plan<'a> {
    pub opts: &'a LoadOptions,
    pub request: &'a [u8],
    pub window: LoadWindow,
    /// The global indices of this thread's connections (they stagger the open-loop schedule).
    pub connections: Vec<usize>,
    /// This thread's share of a request count.
    pub requests: Option<u64>,
}

/// What one thread measured.
pub(super) struct ThreadTally {
    pub histogram: Histogram<u64>,
    pub requests: u64,
    pub errors: Errors,
    pub last_done: u64,
}

/// An empty latency histogram: nanoseconds, 1 ns to 1 hour, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// Runs one thread's share; reports on `done` as soon as its loop is over, before the sockets
/// are closed, so that the caller can end the CPU window.
pub(super) fn run(plan: Plan<'_>, done: Sender<()>) -> io::Result<ThreadTally> {
    let mut worker = match Engine::new(&plan) {
        Ok(w) => w,
        Err(e) => {
            let _ = done.send(());
            return Err(e);
        }
    };
    let result = worker.event_loop();
    let _ = done.send(());
    let outcome = ThreadTally {
        histogram: std::mem::replace(&mut worker.hist, histogram()),
        requests: worker.requests,
        errors: worker.errors,
        last_done: worker.last_done,
    };
    drop(worker);
    result.map(|()| outcome)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket: waiting for a reconnect timer (or done).
    Down,
    /// Nonblocking connect in progress.
    Connecting,
    /// Connected, no request outstanding (the open loop between due times).
    Idle,
    /// A request outstanding.
    Busy,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Refused,
    Reset,
    TimedOut,
    Mismatch,
    Other,
}

impl Kind {
    fn of(e: &io::Error) -> Kind {
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ECONNREFUSED) => Kind::Refused,
            Some(Errno::ECONNRESET | Errno::EPIPE | Errno::ECONNABORTED) => Kind::Reset,
            Some(Errno::ETIMEDOUT) => Kind::TimedOut,
            _ => Kind::Other,
        }
    }
}

struct ClientConn {
    stream: Option<TcpStream>,
    /// Bumped on every new socket, so a stale event for a closed one is recognised.
    generation: u32,
    state: State,
    /// Latency is measured from here: the send (closed), the schedule (open), the connect (churn).
    base: u64,
    /// The connect or the reply must be done by then.
    deadline: u64,
    /// Open loop: when the next request is due.
    next_due: u64,
    /// The due time of this slot's live entry in the timer heap; 0 for none.
    timer: u64,
    /// Bytes of the current request written so far.
    sent: usize,
    reply: Reply,
}

struct Engine<'a> {
    plan: &'a Plan<'a>,
    mode: Pacing,
    protocol: Protocol,
    addr: SockaddrStorage,
    family: AddressFamily,
    epoll: Epoll,
    timerfd: TimerFd,
    /// The due time the timerfd is armed for; 0 when disarmed.
    armed: u64,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    slots: Vec<ClientConn>,
    scratch: Vec<u8>,
    /// Open loop: nanoseconds between two requests on one connection.
    interval: u64,
    timeout: u64,
    /// Stop issuing once `issued` reaches it, stop running once `completed` does.
    limit: u64,
    issued: u64,
    completed: u64,
    hist: Histogram<u64>,
    requests: u64,
    errors: Errors,
    last_done: u64,
}

impl<'a> Engine<'a> {
    fn new(plan: &'a Plan<'a>) -> io::Result<Engine<'a>> {
        let opts = plan.opts;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let timerfd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        epoll.add(&timerfd, EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;
        let rate = opts.rate.unwrap_or(1.0);
        let slots = plan
            .connections
            .iter()
            .map(|&g| ClientConn {
                stream: None,
                generation: 0,
                state: State::Down,
                base: 0,
                deadline: 0,
                // Connection g's first request is due g/rate seconds in, so that the requests
                // of all connections are evenly spaced.
                next_due: (g as f64 * 1e9 / rate) as u64,
                timer: 0,
                sent: 0,
                reply: Reply::default(),
            })
            .collect::<Vec<_>>();
        Ok(Engine {
            plan,
            mode: opts.mode(),
            protocol: opts.protocol,
            addr: SockaddrStorage::from(opts.addr),
            family: crate::server::net::family(opts.addr),
            epoll,
            timerfd,
            armed: 0,
            heap: BinaryHeap::with_capacity(2 * slots.len() + 16),
            slots,
            scratch: vec![0; SCRATCH],
            interval: ((opts.connections as f64 * 1e9 / rate) as u64).max(1),
            timeout: super::nanos(opts.timeout),
            limit: plan.requests.unwrap_or(u64::MAX),
            issued: 0,
            completed: 0,
            hist: histogram(),
            requests: 0,
            errors: Errors::default(),
            last_done: 0,
        })
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let window = self.plan.window;
        let now = window.now();
        for i in 0..self.slots.len() {
            self.connect(i, now);
        }
        let mut events = vec![EpollEvent::empty(); EVENTS];
        let mut next_sweep = now + SWEEP_NS;
        loop {
            let now = window.now();
            if now >= window.end || self.completed >= self.limit {
                return Ok(());
            }
            self.fire_timers(now);
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_NS;
            }
            self.arm_timer(now)?;
            let wake = next_sweep.min(window.end).saturating_sub(now);
            let timeout =
                EpollTimeout::try_from(wake.div_ceil(1_000_000)).unwrap_or(EpollTimeout::MAX);
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            for ev in &events[..n] {
                let data = ev.data();
                if data == TIMER {
                    continue; // the heap is looked at on the next turn
                }
                let (i, generation) = ((data & 0xffff_ffff) as usize, (data >> 32) as u32);
                if self
                    .slots
                    .get(i)
                    .is_some_and(|s| s.generation == generation)
                {
                    self.on_event(i, ev.events());
                }
            }
        }
    }

    fn on_event(&mut self, i: usize, flags: EpollFlags) {
        let failed = flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
        match self.slots[i].state {
            State::Down => {}
            State::Connecting if failed => {
                let err = self.slots[i]
                    .stream
                    .as_ref()
                    .map(|s| socket::getsockopt(s, sockopt::SocketError));
                let kind = match err {
                    Some(Ok(code)) if code != 0 => Kind::of(&io::Error::from_raw_os_error(code)),
                    Some(Err(e)) => Kind::of(&e.into()),
                    _ => Kind::Other,
                };
                self.fail(i, kind, self.plan.window.now());
            }
            State::Connecting if flags.contains(EpollFlags::EPOLLOUT) => self.on_connected(i),
            State::Connecting => {}
            State::Idle | State::Busy => {
                if flags
                    .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
                {
                    self.on_readable(i);
                }
                let s = &self.slots[i];
                if s.state == State::Busy
                    && s.sent < self.plan.request.len()
                    && flags.contains(EpollFlags::EPOLLOUT)
                {
                    self.write_request(i);
                }
            }
        }
    }

    /// Opens slot `i`'s socket and starts a nonblocking connect.
    fn connect(&mut self, i: usize, now: u64) {
        if self.mode == Pacing::Churn && self.issued >= self.limit {
            return;
        }
        let fd = match socket::socket(
            self.family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::Tcp,
        ) {
            Ok(fd) => fd,
            Err(e) => return self.fail_connect(i, Kind::of(&e.into()), now),
        };
        // Requests are single writes that should leave at once; a large echo message's last
        // segment must not wait for an ACK (Nagle's algorithm meeting delayed ACKs).
        let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
        match socket::connect(fd.as_raw_fd(), &self.addr) {
            // EINTR leaves a nonblocking connect going on; its end shows as writability.
            Ok(()) | Err(Errno::EINPROGRESS | Errno::EINTR) => {}
            Err(e) => return self.fail_connect(i, Kind::of(&e.into()), now),
        }
        let slot = &mut self.slots[i];
        slot.generation = slot.generation.wrapping_add(1);
        let data = (u64::from(slot.generation) << 32) | i as u64;
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
        if let Err(e) = self.epoll.add(&fd, EpollEvent::new(interest, data)) {
            return self.fail_connect(i, Kind::of(&e.into()), now);
        }
        let slot = &mut self.slots[i];
        slot.stream = Some(TcpStream::from(fd));
        slot.state = State::Connecting;
        slot.base = now;
        slot.deadline = now.saturating_add(self.timeout);
    }

    fn on_connected(&mut self, i: usize) {
        let now = self.plan.window.now();
        self.slots[i].state = State::Idle;
        match self.mode {
            Pacing::Closed => self.start_request(i, now, now),
            Pacing::Churn => self.start_request(i, self.slots[i].base, now),
            Pacing::Open => self.send_when_due(i, now),
        }
    }

    /// Open loop: sends the next request if it is due (late or not), or sets a timer for it.
    fn send_when_due(&mut self, i: usize, now: u64) {
        let due = self.slots[i].next_due;
        if due <= now {
            self.slots[i].next_due = due + self.interval;
            self.start_request(i, due, now);
        } else {
            self.set_timer(i, due);
        }
    }

    fn start_request(&mut self, i: usize, base: u64, now: u64) {
        if self.issued >= self.limit {
            return;
        }
        self.issued += 1;
        let slot = &mut self.slots[i];
        slot.state = State::Busy;
        slot.base = base;
        slot.deadline = now.saturating_add(self.timeout);
        slot.sent = 0;
        slot.reply.reset();
        self.write_request(i);
    }

    fn write_request(&mut self, i: usize) {
        let request = self.plan.request;
        loop {
            let slot = &mut self.slots[i];
            let Some(stream) = slot.stream.as_ref() else {
                return;
            };
            match (&*stream).write(&request[slot.sent..]) {
                Ok(n) => {
                    slot.sent += n;
                    if slot.sent == request.len() {
                        return;
                    }
                }
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return self.fail(i, Kind::of(&e), self.plan.window.now()),
            }
        }
    }

    fn on_readable(&mut self, i: usize) {
        loop {
            let Some(stream) = self.slots[i].stream.as_ref() else {
                return;
            };
            let n = match (&*stream).read(&mut self.scratch) {
                // The server closed with nothing more to say: for a client that still wants
                // replies, the connection is lost like any reset.
                Ok(0) => return self.fail(i, Kind::Reset, self.plan.window.now()),
                Ok(n) => n,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return self.fail(i, Kind::of(&e), self.plan.window.now()),
            };
            let slot = &mut self.slots[i];
            let verdict = match (slot.state, self.protocol) {
                (State::Busy, Protocol::Echo) => {
                    slot.reply.feed_echo(&self.scratch[..n], self.plan.request)
                }
                (State::Busy, Protocol::Http) => slot.reply.feed_http(&self.scratch[..n]),
                // Bytes while no request is outstanding were never asked for.
                _ => ReplyCheck::Mismatch,
            };
            match verdict {
                // A short read means the socket is drained; the next bytes bring a new edge.
                ReplyCheck::Incomplete if n < self.scratch.len() => return,
                ReplyCheck::Incomplete => continue,
                ReplyCheck::Complete { close } => return self.complete(i, close),
                ReplyCheck::Mismatch => {
                    return self.fail(i, Kind::Mismatch, self.plan.window.now());
                }
            }
        }
    }

    fn complete(&mut self, i: usize, close: bool) {
        let now = self.plan.window.now();
        let window = self.plan.window;
        self.completed += 1;
        self.last_done = now;
        if now >= window.start && now < window.end {
            self.hist
                .saturating_record(now.saturating_sub(self.slots[i].base).max(1));
            self.requests += 1;
        }
        if now >= window.end {
            // The run is over: issue nothing the server would answer after it.
            self.slots[i].state = State::Idle;
            return;
        }
        if self.mode == Pacing::Churn {
            self.close(i, true);
            return self.connect(i, now);
        }
        if close {
            self.close(i, false);
            return self.connect(i, now);
        }
        self.slots[i].state = State::Idle;
        match self.mode {
            Pacing::Open => self.send_when_due(i, now),
            _ => self.start_request(i, now, now),
        }
    }

    /// Counts an error on slot `i` and starts over with a new connection.
    fn fail(&mut self, i: usize, kind: Kind, now: u64) {
        let state = self.slots[i].state;
        if state == State::Busy {
            self.issued -= 1; // the request did not happen; under a request count, issue it again
        }
        self.close(i, true);
        if state == State::Connecting {
            self.fail_connect(i, kind, now);
        } else {
            self.count(kind);
            self.connect(i, now);
        }
    }

    fn fail_connect(&mut self, i: usize, kind: Kind, now: u64) {
        self.count(kind);
        self.close(i, true);
        self.set_timer(i, now + RECONNECT_BACKOFF_NS);
    }

    fn count(&mut self, kind: Kind) {
        let e = &mut self.errors;
        match kind {
            Kind::Refused => e.refused += 1,
            Kind::Reset => e.reset += 1,
            Kind::TimedOut => e.timed_out += 1,
            Kind::Mismatch => e.mismatch += 1,
            Kind::Other => e.other += 1,
        }
    }

    /// Closes slot `i`'s socket. `abort` closes with SO_LINGER 0: an RST instead of a FIN, and
    /// no TIME_WAIT left behind on the client's side — see README.md on churn and ports.
    fn close(&mut self, i: usize, abort: bool) {
        let slot = &mut self.slots[i];
        if let Some(stream) = slot.stream.take()
            && abort
        {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let _ = socket::setsockopt(&stream, sockopt::Linger, &linger);
        }
        slot.state = State::Down;
        slot.timer = 0;
    }

    fn set_timer(&mut self, i: usize, due: u64) {
        self.slots[i].timer = due;
        self.heap.push(Reverse((due, i as u32)));
    }

    fn fire_timers(&mut self, now: u64) {
        while let Some(&Reverse((due, i))) = self.heap.peek() {
            if due > now {
                return;
            }
            self.heap.pop();
            let i = i as usize;
            if self.slots[i].timer != due {
                continue; // superseded
            }
            self.slots[i].timer = 0;
            match self.slots[i].state {
                State::Down => self.connect(i, now),
                State::Idle => self.send_when_due(i, now),
                State::Connecting | State::Busy => {}
            }
        }
    }

    /// Arms the timerfd for the earliest entry in the heap, if it is not armed for it already.
    fn arm_timer(&mut self, now: u64) -> io::Result<()> {
        match self.heap.peek() {
            Some(&Reverse((due, _))) if due != self.armed => {
                let wait = Duration::from_nanos(due.saturating_sub(now).max(1));
                self.timerfd.set(
                    Expiration::OneShot(TimeSpec::from_duration(wait)),
                    TimerSetTimeFlags::empty(),
                )?;
                self.armed = due;
            }
            None if self.armed != 0 => {
                self.timerfd.unset()?;
                self.armed = 0;
            }
            _ => {}
        }
        Ok(())
    }

    /// Fails every connect and request past its deadline.
    fn sweep(&mut self, now: u64) {
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if matches!(s.state, State::Connecting | State::Busy) && s.deadline <= now {
                self.fail(i, Kind::TimedOut, now);
            }
        }
    }
}
