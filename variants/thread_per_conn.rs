//! `thread-per-conn` — a new thread for every accepted connection.
//! See notes/thread-per-conn.md.
//!
//! Syscalls, in order: the main thread blocks in `accept`; for each connection it calls
//! `clone` (a thread: shared address space, its own stack) and goes back to `accept`; the new
//! thread blocks in `read`/`write` on its connection until the client leaves, then `close`s it
//! and exits.
//!
//! Cost: a `clone` and an `exit` per connection (35–43 µs of server CPU per connection beyond
//! the iterative server's in the churn runs of notes/results and notes/classic-table.md), a
//! stack per connection (we ask for 128 KiB of address space; only the touched pages cost
//! memory), and a context switch every time a blocked thread wakes. The code stays plain sequential code, which is the
//! model's charm. Where it breaks: thousands of threads mean thousands of stacks and a scheduler
//! juggling them (Kegel's C10K); under connection churn the `clone` per connection shows. Compare
//! with `thread-pool` (threads made once) and `fork-per-conn` (a process instead of a thread).

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::server::conn::serve_blocking;
use crate::server::model::{Model, ServeContext};
use crate::server::net::accept_blocking;
use crate::server::shutdown::{BlockedIn, ConnSet};

/// The stack each connection's thread gets; serving a connection needs little.
const STACK_SIZE: usize = 128 * 1024;

/// Serves each connection on a thread of its own.
pub struct ThreadPerConn;

impl Model for ThreadPerConn {
    fn name(&self) -> &'static str {
        "thread-per-conn"
    }

    fn summary(&self) -> &'static str {
        "a new thread for each connection, blocking reads and writes"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let ServeContext {
            listener,
            protocol,
            shutdown,
            config,
            ..
        } = ctx;
        // The main thread blocks in accept: the signal handler shuts the listener to wake it.
        let _accepting = shutdown.shut_on_signal(BlockedIn::Accept, listener.as_fd());
        let conns = Arc::new(ConnSet::default());
        // The scope joins every connection thread before `serve` returns.
        std::thread::scope(|scope| {
            let result = loop {
                let stream = match accept_blocking(&listener, &shutdown) {
                    Ok(Some(stream)) => stream,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                // Registered so that shutdown can wake the thread blocked in read.
                let Some(conn) = conns.track(stream) else {
                    break Ok(());
                };
                let config = &config;
                let spawned = std::thread::Builder::new()
                    .stack_size(STACK_SIZE)
                    .spawn_scoped(scope, move || {
                        let mut buf = Vec::new();
                        let _ = serve_blocking(conn.stream(), protocol, config, &mut buf);
                    });
                if let Err(e) = spawned {
                    // Out of threads (EAGAIN) or memory: this connection is closed (the closure
                    // and the stream in it are dropped); the next one may find room.
                    crate::event!("thread spawn failed: {e}; connection closed");
                }
            };
            conns.shut_all();
            result
        })
    }
}
