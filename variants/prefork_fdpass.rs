//! `prefork-fdpass` — N preforked children, but only the parent accepts: it passes each new
//! connection to an idle child over a Unix socket with SCM_RIGHTS, and the child says when it is
//! idle again (Stevens, UNP ch. 30.9).
//!
//! Syscalls, in order: the parent makes a `socketpair` per child and `fork`s it; then it loops:
//! `poll` on the children's sockets, the shutdown eventfd, and the listener — the listener only
//! while some child is idle, so that with every child busy new connections wait in the kernel's
//! accept queue (已完成连接队列). A readable listener: `accept4`, `sendmsg` of one byte with the
//! descriptor attached (SCM_RIGHTS: the kernel installs a new descriptor for the same socket in
//! the receiving process), `close` of the parent's copy. A readable child socket: `read` of the
//! one byte that says "idle" (or EOF: the child died; the [`Supervisor`] reaps it and forks
//! another). Each child loops
//! on `recvmsg` (the descriptor), serves the client with blocking `read`/`write`, `close`s it, and
//! `write`s its one byte back.
//!
//! Cost: per connection, on top of `prefork`'s, a `sendmsg`, a `recvmsg`, a `write`, a `read` and
//! a `poll` round — Stevens measured this design the slowest of the preforked ones (UNP Figure
//! 30.1); here it costs about what the locked `prefork` variants cost (notes/classic-table.md).
//! What it buys: the parent chooses the child (it could balance load, or drain a child for a
//! restart), and no child ever blocks in `accept`, so there is no herd and no lock. Which child:
//! like Stevens' parent, the first idle one in array order, so the per-child meter printed at
//! shutdown leans towards the low-numbered children when the load is light. Where it breaks: at
//! most N clients at once, like every pool; the parent is one more process every connection goes
//! through. Compare with `prefork` (children accept for themselves, `--accept-lock`) and
//! `thread-pool` (the same hand-off between threads: a channel instead of a socket). Notes:
//! `notes/prefork-fdpass.md`.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, sendmsg};
use nix::unistd::Pid;

use crate::server::children::Supervisor;
use crate::server::conn::serve_blocking;
use crate::server::meter::WorkerMeter;
use crate::server::model::{Concurrency, Config, Model, ServeContext};
use crate::server::net::{self, Accepted};
use crate::server::protocol::Protocol;
use crate::server::shutdown::{BlockedIn, Shutdown};

/// Serves connections from N preforked children fed descriptors by the parent.
pub struct PreforkFdpass;

/// What the parent keeps of one child.
struct Channel {
    /// The parent's end of the child's socketpair.
    chan: UnixStream,
    /// The child said it is idle, and no connection has been passed to it since.
    idle: bool,
}

