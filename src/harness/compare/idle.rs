//! Memory per idle connection: PSS of the server's tree with N connections held open after one
//! request each, less its PSS with none, divided by N.
//!
//! The harness holds the connections itself (the load generator always sends). Each makes one
//! round trip before it is left idle, so the server has accepted it and set up whatever a
//! connection costs in this model — a thread and its stack, a process, buffers — and the figure
//! is what a keep-alive client costs while it thinks.
//!
//! Beside PSS, what the kernel holds for the same connections ([`kernel_mem`]): the slab caches,
//! kernel stacks and page tables read before and after, with the harness's own client sockets
//! taken off.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::point::{NotMeasured, start_server};
use super::{Point, Setup};
use crate::harness::load::{Reply, ReplyCheck, request_bytes};
use crate::harness::measure::TreeWatch;
use crate::harness::measure::kernel_mem;
use crate::harness::report::row::{Row, Status, Tasks};
use crate::server::model::Model;
use crate::server::protocol::Protocol;

/// How long the server is left to settle (threads parked, children forked) before a reading.
const SETTLE: Duration = Duration::from_millis(200);

/// Connections opened together before their replies are awaited.
const BATCH: usize = 64;

/// How long one connect or reply may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs of an idle point at most, while the kernel's reading is disturbed (see
/// [`kernel_mem::PerConnection::disturbed`]): other processes on the machine allocate from the
/// same caches, and a run in a quieter moment reads true.
const KERNEL_TRIES: usize = 3;

/// Measures memory per idle connection for one model at `point.connections`: once, or again
/// (up to `KERNEL_TRIES` runs) while the kernel's reading is disturbed, keeping the least
/// disturbed run.
pub fn measure(setup: &Setup, model: &dyn Model, point: &Point) -> Row {
    let mut best: Option<(f64, Row)> = None;
    for attempt in 1..=KERNEL_TRIES {
        let mut row = point.row(model);
        row.server_cpus =
            super::layout::server_cpus(setup.placement.server, point.cpus).map(|c| c.list());
        match measure_once(setup, model, point, &mut row) {
            Ok(()) => {}
            Err(NotMeasured::Unreachable(why)) => return row.with_status(Status::Unreachable, why),
            Err(NotMeasured::Failed(why)) => return row.with_status(Status::Failed, why),
        }
        let off = kernel_deviation(&row);
        if attempt > 1 {
            row.add_note(format!("kernel memory: run {attempt} of {KERNEL_TRIES}"));
        }
        if best.as_ref().is_none_or(|(b, _)| off < *b) {
            best = Some((off, row));
        }
        if off <= kernel_mem::DISTURBED || (setup.interrupted)() {
            break;
        }
    }
    best.map_or_else(|| point.row(model), |(_, row)| row)
}

/// How far the server's TCP objects per connection are from one (0 when not read: a run
/// without the kernel's figures is not retried for them).
fn kernel_deviation(row: &Row) -> f64 {
    row.kernel_caches
        .as_ref()
        .and_then(|c| c.get("TCP")?.objects_per_connection)
        .map_or(0.0, |tcp| (tcp - 1.0).abs())
}

fn measure_once(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    row: &mut Row,
) -> Result<(), NotMeasured> {
    let (mut server, _) = start_server(setup, model, point, &mut row.workers)?;
    let addr = super::point::connect_to(server.addr());
    let mut watch = TreeWatch::new(server.pid() as i32);
    // One connection first and closed, so that code and allocator arenas touched by serving any
    // connection at all are in the base, not charged to the idle connections.
    drop(connect_and_ask(addr, point.protocol, point.size)?);
    thread::sleep(SETTLE);
    let base = watch.sample()?;
    let kernel_base = kernel_mem::snapshot_of(watch.root());

    let held = hold(addr, point.protocol, point.size, point.connections, setup)?;
    thread::sleep(SETTLE);
    // The kernel first: reading a large tree's /proc files leaves dentries and inodes of their
    // own in the caches.
    let kernel_loaded = kernel_mem::snapshot_of(watch.root());
    let loaded = watch.sample()?;
    if server.has_exited() {
        let status = server.stop()?;
        return Err(NotMeasured::Failed(format!("the server exited ({status})")));
    }
    drop(held);

    let n = point.connections.max(1) as f64;
    row.runs = 1;
    row.pss_base_bytes = Some(base.memory.pss);
    row.pss_peak_bytes = Some(loaded.memory.pss);
    row.rss_peak_bytes = Some(loaded.memory.rss);
    row.bytes_per_connection = Some((loaded.memory.pss as f64 - base.memory.pss as f64) / n);
    row.peak_tasks = Some(Tasks {
        threads: loaded.threads,
        processes: loaded.processes,
    });
    match (kernel_base, kernel_loaded) {
        (Ok(before), Ok(after)) => {
            let kernel = kernel_mem::per_connection(&before, &after, point.connections);
            if let Some(why) = kernel.disturbed() {
                row.add_note(why);
            }
            row.kernel_bytes_per_connection = Some(kernel.total);
            row.kernel_caches = Some(kernel.caches);
        }
        (Err(e), _) | (_, Err(e)) => row.add_note(format!("kernel memory not read: {e}")),
    }
    Ok(())
}

