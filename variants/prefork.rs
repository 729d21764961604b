//! `prefork` — N child processes forked at start, each blocking in `accept` on the listener
//! they share (Stevens, UNP ch. 30.6; Apache's prefork MPM).
//! See notes/prefork.md.
//!
//! Syscalls, in order: the parent binds and listens, then `fork`s N times and waits in `poll`
//! on two eventfds — one the SIGCHLD handler writes, one the shutdown handler writes — reaping
//! with `waitpid(WNOHANG)` and replacing any child that died ([`Supervisor`]). Each child loops: `accept` (blocking, on the shared
//! listening socket), `read`/`write` until the client leaves, `close`.
//!
//! The thundering herd (惊群): when N processes sleep in `accept` on one socket and a connection
//! arrives, old kernels woke all N, and N−1 went back to sleep having found nothing. Linux has
//! woken only one of them since 2.4 (blocking accept waiters are queued exclusive:
//! `add_wait_queue_exclusive` in 2.4.0's `wait_for_connect`, where 2.2 woke them all), so the
//! herd is gone for this model — `server-models lab herd` counts it on this kernel; it survives
//! where processes wait in select/poll/epoll on a shared listener, which is what
//! EPOLLEXCLUSIVE (4.5) and SO_REUSEPORT (3.9) address.
//!
//! Stevens' accept strategies (`--accept-lock`): `none` (every child blocks in `accept`),
//! `fcntl` or `flock` (a file lock around `accept`: two extra syscalls per connection), `mutex`
//! (a process-shared pthread mutex: an atomic when uncontended). See [`crate::server::accept_lock`]. At
//! shutdown the parent prints how many connections each child served (Stevens' per-child meter),
//! which shows how evenly the kernel, or the lock, spread them.
//!
//! Cost: no fork per connection, so churn costs what `iterative` costs plus the scheduling;
//! N processes' memory, mostly shared copy-on-write. Where it breaks: at most N clients at once —
//! client N+1 completes its handshake and waits in the accept queue until a child is free.
//! Compare with `fork-per-conn` (a fork each) and `thread-pool` (threads, fed by one acceptor).

use std::io;
use std::os::fd::AsFd;

use crate::server::accept_lock::SharedLock;
use crate::server::children::Supervisor;
use crate::server::conn::serve_blocking;
use crate::server::meter::WorkerMeter;
use crate::server::model::{Concurrency, Model, ServeContext};
use crate::server::net::{accept_blocking, interrupted};
use crate::server::shutdown::BlockedIn;

/// Serves connections from N preforked processes that accept for themselves.
pub struct Prefork;

impl Model for Prefork {
    fn name(&self) -> &'static str {
        "prefork"
    }

    fn summary(&self) -> &'static str {
        "N preforked children, each blocking in accept() on the shared listener"
    }

    fn concurrency(&self) -> Concurrency {
        Concurrency::Workers
    }

    fn takes_accept_lock(&self) -> bool {
        true
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
        // Made before any fork, so that every child shares them.
        let lock = SharedLock::new(config.accept_lock)?;
        let meter = WorkerMeter::new(workers)?;
        // The parent never accepts, but a signal that shuts the shared listener wakes every
        // child blocked in accept on it.
        let _accepting = shutdown.shut_on_signal(BlockedIn::Accept, listener.as_fd());
        let child = |worker: usize| {
            let lock = match lock.child() {
                Ok(lock) => lock,
                Err(e) => {
                    crate::event!("accept lock: {e}; child exits");
                    return 1;
                }
            };
            let _accepting = shutdown.shut_on_signal(BlockedIn::Accept, listener.as_fd());
            let mut buf = Vec::new();
            while !shutdown.requested() {
                // With a lock, one child waits in accept and the others wait for the lock.
                let accepted = match lock.around(|| accept_blocking(&listener, &shutdown)) {
                    Ok(accepted) => accepted,
                    // A signal while waiting for a file lock: check for shutdown, wait again.
                    Err(e) if interrupted(&e) => continue,
                    Err(e) => Err(e),
                };
                match accepted {
                    Ok(Some(stream)) => {
                        meter.served(worker);
                        let _serving = shutdown.shut_on_signal(BlockedIn::Io, stream.as_fd());
                        let _ = serve_blocking(&stream, protocol, &config, &mut buf);
                    }
                    Ok(None) => return 0,
                    Err(e) => {
                        crate::event!("accept: {e}; child exits");
                        return 1;
                    }
                }
            }
            0
        };
        // Keep N children alive until shutdown, replacing any that dies in its worker's
        // place, so that the meter counts per worker.
        let mut children = Supervisor::<()>::new(workers, shutdown)?;
        let mut result = Ok(());
        while !shutdown.requested() {
            // SAFETY: this process has one thread: the model starts none, and `serve` runs it
            // on the main thread of a process that started none before (see `main.rs`).
            let refill = unsafe { children.fill(|worker| Ok(((), move || child(worker)))) };
            if let Some(wait) = refill {
                // A place is empty and may not be filled yet: a death or a failed fork.
                std::thread::sleep(wait);
                children.reap();
            } else if let Err(e) = children.wait() {
                result = Err(e);
                break;
            }
        }
        children.stop_all();
        meter.report();
        result
    }
}
