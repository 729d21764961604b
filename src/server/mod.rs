//! The server core: what every model serves with, and nothing else. It imports nothing from the
//! harness or the labs (a test, `tests/layout.rs`, checks it).
//!
//! - [`model`]: the [`Model`](model::Model) trait every model implements, the
//!   [`ServeContext`](model::ServeContext) it serves with, and the registry lookup.
//! - [`protocol`]: the sans-IO protocols (echo and a minimal HTTP/1.1): bytes in, bytes out, no
//!   sockets, so that every model moves the same bytes through the same code.
//! - [`conn`]: one connection's buffers and backpressure — the blocking loop the blocking family
//!   shares, and the nonblocking state machine the readiness loops share.
//! - [`event_loop`]: what the readiness loops share — the table of connections, accepting with
//!   EMFILE handled, the idle timeout, shutdown — so that they differ only in how they wait.
//! - [`uring`]: the io_uring instance, its ring of provided buffers and one connection's state
//!   for a completion-based model.
//! - [`net`]: listener setup and `accept` with its error cases sorted out (EMFILE and friends).
//! - [`shutdown`]: SIGINT/SIGTERM turned into one shutdown signal every model can wait on.
//! - [`children`]: forking, reaping and supervising child processes, for the process models.
//! - [`accept_lock`]: how preforked children take turns at `accept`: no lock, a file lock, a
//!   process-shared mutex.
//! - [`meter`]: Stevens' per-worker meter, how many connections each worker served.

pub mod accept_lock;
pub mod children;
pub mod conn;
pub mod event_loop;
pub mod meter;
pub mod model;
pub mod net;
pub mod protocol;
pub mod shutdown;
pub mod uring;
