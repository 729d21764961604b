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
//! Pipelining (`pipeline` D > 1, closed loop): a connection keeps D requests in flight. They go
//! out back to back — the first D in one `write`, then, after each read, one `write` for as
//! many new requests as replies that read completed — and the replies are judged one after
//! another in the order the requests went out, each against its own request (echo requests
//! differ from one to the next, so a reply out of order is a mismatch). Each request's latency
//! runs from its own send.
//!
//! Open loop records two histograms: latency from the scheduled time (the figure) and from the
//! actual send (what a client that forgets its schedule would report), so that the
//! difference — coordinated omission — can be shown.
//!
//! Nothing is allocated per request: the request bytes are shared, replies are read into one
//! scratch buffer per thread and judged in place (`reply`), the heap, the histograms and each
//! connection's list of requests in flight are sized up front.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
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
use super::{Errors, LoadOptions, Pacing, RequestStream};
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
    pub requests_out: &'a RequestStream,
    pub window: LoadWindow,
    /// The global indices of this thread's connections (they stagger the open-loop schedule).
    pub connections: Vec<usize>,
    /// This thread's share of a request count.
    pub requests: Option<u64>,
}

/// What one thread measured.
pub(super) struct ThreadTally {
    pub histogram: Histogram<u64>,
    /// Open loop: latency from the actual send, not the schedule.
    pub from_send: Histogram<u64>,
    pub requests: u64,
    pub errors: Errors,
    pub last_done: u64,
    /// This thread's own CPU over the window, user and system seconds: the load's cost, and
    /// nothing else the process runs (a test harness's other threads, the caller's).
    pub cpu: CpuTime,
}

/// User and system CPU seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct CpuTime {
    pub user: f64,
    pub sys: f64,
}

impl CpuTime {
    /// The calling thread's CPU so far (getrusage(2), RUSAGE_THREAD).
    fn of_this_thread() -> io::Result<CpuTime> {
        let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)?;
        let secs = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        Ok(CpuTime {
            user: secs(u.user_time()),
            sys: secs(u.system_time()),
        })
    }

    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: (self.user - earlier.user).max(0.0),
            sys: (self.sys - earlier.sys).max(0.0),
        }
    }
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
        from_send: std::mem::replace(&mut worker.hist_sent, histogram()),
        requests: worker.requests,
        errors: worker.errors,
        last_done: worker.last_done,
        cpu: match (worker.cpu_from, worker.cpu_to) {
            (Some(from), Some(to)) => to.since(from),
            _ => CpuTime::default(),
        },
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
    /// Requests outstanding.
    Busy,
}

/// One request in flight.
#[derive(Clone, Copy, Debug)]
struct Flight {
    /// Its latency runs from here: the send (closed), the schedule (open), the connect (churn).
    base: u64,
    /// When it was actually sent.
    sent: u64,
}

