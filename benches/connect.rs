//! `connect/MODEL/64`: the cost of a connection's whole life, per model. Timed, per iteration:
//! `connect` (the handshake, and the server's accept and whatever it starts for the connection:
//! nothing, a thread, a process), one 64-byte echo round trip, and the close — with SO_LINGER 0,
//! so an RST rather than a FIN, leaving no TIME_WAIT to exhaust the client's ports over
//! thousands of iterations. The server process is started (when criterion first runs the
//! model's benchmark: a filtered run starts only what it measures) and stopped outside the
//! timing.

mod common;

use std::io::{Read, Write};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn connect(c: &mut Criterion) {
    let mut group = c.benchmark_group("connect");
    common::configure(&mut group);
    for model in server_models::variants::all() {
        // The server, started when criterion first runs this benchmark.
        let mut bench = common::Lazy::new("connect", model.name());
        let mut reply = [0u8; common::MESSAGE.len()];
        let id = BenchmarkId::new(model.name(), common::MESSAGE.len());
        group.bench_function(id, |b| {
            let Some(server) = bench.get(|server| server) else {
                return common::skipped(b);
            };
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut stream = common::connect(server);
                    stream
                        .write_all(&common::MESSAGE)
                        .expect("write the message");
                    stream.read_exact(&mut reply).expect("read the echo");
                    common::abort(stream);
                }
                start.elapsed()
            })
        });
        // Only a benchmark that ran has a reply to check; a filtered one started nothing.
        if bench.served() {
            assert_eq!(reply, common::MESSAGE, "{}: the echo differs", model.name());
        }
        drop(bench);
    }
    group.finish();
}

criterion_group!(benches, connect);
criterion_main!(benches);
