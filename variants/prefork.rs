//! `prefork` — N child processes forked at start, each blocking in `accept` on the listener
//! they share (Stevens, UNP ch. 30.6; Apache's prefork MPM).
//! See notes/prefork.md.
//!
//! Syscalls, in order: the parent binds and listens, then `fork`s N times and waits in
//! `waitpid`, replacing any child that dies. Each child loops: `accept` (blocking, on the shared
//! listening socket), `read`/`write` until the client leaves, `close`.
//!
//! The thundering herd (惊群): when N processes sleep in `accept` on one socket and a connection
//! arrives, old kernels woke all N, and N−1 went back to sleep having found nothing. Linux has
//! woken only one of them since 2.6 (blocking accept waiters are queued exclusive), so the herd
//! is gone for this model; it survives where processes wait in select/poll/epoll on a shared
//! listener, which is what EPOLLEXCLUSIVE (4.5) and SO_REUSEPORT (3.9) address.
//!
//! Cost: no fork per connection, so churn costs what `iterative` costs plus the scheduling;
//! N processes' memory, mostly shared copy-on-write. Where it breaks: at most N clients at once —
//! client N+1 completes its handshake and waits in the accept queue until a child is free.
//! Compare with `fork-per-conn` (a fork each) and `thread-pool` (threads, fed by one acceptor).

use std::io;
use std::os::fd::AsRawFd;

use crate::children::Children;
use crate::conn::serve_blocking;
use crate::model::{Concurrency, Model, ServeContext};
use crate::net::{EXHAUSTED_BACKOFF, accept_blocking};
use crate::shutdown::Slot;

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

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let ServeContext {
            listener,
            protocol,
            shutdown,
            config,
        } = ctx;
        let mut children = Children::new()?;
        // The parent never accepts, but a signal that shuts the shared listener wakes every
        // child blocked in accept on it.
        shutdown.shut_on_signal(Slot::Listener, Some(listener.as_raw_fd()));
        let child = || {
            let mut buf = Vec::new();
            loop {
                match accept_blocking(&listener, &shutdown) {
                    Ok(Some(stream)) => {
                        shutdown.shut_on_signal(Slot::Conn, Some(stream.as_raw_fd()));
                        let _ = serve_blocking(&stream, protocol, &config, &mut buf);
                        shutdown.shut_on_signal(Slot::Conn, None);
                    }
                    Ok(None) => return 0,
                    Err(e) => {
                        crate::event!("accept: {e}; child exits");
                        return 1;
                    }
                }
            }
        };
        let mut result = Ok(());
        // Keep N children alive until shutdown; one that dies while the server runs is replaced.
        let mut fork_failing = false;
        while !shutdown.requested() {
            if children.len() < config.workers.max(1) {
                match children.spawn(child) {
                    Ok(_) => fork_failing = false,
                    Err(e) => {
                        // Out of processes or memory: try again after a pause (logged once),
                        // instead of a fork attempt and a log line in a tight loop.
                        if !fork_failing {
                            fork_failing = true;
                            crate::event!("fork failed: {e}; retrying every {EXHAUSTED_BACKOFF:?}");
                        }
                        std::thread::sleep(EXHAUSTED_BACKOFF);
                        children.reap();
                    }
                }
                continue;
            }
            match children.wait_any() {
                Ok(Some(_)) if !shutdown.requested() => {
                    crate::event!("a child exited; forking a replacement");
                    // A child that dies at once (a persistent accept error) must not turn
                    // into a fork loop.
                    std::thread::sleep(EXHAUSTED_BACKOFF);
                }
                Ok(_) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        children.stop_all();
        result
    }
}
