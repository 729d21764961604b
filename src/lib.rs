//! # server-models
//!
//! The classic ways of serving many TCP connections, side by side, behind one trait, and a harness
//! that measures them fairly. The tree is the map:
//!
//! - [`server`]: the core every model serves with — the [`Model`](server::model::Model) trait
//!   and registry lookup, the sans-IO protocols, one connection's state machine, the event-loop
//!   core, listener and accept, shutdown, children, accept locks, the per-worker meter, the
//!   io_uring rings. It imports nothing from the other two parts.
//! - `variants`: one file per model, each readable top to bottom; [`variants::all`] is the
//!   registry. They use the server core and nothing else.
//! - [`harness`]: the load generator, a server spawned as a child, measurement from /proc,
//!   `compare` and its report, and the conformance and fault cases `check` runs against any
//!   server.
//! - [`lab`]: the runnable labs, each putting one classic claim about sockets to this kernel.
//!
//! `main.rs` is the command line over all of them: `list`, `serve`, `load`, `compare`, `lab`,
//! `check`.
#![deny(missing_docs)]

pub mod harness;
pub mod lab;
pub mod server;

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
