//! `poll` — one thread, one `pollfd` array: every turn hands the kernel the whole array and
//! gets back, in the same array, which descriptors are ready.
//!
//! Syscalls, in order: the loop calls `poll` on the array (the shutdown eventfd, the listener,
//! then one entry per connection; timeout: the next idle deadline); then walks the array: for
//! each connection entry with `revents`, one `read` (then `write` of the reply) or a `write` of
//! pending output ([`EventLoop::on_ready`]), and its `events` set anew only when what it waits
//! for changed ([`Want::Changed`]); for the listener, `accept4` until EAGAIN or
//! [`ACCEPT_BUDGET`] connections ([`EventLoop::accept`]), each new socket appended to the
//! array. `close` of a finished connection, and its entry removed.
//!
//! What poll fixes in `select`: no FD_SETSIZE (the array is as long as it needs to be), and
//! `events` are not overwritten (results come back in `revents`), so the array is kept from turn
//! to turn instead of rebuilt. It is kept compact: a closing connection's entry is replaced by
//! the last entry (`swap_remove`), with a map from descriptor number to position so the moved
//! entry can be found again — an array with holes would make the kernel walk the holes too.
//!
//! What it does not fix: the kernel still walks every entry on every call — it calls each
//! socket's poll function and, until it meets a ready one, adds the thread to each socket's wait
//! queue, to be taken off them all on return (`do_poll` in fs/select.c) — and the loop walks them
//! all again to find the few with `revents`: O(watched) per turn, not O(ready). At 10 000 idle
//! connections and one active, each turn copies 80 KB of pollfd in (8 bytes each), writes back
//! every entry's 2-byte `revents`, and checks 10 000 sockets to serve one. Out of descriptors, the listener's entry gets `events = 0` until a connection closes,
//! since a readable listener that cannot be accepted would end every `poll` at once.
//! Compare with `select` (the same walk, with a hard ceiling) and `epoll-lt` (O(ready)).
//!
//! The note: notes/poll.md.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::libc;

use crate::server::conn::{Interest, Ready};
#[cfg(doc)]
use crate::server::event_loop::ACCEPT_BUDGET;
use crate::server::event_loop::{EventLoop, FdLimit, Want, poll_timeout};
use crate::server::model::{Model, ServeContext};

/// The array's first two entries; connections follow.
const SHUTDOWN: usize = 0;
const LISTENER: usize = 1;

/// Serves every connection from one thread, waiting in poll(2).
pub struct Poll;

impl Model for Poll {
    fn name(&self) -> &'static str {
        "poll"
    }

    fn summary(&self) -> &'static str {
        "one thread, one pollfd array kept compact; the kernel walks it every turn"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let mut event_loop = EventLoop::new(ctx, FdLimit::None)?;
        let mut fds = PollSet::default();
        fds.push(event_loop.shutdown_fd().as_raw_fd(), libc::POLLIN);
        fds.push(event_loop.listener().as_raw_fd(), libc::POLLIN);

        while !event_loop.shutdown_requested() {
            // Out of descriptors, a readable listener would end every poll at once.
            fds.entries[LISTENER].events = if event_loop.accepting() {
                libc::POLLIN
            } else {
                0
            };
            let timeout = i32::from(poll_timeout(event_loop.timeout()));
            // SAFETY: the pointer and length describe the live, initialised `pollfd` array,
            // which nothing else touches during the call. (nix's `PollFd` borrows each
            // descriptor for the array's lifetime, which an array kept across turns while
            // connections come and go cannot express.)
            let n = unsafe {
                libc::poll(
                    fds.entries.as_mut_ptr(),
                    fds.entries.len() as libc::nfds_t,
                    timeout,
                )
            };
            if n < 0 {
                match io::Error::last_os_error() {
                    e if e.kind() == io::ErrorKind::Interrupted => continue,
                    e => return Err(e),
                }
            }
            if fds.entries[SHUTDOWN].revents != 0 {
                break;
            }
            // Walk every connection entry for the few with revents: the O(n) poll is known for.
            let mut i = LISTENER + 1;
            while i < fds.entries.len() {
                let libc::pollfd { fd, revents, .. } = fds.entries[i];
                if revents == 0 {
                    i += 1;
                    continue;
                }
                let ready = Ready {
                    // POLLHUP, POLLERR and POLLNVAL come unasked; the read meets the end or the
                    // error.
                    readable: revents
                        & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)
                        != 0,
                    writable: revents & libc::POLLOUT != 0,
                    peer_closed: false,
                };
                match event_loop.on_ready(fd, ready) {
                    Want::Unchanged => {}
                    Want::Changed { interest, .. } => fds.entries[i].events = events_for(interest),
                    Want::Closed => {
                        // The last entry moves here and is looked at next: its revents are
                        // current.
                        fds.remove(fd);
                        continue;
                    }
                }
                i += 1;
            }
            if fds.entries[LISTENER].revents & libc::POLLIN != 0 {
                event_loop.accept(|socket, interest| {
                    fds.push(socket.as_raw_fd(), events_for(interest));
                    Ok(())
                })?;
            }
            event_loop.sweep_timeouts(|fd| fds.remove(fd));
        }
        event_loop.close_all();
        Ok(())
    }
}

/// The `pollfd` array, with where each descriptor sits in it.
#[derive(Default)]
struct PollSet {
    entries: Vec<libc::pollfd>,
    /// `position[fd]` is the index of `fd`'s entry in `entries`.
    position: Vec<usize>,
}

impl PollSet {
    fn push(&mut self, fd: RawFd, events: libc::c_short) {
        let i = fd as usize;
        if i >= self.position.len() {
            self.position.resize(i + 1, usize::MAX);
        }
        self.position[i] = self.entries.len();
        self.entries.push(libc::pollfd {
            fd,
            events,
            revents: 0,
        });
    }

    /// Drops `fd`'s entry, moving the last entry into its place.
    fn remove(&mut self, fd: RawFd) {
        let i = self.position[fd as usize];
        self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.position[moved.fd as usize] = i;
        }
    }
}

/// The poll events that a connection's interest asks for.
fn events_for(interest: Interest) -> libc::c_short {
    let mut events = 0;
    if interest.read {
        events |= libc::POLLIN;
    }
    if interest.write {
        events |= libc::POLLOUT;
    }
    events
}
