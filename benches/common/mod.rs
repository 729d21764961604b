//! What the socket benches share: starting each model as a server process, the criterion
//! settings that keep `cargo bench` short, and a client socket that closes with an RST.

#![allow(dead_code)] // each bench uses a part of it

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkGroup, Throughput, measurement::WallTime};
use nix::sys::socket::{setsockopt, sockopt};
use server_models::harness::spawn::ServerProcess;
use server_models::server::protocol::Protocol;

/// The echo message of the socket benches.
pub const MESSAGE: [u8; 64] = [b'x'; 64];

/// Starts `serve MODEL` as a child process; a model that cannot start here (a kernel without
/// io_uring, say) is skipped with a note instead of ending the whole bench run.
pub fn start(group: &str, model: &str, protocol: Protocol) -> Option<ServerProcess> {
    let bin = Path::new(env!("CARGO_BIN_EXE_server-models"));
    match ServerProcess::start(bin, model, protocol, &[]) {
        Ok(server) => Some(server),
        Err(e) => {
            eprintln!("{group}/{model}: skipped, the server did not start: {e}");
            None
        }
    }
}

/// A model's server, started the first time criterion runs its benchmark, so that a bench
/// filtered out on the command line (`cargo bench --bench roundtrip -- epoll-lt`) starts
/// nothing: criterion never calls the routine of a filtered benchmark.
pub struct Lazy<T> {
    group: &'static str,
    model: &'static str,
    started: Option<Option<T>>,
}

impl<T> Lazy<T> {
    /// Nothing started yet for `group/model`.
    pub fn new(group: &'static str, model: &'static str) -> Lazy<T> {
        Lazy {
            group,
            model,
            started: None,
        }
    }

    /// The server and whatever `setup` made beside it (a connection), made on the first call;
    /// `None` if the server could not start here.
    pub fn get(&mut self, setup: impl FnOnce(ServerProcess) -> T) -> Option<&mut T> {
        let (group, model) = (self.group, self.model);
        self.started
            .get_or_insert_with(|| start(group, model, Protocol::Echo).map(setup))
            .as_mut()
    }

    /// Whether the benchmark ran with its server up: only then is there a reply to check.
    pub fn served(&self) -> bool {
        matches!(self.started, Some(Some(_)))
    }
}

/// Times a model whose server could not start as taking no time: criterion cannot skip a
/// benchmark from inside it, and leaves a routine that reports zero time out of its analysis
/// (saying so in a line of its own), so no figure is made up for it.
pub fn skipped(b: &mut criterion::Bencher<'_>) {
    b.iter_custom(|_| Duration::ZERO);
}

/// One element per iteration, few samples, short windows: a full `cargo bench` over every
/// model stays within minutes on a 2-core machine.
pub fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

/// Connects with TCP_NODELAY (each message is one write that should leave at once) and a read
/// timeout, so that a server that stops answering fails the bench instead of hanging it.
pub fn connect(server: &ServerProcess) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("connect to the bench server");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Closes with SO_LINGER 0: an RST, so that thousands of short connections leave no TIME_WAIT
/// behind to exhaust the client's ephemeral ports.
pub fn abort(stream: TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&stream, sockopt::Linger, &linger).expect("SO_LINGER");
}