impl Model for PreforkFdpass {
    fn name(&self) -> &'static str {
        "prefork-fdpass"
    }

    fn summary(&self) -> &'static str {
        "N preforked children; the parent accepts and passes each descriptor over a Unix socket (SCM_RIGHTS)"
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
            ..
        } = ctx;
        // Readable is checked by poll; accept must then never block (a client that reset
        // meanwhile leaves the queue empty).
        listener.set_nonblocking(true)?;
        let meter = WorkerMeter::new(config.workers)?;
        let mut children = Supervisor::<Channel>::new(config.workers, shutdown)?;
        let config = &config;
        let result = loop {
            // SAFETY: this process has one thread: the model starts none, and `serve` runs it
            // on the main thread of a process that started none before (see `main.rs`).
            let refill = unsafe {
                children.fill(|_| {
                    let (parent_end, child_end) = UnixStream::pair()?;
                    let body = move || child_main(&child_end, protocol, config, shutdown);
                    let kept = Channel {
                        chan: parent_end,
                        idle: true,
                    };
                    Ok((kept, body))
                })
            };
            let any_idle = children.iter().any(|(_, _, c)| c.idle);
            let mut fds = vec![
                PollFd::new(shutdown.fd(), PollFlags::POLLIN),
                PollFd::new(
                    listener.as_fd(),
                    if any_idle {
                        PollFlags::POLLIN
                    } else {
                        PollFlags::empty()
                    },
                ),
            ];
            fds.extend(
                children
                    .iter()
                    .map(|(_, _, c)| PollFd::new(c.chan.as_fd(), PollFlags::POLLIN)),
            );
            // With a place left empty, wake up when it may be filled again.
            let interrupted = match poll(&mut fds, refill.map_or(PollTimeout::NONE, timeout)) {
                Ok(_) => false,
                Err(Errno::EINTR) => true,
                Err(e) => break Err(e.into()),
            };
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            // The children whose channel is readable, named before any reaping changes the list.
            let speaking: Vec<Pid> = children
                .iter()
                .zip(&ready[2..])
                .filter_map(|((_, pid, _), &readable)| readable.then_some(pid))
                .collect();
            if interrupted {
                // SIGCHLD (a child died: reap it; its socket's EOF frees its place) or a
                // shutdown signal. Reaping only here keeps a `wait4` off every connection's
                // path.
                children.reap();
            }
            if ready[0] || shutdown.requested() {
                break Ok(());
            }
            // Children first: one that just said "idle" can take the next connection.
            let mut exiting = Vec::new();
            for (_, pid, channel) in children.iter_mut() {
                if !speaking.contains(&pid) {
                    continue;
                }
                let mut byte = [0u8; 1];
                match (&channel.chan).read(&mut byte) {
                    Ok(1) => channel.idle = true,
                    Err(e) if net::interrupted(&e) => {}
                    // EOF: the child is exiting. Its place is refilled at the top of the loop.
                    _ => exiting.push(pid),
                }
            }
            for pid in exiting {
                children.wait_for(pid);
            }
            if ready[1] {
                match net::accept(&listener, false) {
                    Ok(Accepted::Conn(stream)) => hand_off(&mut children, &meter, stream),
                    Ok(Accepted::Exhausted(_)) => std::thread::sleep(net::EXHAUSTED_BACKOFF),
                    Ok(Accepted::Closed) => break Ok(()),
                    Ok(Accepted::Again | Accepted::Empty) => {}
                    Err(e) => break Err(e),
                }
            }
        };
        // Closing the parent's ends lets an idle child see EOF; SIGTERM ends a busy one.
        children.stop_all();
        meter.report();
        result
    }
}

/// A poll(2) timeout for `wait`, rounded up to whole milliseconds.
fn timeout(wait: Duration) -> PollTimeout {
    let ms = wait.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// Passes `stream` to the first idle child, in worker order (as Stevens' parent does), and
/// closes the parent's copy. A child whose socket fails is left for the loop to find dead.
fn hand_off(children: &mut Supervisor<Channel>, meter: &WorkerMeter, stream: TcpStream) {
    let Some((worker, pid, channel)) = children.iter_mut().find(|(_, _, c)| c.idle) else {
        return; // Cannot happen: the listener is polled only while a child is idle.
    };
    match send_fd(&channel.chan, &stream) {
        Ok(()) => {
            channel.idle = false;
            meter.served(worker);
        }
        Err(e) => crate::event!("passing a connection to child {pid}: {e}; connection closed"),
    }
}

/// A child: receive a descriptor, serve it, say "idle", until the parent closes the socket.
fn child_main(chan: &UnixStream, protocol: Protocol, config: &Config, shutdown: Shutdown) -> i32 {
    // A signal shuts the channel, so that a child blocked in recvmsg returns at once.
    let _accepting = shutdown.shut_on_signal(BlockedIn::Accept, chan.as_fd());
    let mut buf = Vec::new();
    while !shutdown.requested() {
        let stream = match recv_fd(chan) {
            Ok(Some(fd)) => TcpStream::from(fd),
            Ok(None) => return 0,
            Err(e) if net::interrupted(&e) => continue,
            Err(e) => {
                crate::event!("recvmsg: {e}; child exits");
                return 1;
            }
        };
        {
            let _serving = shutdown.shut_on_signal(BlockedIn::Io, stream.as_fd());
            let _ = serve_blocking(&stream, protocol, config, &mut buf);
        }
        drop(stream);
        if (&*chan).write_all(&[1]).is_err() {
            return 1;
        }
    }
    0
}

/// Sends one byte with `fd` attached as SCM_RIGHTS.
fn send_fd(chan: &UnixStream, fd: &impl AsRawFd) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<UnixAddr>(
        chan.as_raw_fd(),
        &[IoSlice::new(&[0])],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Receives one byte and the descriptor attached to it; `None` when the parent closed the socket.
fn recv_fd(chan: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        chan.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS installed this descriptor in our table just now; nobody else
            // owns it.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "a message without a descriptor",
    ))
}
