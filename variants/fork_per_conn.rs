//! `fork-per-conn` — a new process for every accepted connection: the classic Unix server
//! (Stevens, UNP ch. 4.8 and 30.5).
//! See notes/fork-per-conn.md.
//!
//! Syscalls, in order: the parent blocks in `accept`; for each connection it calls `fork`,
//! then `close`s its own copy of the connected socket and goes back to `accept`. The child
//! `close`s its copy of the listener, serves the connection with blocking `read`/`write`, and
//! `_exit`s. The parent's `waitpid` reaps it when SIGCHLD interrupts `accept`
//! ([`Children`]). Out of processes (`fork` fails with EAGAIN or ENOMEM), the parent keeps the
//! connection and forks again every [`FORK_BACKOFF`].
//!
//! Why both closes: after `fork` both processes hold the listener and the connection, and
//! `close` only drops one reference to the socket. The kernel sends FIN when the last reference
//! goes — so if the parent kept its copy, the client would never see EOF when the child exits,
//! and the parent would leak one descriptor per connection until EMFILE. (`shutdown` is
//! different: it acts on the socket itself, whoever else holds it, and sends FIN at once.) The
//! child closes the listener so that a shutdown of the server is not held up by children.
//!
//! Cost: a `fork` per connection (the child gets copies of the page tables of the parent's
//! anonymous mappings — file-backed ones it faults in afresh, `vma_needs_copy` in mm/memory.c —
//! and the pages themselves are shared copy-on-write until written), an `exit` and a `waitpid`: 234.5 µs of
//! server CPU per connection more than the iterative server's, in the churn run of
//! notes/classic-table.md. Memory is shared copy-on-write, which is why PSS, not RSS, is the
//! honest figure. Where it breaks: connection churn, where the fork dominates. Compare with
//! `prefork` (processes made once) and `thread-per-conn` (a thread instead).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use crate::server::children::{Children, FORK_BACKOFF};
use crate::server::conn::serve_blocking;
use crate::server::model::{Model, ServeContext};
use crate::server::net::{self, Accepted, EXHAUSTED_BACKOFF};
use crate::server::shutdown::BlockedIn;

/// Serves each connection in a child process of its own.
pub struct ForkPerConn;

impl Model for ForkPerConn {
    fn name(&self) -> &'static str {
        "fork-per-conn"
    }

    fn summary(&self) -> &'static str {
        "a child process for each connection (fork), reaped on SIGCHLD"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let ServeContext {
            listener,
            protocol,
            shutdown,
            config,
            ..
        } = ctx;
        let mut children = Children::new()?;
        let _accepting = shutdown.shut_on_signal(BlockedIn::Accept, listener.as_fd());
        let result = loop {
            // SIGCHLD interrupts accept (EINTR), so children are reaped as soon as they exit.
            children.reap();
            if shutdown.requested() {
                break Ok(());
            }
            let stream = match net::accept(&listener, false) {
                Ok(Accepted::Conn(stream)) => stream,
                Ok(Accepted::Again | Accepted::Empty) => continue,
                Ok(Accepted::Exhausted(_)) => {
                    std::thread::sleep(EXHAUSTED_BACKOFF);
                    continue;
                }
                Ok(Accepted::Closed) => break Ok(()),
                Err(e) => break Err(e),
            };
            let child = || {
                // The child: drop the listener (one reference of two), serve, exit. It never
                // returns into the parent's code, so the parent's `TcpListener` is not dropped
                // twice.
                let _ = nix::unistd::close(listener.as_raw_fd());
                let _serving = shutdown.shut_on_signal(BlockedIn::Io, stream.as_fd());
                let _ = serve_blocking(&stream, protocol, &config, &mut Vec::new());
                0
            };
            // Out of processes or memory (EAGAIN, ENOMEM), fork fails for every connection
            // until some child exits. Keep this one and try again after a pause — its client
            // waits, like those queued behind it — rather than drop client after client as
            // fast as they arrive.
            // SAFETY: this process has one thread: the model starts none, and `serve` runs it on
            // the main thread of a process that started none before (see `main.rs`).
            while unsafe { children.spawn(child) }.is_err() && !shutdown.requested() {
                std::thread::sleep(FORK_BACKOFF);
                children.reap();
            }
            // The parent: drop its reference to the connection. No FIN is sent: the child
            // still holds the socket.
            drop(stream);
        };
        children.stop_all();
        result
    }
}
