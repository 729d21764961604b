//! `connect/MODEL/64`: the cost of a connection's whole life, per model. Timed, per iteration:
//! `connect` (the handshake, and the server's accept and whatever it starts for the connection:
//! nothing, a thread, a process), one 64-byte echo round trip, and the close — with SO_LINGER 0,
//! so an RST rather than a FIN, leaving no TIME_WAIT to exhaust the client's ports over
//! thousands of iterations. The server process is started and stopped outside the timing.

mod common;

use std::io::{Read, Write};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use server_models::server::protocol::Protocol;

fn connect(c: &mut Criterion) {
    let mut group = c.benchmark_group("connect");
    common::configure(&mut group);
    for model in server_models::variants::all() {
        let Some(server) = common::start("connect", model.name(), Protocol::Echo) else {
            continue;
        };
        let mut reply = [0u8; common::MESSAGE.len()];
        let id = BenchmarkId::new(model.name(), common::MESSAGE.len());
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut stream = common::connect(&server);
                    stream
                        .write_all(&common::MESSAGE)
                        .expect("write the message");
                    stream.read_exact(&mut reply).expect("read the echo");
                    common::abort(stream);
                }
                start.elapsed()
            })
        });
        assert_eq!(reply, common::MESSAGE, "{}: the echo differs", model.name());
        drop(server);
    }
    group.finish();
}

criterion_group!(benches, connect);
criterion_main!(benches);
