//! `session/PROTOCOL/PARAM`: the protocol's own cost per request, with no socket: timed is one
//! `Session::feed` of a complete request into a long-lived session and clearing the reply
//! buffer (which keeps its capacity, as a connection's would). Echo at 64 B and 4 KiB; HTTP
//! with wrk's request, `GET /` with a Host header.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use server_models::server::protocol::{Protocol, Session};

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let get = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_vec();
    let cases = [
        (Protocol::Echo, "64".to_string(), vec![b'x'; 64]),
        (Protocol::Echo, "4096".to_string(), vec![b'x'; 4096]),
        (Protocol::Http, "get".to_string(), get),
    ];
    for (protocol, param, request) in cases {
        let mut session = protocol.session();
        let mut out = Vec::with_capacity(8192);
        group.bench_function(BenchmarkId::new(protocol.name(), param), |b| {
            b.iter(|| {
                let progress = session.feed(black_box(&request), &mut out);
                assert_eq!(
                    progress.consumed,
                    request.len(),
                    "a whole request is consumed"
                );
                black_box(&out);
                out.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, session);
criterion_main!(benches);
