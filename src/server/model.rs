//! The one trait every server model implements, and what it is given to serve with.

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use crate::server::accept_lock::AcceptLock;
use crate::server::meter::WorkerCounter;
use crate::server::protocol::{DEFAULT_MAX_BODY, Protocol};
use crate::server::shutdown::Shutdown;

/// A way of serving many TCP connections: iterative, a thread per connection, epoll, ...
///
/// A model is a plain value in the registry ([`crate::variants::all`]); everything it needs at
/// run time comes in the [`ServeContext`].
pub trait Model: Sync {
    /// The model's name on the command line, in bench IDs and in file names (`epoll-lt`).
    fn name(&self) -> &'static str;

    /// One line for `server-models list`.
    fn summary(&self) -> &'static str;

    /// How many clients the model can serve at the same time, by design.
    fn concurrency(&self) -> Concurrency {
        Concurrency::Unbounded
    }

    /// The highest descriptor number the model can watch, if it has such a limit (select's
    /// FD_SETSIZE). Connections past it are refused with one log line.
    fn fd_limit(&self) -> Option<usize> {
        None
    }

    /// Whether the listener must be bound with SO_REUSEPORT, so that the model can bind more
    /// listeners on the same address (one per thread, the kernel spreading connections).
    fn reuse_port(&self) -> bool {
        false
    }

    /// Whether the model reads `Config::accept_lock` (prefork's children taking turns at
    /// `accept`), so that a comparison runs it once per lock.
    fn takes_accept_lock(&self) -> bool {
        false
    }

    /// Serves connections from `ctx.listener` until `ctx.shutdown` fires; returns only when every
    /// connection is closed and every thread or process the model started is joined or reaped.
    fn serve(&self, ctx: ServeContext) -> io::Result<()>;
}

/// How many clients a model serves at once, by design.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    /// One client at a time: the next waits in the accept queue (the iterative server).
    One,
    /// As many as [`Config::workers`]: a fixed pool of threads or processes, each serving one
    /// client at a time.
    Workers,
    /// No limit in the model itself; descriptors, memory or `fd_limit` bound it.
    Unbounded,
}

impl Concurrency {
    /// The number of clients served at once under `config`, or `None` for no fixed limit.
    pub fn limit(self, config: &Config) -> Option<usize> {
        match self {
            Concurrency::One => Some(1),
            Concurrency::Workers => Some(config.workers),
            Concurrency::Unbounded => None,
        }
    }
}

/// The default header deadline ([`Config::header_timeout`]): generous for any real client on
/// any network (nginx's `client_header_timeout` defaults to 60 s, Apache's
/// `RequestReadTimeout` to 20–40 s for the head), short enough that a slowloris gives up its
/// connections within a minute.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The tuning every model reads the same way.
#[derive(Clone, Debug)]
pub struct Config {
    /// Threads or processes for the models that have a fixed number of them.
    pub workers: usize,
    /// Pending output past which a connection is not read until the peer drains it.
    pub out_cap: usize,
    /// The size of one read: a read buffer per thread (event loops) or per connection (blocking).
    pub read_chunk: usize,
    /// Connections idle for longer than this are closed; `None` keeps them forever. Idle means
    /// no byte moved: a connection with input waiting, or output its peer is taking, is not.
    pub idle_timeout: Option<Duration>,
    /// A request head still incomplete this long after its first byte is answered (HTTP: 408)
    /// and closed, so that a client sending its head a byte at a time (slowloris) holds
    /// neither a worker nor memory for ever. A deadline for the whole head, not a timeout per
    /// read. `None`: no deadline.
    pub header_timeout: Option<Duration>,
    /// How preforked children serialize `accept` (Stevens' accept strategies).
    pub accept_lock: AcceptLock,
    /// The largest request body the HTTP protocol accepts; a `Content-Length` past it is
    /// answered `413` and the connection closed as soon as the request head is in.
    pub max_body: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            out_cap: 256 * 1024,
            read_chunk: 16 * 1024,
            idle_timeout: None,
            header_timeout: Some(DEFAULT_HEADER_TIMEOUT),
            accept_lock: AcceptLock::None,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Everything a model serves with.
pub struct ServeContext {
    /// The bound, listening socket (blocking; a model that wants it nonblocking sets that).
    pub listener: TcpListener,
    /// The protocol every connection speaks.
    pub protocol: Protocol,
    /// Fires on SIGINT or SIGTERM.
    pub shutdown: Shutdown,
    /// Workers, buffer caps and timeouts.
    pub config: Config,
    /// Where this server counts the connections it accepts, when it is one worker of several
    /// (an event loop of `epoll-reuseport`); the default counts nothing.
    pub counter: WorkerCounter,
}

/// Finds a model by name in the registry.
pub fn find(name: &str) -> Option<&'static dyn Model> {
    crate::variants::all()
        .iter()
        .copied()
        .find(|m| m.name() == name)
}

/// The names of every registered model, in teaching order.
pub fn names() -> Vec<&'static str> {
    crate::variants::all().iter().map(|m| m.name()).collect()
}
