//! `tokio` — the reference a user would otherwise pick: tokio's runtime, written the way the
//! tokio tutorial writes a server — an `accept` loop that spawns a task per connection, each
//! task reading and writing with `AsyncReadExt`/`AsyncWriteExt` and awaiting every write.
//!
//! Runtime flavour: `current_thread` with `--workers 1` (one thread runs the accept loop and
//! every task); otherwise the multi-thread, work-stealing runtime with `--workers N` worker
//! threads, the accept loop on the main thread (`block_on`) and the connection tasks on the
//! workers. The bytes are the same as every other model's: the task feeds the same sans-IO
//! session ([`crate::server::protocol`]) through the same [`conn::feed`].
//!
//! Syscalls, in order (under mio): `epoll_create1`, the listener and every connection
//! registered once, edge-triggered (`epoll_ctl` ADD); then the runtime's loop: `epoll_wait`,
//! wake the tasks whose sockets are ready, each task `accept4` / `recvfrom` / `sendto` until
//! EAGAIN — or, for a read, until a short read, after which tokio clears the readiness itself
//! (`PollEvented::poll_read`: with epoll a partial read shows the socket drained) — park. With N workers, an idle worker steals tasks from the others, and a wake-up of a
//! parked worker is a futex call (or a write to mio's eventfd).
//!
//! Why it is only the reference: everything the workbook teaches — readiness, buffers,
//! backpressure, the event loop — is hidden here behind `.await`. Its row in every table answers
//! the user's real question, "would hand-written code beat what I would have written anyway?",
//! which is what the efficiency targets measure against (`tokio` with one worker).
//!
//! Costs: a task (a few hundred bytes) and a read buffer of `read_chunk` bytes per connection,
//! as idiomatic code allocates it — so idle connections cost more here than in `epoll-lt`,
//! whose loop owns one scratch buffer; wakers and the scheduler's queues on every readiness
//! event; with several workers, cross-thread wake-ups and stealing. Backpressure is the await:
//! a peer that does not read stalls only its own task in `write_all`, and that task reads
//! nothing more meanwhile. Where it breaks: a task that blocks (a blocking syscall, a long
//! computation) stalls its whole worker thread — with `current_thread`, the whole server.
//!
//! Per-worker meter: with several workers, each connection is counted against the worker
//! thread that first polls its task (workers are numbered as they start); work stealing can
//! move the task later, so the figure says where connections began, not where all their work
//! ran. Compare with `epoll-lt` (one hand-written loop), `epoll-reuseport` (a loop per core)
//! and `io-uring`. Notes: `notes/tokio.md`.

use std::cell::Cell;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use ::tokio::net::{TcpListener, TcpStream};
use ::tokio::runtime::{Builder, Runtime};
use ::tokio::sync::watch;
use ::tokio::task::JoinSet;
use ::tokio::time::{Instant, timeout, timeout_at};
use nix::errno::Errno;

use crate::server::conn;
use crate::server::meter::WorkerMeter;
use crate::server::model::{Config, Model, ServeContext};
use crate::server::net::{self, Accepted};
use crate::server::protocol::{Protocol, Session};
use crate::server::shutdown::Shutdown;

/// Serves each connection on a tokio task.
pub struct Tokio;

thread_local! {
    /// The index of the runtime worker running on this thread, if it is one.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

impl Model for Tokio {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn summary(&self) -> &'static str {
        "the reference: tokio, a task per connection (current_thread for 1 worker, else multi-thread)"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let ServeContext {
            listener,
            protocol,
            shutdown,
            config,
            ..
        } = ctx;
        let workers = config.workers.max(1);
        let meter = Arc::new(WorkerMeter::new(workers)?);
        let runtime = runtime(workers)?;
        crate::event!(
            "tokio runtime: {}",
            if workers == 1 {
                "current_thread".to_string()
            } else {
                format!("multi_thread, {workers} workers")
            }
        );
        listener.set_nonblocking(true)?;
        let result = runtime.block_on(accept_loop(
            listener,
            protocol,
            shutdown,
            Arc::new(config),
            Arc::clone(&meter),
        ));
        // Every connection task has been aborted and awaited by now; this joins the workers.
        drop(runtime);
        meter.report();
        result
    }
}

/// The runtime a tokio user would build for `workers` threads.
fn runtime(workers: usize) -> io::Result<Runtime> {
    if workers == 1 {
        return Builder::new_current_thread().enable_all().build();
    }
    let next = AtomicUsize::new(0);
    Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        // The workers are the first threads the runtime starts, numbered 0..N; this model starts
        // no blocking-pool thread that would take a number after them.
        .on_thread_start(move || WORKER.set(Some(next.fetch_add(1, Ordering::Relaxed))))
        .build()
}

