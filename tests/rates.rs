//! The knee search against a server whose capacity is known: every request holds one shared
//! lock while it sleeps 2 ms, so the server can never answer more than 500 requests a second,
//! however fast the machine. The search, driving the real load generator in open loop, must
//! end at a knee no higher than that; how far below it lands depends on the machine, and is
//! not asserted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use server_models::harness::compare::rates::{KEEP_UP, Search, Verdict};
use server_models::harness::load::{self, LoadOptions};
use server_models::server::protocol::Protocol;

/// Time each request holds the lock.
const SERVICE: Duration = Duration::from_millis(2);

/// An echo server of 64-byte messages that serves one request at a time across all its
/// connections, each taking at least [`SERVICE`].
struct Sleepy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Sleepy {
    fn start() -> Sleepy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let lock = Arc::new(Mutex::new(()));
        let st = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(stream), lock) = (stream, lock.clone()) else {
                    continue;
                };
                std::thread::spawn(move || serve(stream, &lock));
            }
        });
        Sleepy { addr, stop }
    }
}

impl Drop for Sleepy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
    }
}

fn serve(mut stream: TcpStream, lock: &Mutex<()>) {
    let mut msg = [0u8; 64];
    while stream.read_exact(&mut msg).is_ok() {
        {
            let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
            std::thread::sleep(SERVICE);
        }
        if stream.write_all(&msg).is_err() {
            return;
        }
    }
}

/// Doubling from 1000/s, halving after a miss, then bisecting: the knee found is one the
/// server kept up with, and it is no higher than the 500 requests/s the server can give.
#[test]
fn the_knee_is_below_a_known_capacity() {
    let server = Sleepy::start();
    let slo = Duration::from_secs(1);
    let capacity = 1.0 / SERVICE.as_secs_f64();
    let mut search = Search::new(1000.0);
    let mut tried = Vec::new();
    while let Some(rate) = search.next() {
        let opts = LoadOptions {
            rate: Some(rate),
            warmup: Some(Duration::from_millis(100)),
            timeout: Duration::from_secs(10),
            ..LoadOptions::new(server.addr, Protocol::Echo, 10, Duration::from_millis(500))
        };
        let r = load::run(&opts).expect("load runs");
        let kept =
            r.requests_per_sec >= KEEP_UP * rate && r.latency_us.p99 < slo.as_secs_f64() * 1e6;
        tried.push((rate, r.requests_per_sec, r.latency_us.p99, kept));
        search.record(
            rate,
            if kept {
                Verdict::Keeps
            } else {
                Verdict::Misses
            },
        );
        assert!(tried.len() <= 12, "the search ends: {tried:?}");
    }
    // No window can hold more replies than fit in it one service time after another (plus the
    // one in service at its start).
    for &(rate, achieved, _, _) in &tried {
        assert!(
            achieved <= capacity + 2.0 / 0.5,
            "{rate}/s gave {achieved}/s: {tried:?}"
        );
    }
    assert!(
        tried[0].0 == 1000.0 && !tried[0].3,
        "1000/s is twice the capacity: {tried:?}"
    );
    let knee = search.knee().expect("a knee at a fraction of the capacity");
    assert!(knee <= (capacity + 4.0) / KEEP_UP, "knee {knee}: {tried:?}");
    assert!(tried.iter().any(|t| t.0 == knee && t.3));
}