/// Opens `n` connections to `addr`, each after one round trip, and returns them held open and
/// idle. Connections are opened a batch at a time: every connection of the batch sends before
/// any reply is awaited, so a model whose turn costs O(watched) (select, poll) pays one walk per
/// batch rather than one per connection — this sets the connections up, it does not measure
/// how fast they are accepted. Bounded: 10 s plus 2 ms per connection, and an interrupt.
pub fn hold(
    addr: SocketAddr,
    protocol: Protocol,
    size: usize,
    n: usize,
    setup: &Setup,
) -> Result<Vec<TcpStream>, NotMeasured> {
    let deadline = Instant::now() + Duration::from_secs(10) + Duration::from_millis(2 * n as u64);
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        if Instant::now() > deadline || (setup.interrupted)() {
            return Err(NotMeasured::Failed(format!(
                "only {} of {n} idle connections were served in time",
                held.len(),
            )));
        }
        let batch = BATCH.min(n - held.len());
        let asked: io::Result<Vec<(TcpStream, Vec<u8>)>> = (0..batch)
            .map(|_| connect_and_send(addr, protocol, size))
            .collect();
        let answered = asked.and_then(|asked| {
            asked
                .into_iter()
                .map(|(stream, request)| await_reply(stream, protocol, &request))
                .collect::<io::Result<Vec<TcpStream>>>()
        });
        match answered {
            Ok(streams) => held.extend(streams),
            Err(e) => {
                return Err(NotMeasured::Failed(format!(
                    "idle connections {}..{} of {n}: {e}",
                    held.len() + 1,
                    held.len() + batch,
                )));
            }
        }
    }
    Ok(held)
}

/// Connects and makes one round trip: an echo of `size` bytes, or `GET /` and its full answer.
fn connect_and_ask(addr: SocketAddr, protocol: Protocol, size: usize) -> io::Result<TcpStream> {
    let (stream, request) = connect_and_send(addr, protocol, size)?;
    await_reply(stream, protocol, &request)
}

/// Connects and sends one request (an echo of `size` bytes, or `GET /`); returns what was sent.
fn connect_and_send(
    addr: SocketAddr,
    protocol: Protocol,
    size: usize,
) -> io::Result<(TcpStream, Vec<u8>)> {
    // A socket whose kernel objects are known, so that they can be taken off the kernel's growth.
    let mut stream = kernel_mem::client_socket(addr, IO_TIMEOUT)?;
    let request = request_bytes(protocol, addr, size.max(1));
    stream.write_all(&request)?;
    Ok((stream, request))
}

/// Reads the whole reply to `request` and checks it.
fn await_reply(mut stream: TcpStream, protocol: Protocol, request: &[u8]) -> io::Result<TcpStream> {
    let mut reply = Reply::default();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed before answering",
            ));
        }
        let verdict = match protocol {
            Protocol::Echo => reply.feed_echo(&chunk[..n], request),
            Protocol::Http => reply.feed_http(&chunk[..n]),
        };
        match verdict {
            ReplyCheck::Incomplete => {}
            ReplyCheck::Complete { .. } => return Ok(stream),
            ReplyCheck::Mismatch => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a wrong reply"));
            }
        }
    }
}