/// Accepts until shutdown, a task per connection; then aborts every task and waits for them.
async fn accept_loop(
    listener: std::net::TcpListener,
    protocol: Protocol,
    shutdown: Shutdown,
    config: Arc<Config>,
    meter: Arc<WorkerMeter>,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    // The shutdown eventfd, registered with the runtime's epoll like any socket: it becomes
    // readable once and stays so.
    // SAFETY: the shutdown eventfd is never closed while the process lives, and a BorrowedFd
    // always returns the same descriptor.
    let stop = unsafe { AsyncFd::register_with_interest(shutdown.fd(), Interest::READABLE) }
        .map_err(io::Error::from)?;
    let mut tasks = JoinSet::new();
    // Tells every connection task that the server is stopping.
    let (stopping, stop_heard) = watch::channel(false);
    let result = loop {
        ::tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    net::on_accepted(stream.as_fd());
                    let (config, meter) = (Arc::clone(&config), Arc::clone(&meter));
                    let stop = stop_heard.clone();
                    tasks.spawn(async move {
                        meter.served(WORKER.get().unwrap_or(0));
                        // A reset or timed-out peer ends only its own task.
                        let _ = serve(stream, protocol, &config, stop).await;
                    });
                }
                Err(e) => match net::accept_failed(Errno::from_raw(e.raw_os_error().unwrap_or(0))) {
                    // Out of descriptors: the connection waits in the queue; do not spin on it.
                    Ok(Accepted::Exhausted(_)) => ::tokio::time::sleep(net::EXHAUSTED_BACKOFF).await,
                    Ok(Accepted::Closed) => break Ok(()),
                    Ok(_) => {}
                    Err(_) => break Err(e),
                },
            },
            // Collect finished tasks, or the set would keep one entry per connection ever served.
            Some(_) = tasks.join_next() => {}
            _ = stop.readable() => break Ok(()),
        }
    };
    // Every task stops reading, writes what it owes and closes with a FIN; those whose peer
    // will not take their replies are aborted at the deadline (dropping a task's future drops
    // its socket).
    if !tasks.is_empty() {
        crate::event!("shutdown: closing the {} open connection(s)", tasks.len());
    }
    let _ = stopping.send(true);
    let _ = timeout(STOP_DEADLINE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
    result
}

/// How long a graceful shutdown waits for connections to take their last replies before
/// aborting them: well inside the 5 s an operator (or the conformance suite) allows.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// Serves one connection: read, feed the session, write the whole reply, repeat.
async fn serve(
    mut stream: TcpStream,
    protocol: Protocol,
    config: &Config,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut session = protocol.session_for(config);
    let (mut pending, mut out) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; config.read_chunk.max(1)];
    // The deadline of the incomplete request head in `pending`, from its first byte.
    let mut head_deadline: Option<Instant> = None;
    loop {
        let read = read(&mut stream, &mut buf, config.idle_timeout, head_deadline);
        let read = ::tokio::select! {
            read = read => read?,
            // Shutdown: read no more; the replies owed are already written.
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        let n = match read {
            Read::Bytes(0) => break,
            Read::Bytes(n) => n,
            Read::HeadTimedOut => {
                session.head_timed_out(&mut out);
                // Best effort: a client this slow may not read either.
                let limit = Some(Duration::from_secs(1));
                let _ = write_all(&mut stream, &out, limit).await;
                break;
            }
        };
        let close = conn::feed(&mut session, &mut pending, &buf[..n], &mut out);
        // Awaiting the whole reply before reading again is the backpressure.
        write_all(&mut stream, &out, config.idle_timeout).await?;
        out.clear();
        if close {
            break;
        }
        head_deadline = match (pending.is_empty(), head_deadline) {
            (true, _) => None,
            (false, None) => config.header_timeout.map(|t| Instant::now() + t),
            (false, deadline) => deadline,
        };
    }
    // Every reply is written: FIN first, then a short drain of what the peer already sent, so
    // that closing does not turn into an RST that could destroy our last reply — the same
    // close every model makes. The socket leaves the runtime for it (it is closed right after).
    conn::lingering_close(&stream.into_std()?);
    Ok(())
}

/// What one bounded read came to.
enum Read {
    /// Bytes read; 0 at the end of the stream.
    Bytes(usize),
    /// The request head's deadline passed first.
    HeadTimedOut,
}

/// One read, bounded by the idle timeout and the request head's deadline. A timeout with bytes
/// waiting in the socket is not idleness: after the process was stopped for a while (SIGSTOP),
/// the runtime's timers can fire before its reactor has polled the sockets, and the read
/// simply goes on. (`read` is cancel safe: a read that lost the race took no bytes.)
async fn read(
    stream: &mut TcpStream,
    buf: &mut [u8],
    idle: Option<Duration>,
    head_deadline: Option<Instant>,
) -> io::Result<Read> {
    loop {
        let idle_deadline = idle.map(|t| Instant::now() + t);
        let Some(until) = [idle_deadline, head_deadline].into_iter().flatten().min() else {
            return stream.read(buf).await.map(Read::Bytes);
        };
        match timeout_at(until, stream.read(buf)).await {
            Ok(read) => return read.map(Read::Bytes),
            Err(_) if head_deadline.is_some_and(|d| Instant::now() >= d) => {
                return Ok(Read::HeadTimedOut);
            }
            Err(_) if net::bytes_can_move(stream.as_fd(), false) => continue,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Writes all of `bytes`, each write bounded by the idle timeout: a timeout while the socket
/// could take bytes (the process was stopped) is not idleness. (`write` is cancel safe, where
/// `write_all` is not: a timed-out `write_all` would leave unknown how much was sent.)
async fn write_all(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    idle: Option<Duration>,
) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = match idle {
            None => stream.write(bytes).await?,
            Some(limit) => match timeout(limit, stream.write(bytes)).await {
                Ok(written) => written?,
                Err(_) if net::bytes_can_move(stream.as_fd(), true) => continue,
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            },
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    Ok(())
}
