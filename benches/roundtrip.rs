//! `roundtrip/MODEL/64`: one connection, opened before timing starts; timed is writing one
//! 64-byte echo message and reading all 64 bytes back, one message at a time (two syscalls in
//! the client, the server's wake-up, read and write, and loopback TCP both ways). Per model, in
//! registry order; the server is a separate process, started (the first time criterion runs the
//! model's benchmark, so a filtered run starts only what it measures) and stopped outside the
//! timing.

mod common;

use std::io::{Read, Write};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn roundtrip(c: &mut Criterion) {
    let mut group = c.benchmark_group("roundtrip");
    common::configure(&mut group);
    for model in server_models::variants::all() {
        // The server and its connection, made when criterion first runs this benchmark.
        let mut bench = common::Lazy::new("roundtrip", model.name());
        let mut reply = [0u8; common::MESSAGE.len()];
        let id = BenchmarkId::new(model.name(), common::MESSAGE.len());
        group.bench_function(id, |b| {
            let Some((_server, stream)) = bench.get(|server| {
                let stream = common::connect(&server);
                (server, stream)
            }) else {
                return common::skipped(b);
            };
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    stream
                        .write_all(&common::MESSAGE)
                        .expect("write the message");
                    stream.read_exact(&mut reply).expect("read the echo");
                }
                start.elapsed()
            })
        });
        // Only a benchmark that ran has a reply to check; a filtered one started nothing.
        if bench.served() {
            assert_eq!(reply, common::MESSAGE, "{}: the echo differs", model.name());
        }
        drop(bench); // stops and reaps its server before the next model starts
    }
    group.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