/// What one read's bytes came to.
struct Judged {
    /// Replies completed.
    done: usize,
    /// The last of them said the server closes after it.
    close: bool,
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
    /// When the current socket's connect began (churn measures from it).
    connected_at: u64,
    /// The connect or the next reply must be done by then.
    deadline: u64,
    /// Open loop: when the next request is due.
    next_due: u64,
    /// The due time of this slot's live entry in the timer heap; 0 for none.
    timer: u64,
    /// The requests in flight, oldest first (at most `pipeline`).
    flight: VecDeque<Flight>,
    /// Requests put on this socket so far, and bytes of them written: the bytes still to write
    /// are `queued × request length − written`.
    queued: u64,
    written: u64,
    /// Replies completed on this socket: the next reply answers request number `answered`.
    answered: u64,
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
    /// Requests kept in flight per connection (closed loop).
    pipeline: usize,
    /// Stop issuing once `issued` reaches it, stop running once `completed` does.
    limit: u64,
    issued: u64,
    completed: u64,
    hist: Histogram<u64>,
    hist_sent: Histogram<u64>,
    requests: u64,
    errors: Errors,
    last_done: u64,
    /// This thread's CPU when the window opened, and when its loop ended.
    cpu_from: Option<CpuTime>,
    cpu_to: Option<CpuTime>,
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
                connected_at: 0,
                deadline: 0,
                // Connection g's first request is due g/rate seconds in, so that the requests
                // of all connections are evenly spaced.
                next_due: (g as f64 * 1e9 / rate) as u64,
                timer: 0,
                flight: VecDeque::with_capacity(opts.pipeline.max(1)),
                queued: 0,
                written: 0,
                answered: 0,
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
            pipeline: opts.pipeline.max(1),
            limit: plan.requests.unwrap_or(u64::MAX),
            issued: 0,
            completed: 0,
            hist: histogram(),
            hist_sent: histogram(),
            requests: 0,
            errors: Errors::default(),
            last_done: 0,
            cpu_from: None,
            cpu_to: None,
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
            // The thread is woken at the window's start (below), so the reading is taken then;
            // before it, a blocked thread spends no CPU the reading could miss.
            if self.cpu_from.is_none() && now >= window.start {
                self.cpu_from = Some(CpuTime::of_this_thread()?);
            }
            if now >= window.end || self.completed >= self.limit {
                self.cpu_to = Some(CpuTime::of_this_thread()?);
                return Ok(());
            }
            self.fire_timers(now);
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_NS;
            }
            self.arm_timer(now)?;
            let edge = match self.cpu_from {
                None => window.start,
                Some(_) => window.end,
            };
            let wake = next_sweep.min(edge).saturating_sub(now);
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
                if self.slots[i].state == State::Busy && flags.contains(EpollFlags::EPOLLOUT) {
                    self.write_pending(i);
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
        slot.connected_at = now;
        slot.deadline = now.saturating_add(self.timeout);
        slot.flight.clear();
        slot.queued = 0;
        slot.written = 0;
        slot.answered = 0;
        slot.reply.reset();
    }

    fn on_connected(&mut self, i: usize) {
        let now = self.plan.window.now();
        self.slots[i].state = State::Idle;
        match self.mode {
            Pacing::Closed => self.issue(i, self.pipeline, now, now),
            Pacing::Churn => self.issue(i, 1, self.slots[i].connected_at, now),
            Pacing::Open => self.send_when_due(i, now),
        }
    }

    /// Open loop: sends the next request if it is due (late or not), or sets a timer for it.
    fn send_when_due(&mut self, i: usize, now: u64) {
        let due = self.slots[i].next_due;
        if due <= now {
            self.slots[i].next_due = due + self.interval;
            self.issue(i, 1, due, now);
        } else {
            self.set_timer(i, due);
        }
    }

    /// Puts up to `n` more requests in flight on slot `i`, their latency running from `base`,
    /// and writes them.
    fn issue(&mut self, i: usize, n: usize, base: u64, now: u64) {
        let n = (n as u64).min(self.limit.saturating_sub(self.issued));
        if n == 0 {
            return;
        }
        self.issued += n;
        let slot = &mut self.slots[i];
        if slot.flight.is_empty() {
            slot.deadline = now.saturating_add(self.timeout);
        }
        slot.state = State::Busy;
        slot.queued += n;
        for _ in 0..n {
            slot.flight.push_back(Flight { base, sent: now });
        }
        self.write_pending(i);
    }

    /// Writes what is queued on slot `i` and not yet written, until done or the socket is full.
    fn write_pending(&mut self, i: usize) {
        let requests = self.plan.requests_out;
        loop {
            let slot = &mut self.slots[i];
            let Some(stream) = slot.stream.as_ref() else {
                return;
            };
            let pending = slot.queued * requests.len() as u64 - slot.written;
            if pending == 0 {
                return;
            }
            match (&*stream).write(requests.bytes_at(slot.written, pending)) {
                Ok(n) => slot.written += n as u64,
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
            let now = self.plan.window.now();
            match self.judge(i, n, now) {
                Err(kind) => return self.fail(i, kind, now),
                Ok(Judged { done: 0, .. }) => {}
                Ok(Judged { close: true, .. }) => {
                    // The server said it closes after that reply: what else was in flight
                    // will not be answered, and under a request count is issued again.
                    let left = self.slots[i].flight.len() as u64;
                    self.issued -= left;
                    self.close(i, false);
                    return self.connect(i, now);
                }
                Ok(Judged { done, .. }) => {
                    self.after_replies(i, done, now);
                    if self.slots[i].state != State::Busy {
                        return;
                    }
                }
            }
            // A short read means the socket is drained; the next bytes bring a new edge.
            if n < self.scratch.len() {
                return;
            }
        }
    }

    /// Judges the `n` bytes just read on slot `i`, reply after reply in request order, and
    /// records each reply completed; says how many, or what was wrong.
    fn judge(&mut self, i: usize, n: usize, now: u64) -> Result<Judged, Kind> {
        let window = self.plan.window;
        let requests = self.plan.requests_out;
        let open = self.mode == Pacing::Open;
        let slot = &mut self.slots[i];
        let mut input = &self.scratch[..n];
        let mut done = 0;
        while !input.is_empty() {
            if slot.flight.is_empty() {
                return Err(Kind::Mismatch); // bytes nobody asked for
            }
            let expected = requests.message(slot.answered);
            let (verdict, took) = slot.reply.feed(self.protocol, input, expected);
            input = &input[took..];
            match verdict {
                ReplyCheck::Incomplete => break,
                ReplyCheck::Mismatch => return Err(Kind::Mismatch),
                ReplyCheck::Complete { close } => {
                    let Some(f) = slot.flight.pop_front() else {
                        return Err(Kind::Mismatch);
                    };
                    slot.answered += 1;
                    slot.reply.reset();
                    slot.deadline = now.saturating_add(self.timeout);
                    self.completed += 1;
                    self.last_done = now;
                    done += 1;
                    if now >= window.start && now < window.end {
                        self.hist
                            .saturating_record(now.saturating_sub(f.base).max(1));
                        if open {
                            self.hist_sent
                                .saturating_record(now.saturating_sub(f.sent).max(1));
                        }
                        self.requests += 1;
                    }
                    if close {
                        return if input.is_empty() {
                            Ok(Judged { done, close: true })
                        } else {
                            Err(Kind::Mismatch) // bytes after the last response
                        };
                    }
                }
            }
        }
        Ok(Judged { done, close: false })
    }

    /// After `done` replies on slot `i`: the next requests, as the pacing wants them.
    fn after_replies(&mut self, i: usize, done: usize, now: u64) {
        let idle = self.slots[i].flight.is_empty();
        if idle {
            self.slots[i].state = State::Idle;
        }
        if now >= self.plan.window.end {
            return; // the run is over: issue nothing the server would answer after it
        }
        match self.mode {
            Pacing::Churn => {
                self.close(i, true);
                self.connect(i, now);
            }
            Pacing::Closed => self.issue(i, done, now, now),
            Pacing::Open if idle => self.send_when_due(i, now),
            Pacing::Open => {}
        }
    }

    /// Counts an error on slot `i` and starts over with a new connection.
    fn fail(&mut self, i: usize, kind: Kind, now: u64) {
        let state = self.slots[i].state;
        if state == State::Busy {
            // The requests in flight did not happen; under a request count, issue them again.
            self.issued -= self.slots[i].flight.len() as u64;
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
        slot.flight.clear();
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
