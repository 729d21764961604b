//! # server-models
//!
//! The classic ways of serving many TCP connections, side by side, behind one trait, and a harness
//! that measures them fairly.
//!
//! - [`model`]: the [`Model`](model::Model) trait every server model implements, the
//!   [`ServeContext`](model::ServeContext) it serves with, and the registry lookup.
//! - [`protocol`]: the sans-IO protocols (echo and a minimal HTTP/1.1): bytes in, bytes out, no
//!   sockets, so that every model moves the same bytes through the same code.
//! - [`conn`]: one connection's buffers and backpressure — the blocking loop the blocking family
//!   shares, and the nonblocking state machine the event-driven family shares.
//! - [`net`]: listener setup and `accept` with its error cases sorted out (EMFILE and friends).
//! - [`shutdown`]: SIGINT/SIGTERM turned into one shutdown signal every model can wait on.
//! - [`accept_lock`]: how preforked children take turns at `accept`: no lock, a file lock, a
//!   process-shared mutex.
//! - [`children`]: forking, reaping and stopping child processes, for the process models.
//! - [`event_loop`]: what the event-driven models share — the table of connections, accepting
//!   with EMFILE handled, the idle timeout, shutdown — so that they differ only in how they wait.
//! - [`lab`]: the runnable labs, each putting one classic claim about sockets to this kernel.
//! - [`uring`]: the ring of provided buffers that a completion-based (io_uring) model shares
//!   among its connections.
//! - [`meter`]: Stevens' per-child meter, how many connections each worker served.
//! - [`load`]: the load generator: closed and open loop, churn, latency histograms.
//! - [`spawn`]: a server started as a child process, for tests, benches and `compare`.
//! - [`measure`]: a server's process tree measured from /proc: CPU, PSS, threads, switches.
//! - [`compare`]: every model through the same sweep, measured the same way (the main job).
//! - [`report`]: the tables, results.json/csv, index.md and the SVG plots of a comparison.
//! - `variants`: one file per model, each readable top to bottom; [`variants::all`] is the registry.
#![deny(missing_docs)]

pub mod accept_lock;
pub mod children;
pub mod compare;
pub mod conn;
pub mod event_loop;
pub mod lab;
pub mod load;
pub mod measure;
pub mod meter;
pub mod model;
pub mod net;
pub mod protocol;
pub mod report;
pub mod shutdown;
pub mod spawn;
pub mod uring;

/// One module per model, in teaching order; see `variants/mod.rs`.
#[path = "../variants/mod.rs"]
pub mod variants;

/// Prints one line about a notable event (listening, out of descriptors, shutdown) to stderr,
/// prefixed with the process id so that lines from forked children can be told apart.
///
/// Never used per request: a server that logs per request measures its logging.
#[macro_export]
macro_rules! event {
    ($($arg:tt)*) => {
        {
            // One write(2) per line, so that lines from forked children never interleave.
            let line = format!("server-models[{}]: {}\n", std::process::id(), format_args!($($arg)*));
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        }
    };
}
