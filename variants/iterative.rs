//! `iterative` — one client at a time: accept, serve that client to EOF, accept the next.
//! See notes/iterative.md.
//!
//! The baseline every concurrent model is measured against (Stevens, UNP ch. 30.4).
//!
//! Syscalls, in order: `accept` blocks until the handshake of the next client has completed
//! and its connection waits in the accept queue (已完成连接队列); then `read`/`write` on that
//! one connection until the client closes; then `close`, and back to `accept`.
//!
//! Cost: no thread, no process, no event loop — the least CPU per request of any model while
//! there is one client. Where it breaks: a second client waits in the accept queue, its
//! `connect` already succeeded (the kernel completed the handshake), until the first one
//! leaves; one client that never closes or never reads stops the whole server. Compare with
//! `fork-per-conn` and `thread-per-conn`, which lift exactly that limit, at a price.

use std::io;
use std::os::fd::AsFd;

use crate::server::conn::serve_blocking;
use crate::server::model::{Concurrency, Model, ServeContext};
use crate::server::net::accept_blocking;
use crate::server::shutdown::BlockedIn;

/// Serves one client at a time.
pub struct Iterative;

impl Model for Iterative {
    fn name(&self) -> &'static str {
        "iterative"
    }

    fn summary(&self) -> &'static str {
        "one client at a time: accept, serve to EOF, accept the next"
    }

    fn concurrency(&self) -> Concurrency {
        Concurrency::One
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let ServeContext {
            listener,
            protocol,
            shutdown,
            config,
            ..
        } = ctx;
        // One process, one thread, blocked in accept or read: the signal handler shuts the
        // socket we are blocked on, so the call returns and the loop sees the shutdown.
        let _accepting = shutdown.shut_on_signal(BlockedIn::Accept, listener.as_fd());
        let mut buf = Vec::new();
        while let Some(stream) = accept_blocking(&listener, &shutdown)? {
            let _serving = shutdown.shut_on_signal(BlockedIn::Io, stream.as_fd());
            // A reset peer ends only its own connection.
            let _ = serve_blocking(&stream, protocol, &config, &mut buf);
        }
        Ok(())
    }
}
