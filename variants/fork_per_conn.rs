//! `fork-per-conn` — a new process for every accepted connection: the classic Unix server
//! (Stevens, UNP ch. 4.8 and 30.5).
//! See notes/fork-per-conn.md.
//!
//! Syscalls, in order: the parent blocks in `accept`; for each connection it calls `fork`,
//! then `close`s its own copy of the connected socket and goes back to `accept`. The child
//! `close`s its copy of the listener, serves the connection with blocking `read`/`write`, and
//! `_exit`s. The parent's `waitpid` reaps it when SIGCHLD interrupts `accept`.
//!
//! Why both closes: after `fork` both processes hold the listener and the connection, and
//! `close` only drops one reference to the socket. The kernel sends FIN when the last reference
//! goes — so if the parent kept its copy, the client would never see EOF when the child exits,
//! and the parent would leak one descriptor per connection until EMFILE. (`shutdown` is
//! different: it acts on the socket itself, whoever else holds it, and sends FIN at once.) The
//! child closes the listener so that a shutdown of the server is not held up by children.
//!
//! Cost: a `fork` per connection (copying page tables: ~100 µs or more for a large parent) and
//! an `exit` and `waitpid`; memory is shared copy-on-write, which is why PSS, not RSS, is the
//! honest figure. Where it breaks: connection churn, where the fork dominates. Compare with
//! `prefork` (processes made once) and `thread-per-conn` (a thread instead).

use std::io;
use std::os::fd::AsRawFd;

use crate::server::children::Children;
use crate::server::conn::serve_blocking;
use crate::server::model::{Model, ServeContext};
use crate::server::net::{self, Accepted, EXHAUSTED_BACKOFF};
use crate::server::shutdown::Slot;

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
        } = ctx;
        let mut children = Children::new()?;
        shutdown.shut_on_signal(Slot::Listener, Some(listener.as_raw_fd()));
        let mut fork_failing = false;
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
                // The child: drop the listener (one reference of two), serve, exit.
                shutdown.shut_on_signal(Slot::Listener, None);
                let _ = nix::unistd::close(listener.as_raw_fd());
                shutdown.shut_on_signal(Slot::Conn, Some(stream.as_raw_fd()));
                let _ = serve_blocking(&stream, protocol, &config, &mut Vec::new());
                0
            };
            // Out of processes or memory (EAGAIN, ENOMEM), fork fails for every connection
            // until some child exits. Keep this one and try again after a pause — its client
            // waits, like those queued behind it — rather than drop client after client as
            // fast as they arrive. Logged once per episode.
            while let Err(e) = children.spawn(child) {
                if !fork_failing {
                    fork_failing = true;
                    crate::event!("fork failed: {e}; retrying every {EXHAUSTED_BACKOFF:?}");
                }
                if shutdown.requested() {
                    break;
                }
                std::thread::sleep(EXHAUSTED_BACKOFF);
                children.reap();
            }
            fork_failing = false;
            // The parent: drop its reference to the connection. No FIN is sent: the child
            // still holds the socket.
            drop(stream);
        };
        children.stop_all();
        result
    }
}
