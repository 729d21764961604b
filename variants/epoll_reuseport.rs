//! `epoll-reuseport` — one `epoll-lt` event loop per worker thread, each with a listener of its
//! own, all bound to the same address with SO_REUSEPORT (Linux 3.9): the kernel, not the
//! program, spreads new connections among the listeners.
//!
//! Syscalls, in order: the first listener comes bound from `serve` with SO_REUSEPORT set (the
//! model asks for it, [`Model::reuse_port`]); N−1 more `socket`, `setsockopt(SO_REUSEPORT)`,
//! `bind` to the same address, `listen`. Then N threads each run exactly the `epoll-lt` loop
//! ([`epoll_lt::run`]) on their own listener: `epoll_wait`, `accept4`, `read`, `write`.
//! Nothing is shared between the threads but the shutdown eventfd.
//!
//! How a connection finds its thread: each listener has its own accept queue (已完成连接队列), and
//! when a SYN arrives the kernel hashes the connection's 4-tuple (addresses and ports) to pick
//! one listener of the group. So there is no contention at all — no shared queue, no lock, no
//! herd (惊群): a connection wakes exactly the thread that owns its listener. The price of
//! hashing blind: the kernel does not know which thread is busy, so a thread stuck on slow work
//! still gets its share of new connections, and they wait in its queue while other threads
//! idle; and when a listener closes, the connections waiting in its queue are reset — by
//! default: with `net.ipv4.tcp_migrate_req=1` (Linux 5.14) the kernel moves them to another
//! listener of the group instead (`reuseport_migrate_sock`, counted in `TCPMigrateReqSuccess`).
//! Compare `epoll-exclusive`, where the threads share one queue and the kernel wakes one *idle* waiter.
//!
//! Cost: per connection, what `epoll-lt` costs; per worker, a thread, an epoll instance and a
//! listener ([`one_loop_per_thread`]). The extra listeners take the default backlog
//! ([`ListenOptions`]). At shutdown the
//! model prints how many connections each thread accepted (the per-worker meter): with many
//! client ports the hash spreads them evenly; with few, it may not. Compare with `epoll-lt` (one
//! thread), `epoll-exclusive`, `tokio` (work stealing) and `io-uring`. Notes:
//! `notes/epoll-reuseport.md`.

use std::io;

use super::epoll_lt::{self, ListenerWatch};
use crate::server::event_loop::one_loop_per_thread;
use crate::server::model::{Model, ServeContext};
use crate::server::net::{self, ListenOptions};

/// Serves with one epoll loop and one SO_REUSEPORT listener per worker thread.
pub struct EpollReuseport;

impl Model for EpollReuseport {
    fn name(&self) -> &'static str {
        "epoll-reuseport"
    }

    fn summary(&self) -> &'static str {
        "an epoll-lt loop per worker thread, each with its own SO_REUSEPORT listener"
    }

    fn reuse_port(&self) -> bool {
        true
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let addr = ctx.listener.local_addr()?;
        let opts = ListenOptions {
            reuse_port: true,
            ..Default::default()
        };
        let mut more = Vec::new();
        for _ in 1..ctx.config.workers.max(1) {
            more.push(net::listen(addr, &opts).map_err(|e| {
                let hint = "(was the first bound with SO_REUSEPORT?)";
                io::Error::new(e.kind(), format!("another listener on {addr}: {e} {hint}"))
            })?);
        }
        one_loop_per_thread(ctx, more, |ctx| epoll_lt::run(ctx, ListenerWatch::Plain))
    }
}
