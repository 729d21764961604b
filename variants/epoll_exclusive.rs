//! `epoll-exclusive` — one `epoll-lt` event loop per worker thread, all watching the *same*
//! listener, each registering it with EPOLLEXCLUSIVE (Linux 4.5) so that a new connection wakes
//! one waiting thread instead of all of them.
//!
//! Syscalls, in order: the listener is `dup`ed once per thread (the same socket, the same accept
//! queue); each thread runs the `epoll-lt` loop ([`epoll_lt::run`], [`one_loop_per_thread`]),
//! whose `epoll_ctl(ADD)` of the listener carries EPOLLEXCLUSIVE ([`ListenerWatch::Exclusive`]). Then, per connection: the kernel
//! wakes one of the threads blocked in `epoll_wait` on the listener, which `accept4`s until
//! EAGAIN.
//!
//! The trade against `epoll-reuseport`: here there is one accept queue, so a connection waits
//! for *whichever* thread is free first, and a busy thread never holds connections hostage. But
//! every accept takes the one queue's lock, and "one waiter" is not "the least loaded": the
//! kernel walks the listener's wait queue in registration order and wakes the first loop that
//! is waiting in `epoll_wait`, so under light load the first-registered loops get most of the
//! work — the per-worker meter printed at shutdown shows how much. EPOLLEXCLUSIVE also
//! only promises "one or more" woken, and the registration cannot be modified (EPOLL_CTL_MOD
//! fails with EINVAL), which is why the shared loop pauses the listener with DEL and ADD.
//! SO_REUSEPORT hashes blind but never contends; EPOLLEXCLUSIVE shares the work but contends on
//! one queue. The herd it tames (惊群) is the one `prefork` describes: without the flag, every
//! thread's `epoll_wait` would return for each connection and all but one would find EAGAIN.
//!
//! Cost: per connection, what `epoll-lt` costs plus the shared queue's lock. Compare with
//! `epoll-reuseport`, `prefork` (processes in blocking `accept`, the kernel's own wake-one) and
//! `tokio`. Notes: `notes/epoll-exclusive.md`.

use std::io;

use super::epoll_lt::{self, ListenerWatch};
use crate::server::event_loop::one_loop_per_thread;
use crate::server::model::{Model, ServeContext};

/// Serves with one epoll loop per worker thread on one shared listener, woken one at a time.
pub struct EpollExclusive;

impl Model for EpollExclusive {
    fn name(&self) -> &'static str {
        "epoll-exclusive"
    }

    fn summary(&self) -> &'static str {
        "an epoll-lt loop per worker thread on one shared listener, registered EPOLLEXCLUSIVE"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let dups = (1..ctx.config.workers.max(1))
            .map(|_| ctx.listener.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        one_loop_per_thread(ctx, dups, |ctx| {
            epoll_lt::run(ctx, ListenerWatch::Exclusive)
        })
    }
}
