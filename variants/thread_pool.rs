//! `thread-pool` — N threads made once; the main thread accepts and hands each connection to
//! an idle worker through a channel (Stevens' prethreaded server, UNP ch. 30.12).
//! See notes/thread-pool.md.
//!
//! Syscalls, in order: `clone` N times at start; then the main thread blocks in `accept`, sends
//! the connection down a crossbeam channel (a futex wake of one waiting worker), and goes back to
//! `accept`; the worker blocks in `read`/`write` until the client leaves, `close`s, and waits on
//! the channel again.
//!
//! Cost: no thread creation per connection, so churn is cheaper than `thread-per-conn`; one
//! hand-off (a wake-up and a context switch) per connection. Where it breaks: at most N clients
//! are served at once — client N+1 waits in the channel, connected but unanswered, until a
//! worker frees up; N slow or idle clients stall everyone else. Compare with `thread-per-conn`
//! (no limit, a thread each) and `prefork` (processes that accept for themselves). At shutdown
//! it prints how many connections each worker served (Stevens' per-child meter).

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use crossbeam::channel;

use crate::server::conn::serve_blocking;
use crate::server::meter::WorkerMeter;
use crate::server::model::{Concurrency, Model, ServeContext};
use crate::server::net::accept_blocking;
use crate::server::shutdown::{BlockedIn, ConnSet};

/// Serves connections on a fixed pool of threads.
pub struct ThreadPool;

impl Model for ThreadPool {
    fn name(&self) -> &'static str {
        "thread-pool"
    }

    fn summary(&self) -> &'static str {
        "N prethreaded workers fed accepted connections through a channel"
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
        // The main thread blocks in accept: the signal handler shuts the listener to wake it.
        let _accepting = shutdown.shut_on_signal(BlockedIn::Accept, listener.as_fd());
        let conns = Arc::new(ConnSet::default());
        // Unbounded: a bound would only move the waiting from the channel back into the
        // kernel's accept queue, and the count of waiting connections is the same either way.
        let (tx, rx) = channel::unbounded::<std::net::TcpStream>();
        let workers = config.workers.max(1);
        let meter = WorkerMeter::new(workers)?;
        let result = std::thread::scope(|scope| {
            for i in 0..workers {
                let (rx, conns, config, meter) = (rx.clone(), &conns, &config, &meter);
                let spawned = std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn_scoped(scope, move || {
                        let mut buf = Vec::new();
                        // Ends when the sender is dropped and the queue is empty.
                        for stream in rx {
                            let Some(conn) = conns.track(stream) else {
                                continue;
                            };
                            meter.served(i);
                            let _ = serve_blocking(conn.stream(), protocol, config, &mut buf);
                        }
                    });
                if let Err(e) = spawned {
                    // Dropping the sender lets the workers already started end the scope.
                    drop(tx);
                    return Err(e);
                }
            }
            let result = loop {
                match accept_blocking(&listener, &shutdown) {
                    Ok(Some(stream)) => {
                        if tx.send(stream).is_err() {
                            break Ok(());
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            // Wake the workers blocked in read, and let queued connections be dropped unserved.
            conns.shut_all();
            drop(tx);
            result
        });
        meter.report();
        result
    }
}
