//! `roundtrip/MODEL/64`: one connection, opened before timing starts; timed is writing one
//! 64-byte echo message and reading all 64 bytes back, one message at a time (two syscalls in
//! the client, the server's wake-up, read and write, and loopback TCP both ways). Per model, in
//! registry order; the server is a separate process, started and stopped outside the timing.

mod common;

use std::io::{Read, Write};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use server_models::server::protocol::Protocol;

fn roundtrip(c: &mut Criterion) {
    let mut group = c.benchmark_group("roundtrip");
    common::configure(&mut group);
    for model in server_models::variants::all() {
        let Some(server) = common::start("roundtrip", model.name(), Protocol::Echo) else {
            continue;
        };
        let mut stream = common::connect(&server);
        let mut reply = [0u8; common::MESSAGE.len()];
        let id = BenchmarkId::new(model.name(), common::MESSAGE.len());
        group.bench_function(id, |b| {
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
        assert_eq!(reply, common::MESSAGE, "{}: the echo differs", model.name());
        drop(stream);
        drop(server); // stops and reaps it before the next model starts
    }
    group.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
