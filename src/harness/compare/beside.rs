//! Busy beside idle: a few busy connections beside K idle ones — the workload that separates
//! the readiness APIs (Banga, Mogul and Druschel's "hot" and "cold" connections, USENIX 1999).
//!
//! For each K the harness opens K connections, each after one round trip (so the server has
//! set up whatever a connection costs it: a thread and its stack, a process, a table entry, an
//! epoll registration), leaves them idle, and then runs the usual measured window with the busy
//! connections in closed loop (or open loop at `--rate`). The points are run by
//! [`point::measure`](super::point::measure), which holds the idle connections through
//! [`idle::hold`](super::idle::hold); this module sets each row against the same model's row
//! with no idle connection at all (K = 0).
//!
//! What the figures show: `select` and `poll` hand the kernel every watched descriptor on every
//! wait, and the kernel calls every socket's poll function and queues the thread on every
//! socket's wait queue, so their cost per request grows with K; an epoll instance keeps the
//! interest list in the kernel and returns only the ready list, so its cost should not. The
//! blocking family holds a thread or a process per idle connection: its cost per request may not
//! move, but its threads, processes and memory do.

use super::Point;
use crate::harness::report::row::{Ratios, Row, Status};
use crate::server::model::Model;

/// Gives every measured row with idle connections beside its busy ones (K > 0) its ratios to
/// the row of the same model, protocol, size, busy connections, pipelining and pacing with
/// none (K = 0, which in the default run is the connection sweep's own row); that baseline
/// gets 1.0 throughout. Rows without a measured baseline get none.
pub fn attach_ratios(rows: &mut [Row]) {
    let ok = |r: &Row| r.status == Status::Ok;
    let pairs: Vec<(usize, usize)> = (0..rows.len())
        .filter(|&i| {
            ok(&rows[i])
                && rows[i].idle_beside.is_some_and(|k| k > 0)
                && rows[i].offered_rate.is_none()
        })
        .filter_map(|i| {
            let base = (0..rows.len()).find(|&b| {
                ok(&rows[b]) && rows[b].idle_beside == Some(0) && same_series(&rows[b], &rows[i])
            })?;
            Some((i, base))
        })
        .collect();
    for &(i, b) in &pairs {
        let ratios = ratios(&rows[i], &rows[b]);
        rows[i].vs_no_idle = Some(ratios);
        rows[b].vs_no_idle = Some(self::ratios(&rows[b], &rows[b]));
    }
}

/// Each figure of `row` over the same figure of `base`.
fn ratios(row: &Row, base: &Row) -> Ratios {
    let ratio = |now: Option<f64>, then: Option<f64>| match (now, then) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let p = |r: &Row, f: fn(&crate::harness::load::Latency) -> f64| r.latency_us.map(|l| f(&l));
    Ratios {
        requests_per_sec: ratio(row.requests_per_sec, base.requests_per_sec),
        p50: ratio(p(row, |l| l.p50), p(base, |l| l.p50)),
        p99: ratio(p(row, |l| l.p99), p(base, |l| l.p99)),
        p999: ratio(p(row, |l| l.p999), p(base, |l| l.p999)),
        cpu_us_per_request: ratio(row.cpu_us_per_request, base.cpu_us_per_request),
    }
}

/// Why `model` need not be run at `point` in a sweep that saves its time: at a smaller K of
/// the same series (`rows` so far) its server held a thread or a process per idle connection.
/// `None` when it did not, or when the point holds no idle connections.
pub fn holds_a_task_per_connection(
    rows: &[Row],
    model: &dyn Model,
    point: &Point,
) -> Option<String> {
    if point.idle_beside == 0 {
        return None;
    }
    let this = point.row(model);
    rows.iter()
        .filter(|r| r.status == Status::Ok && same_series(r, &this))
        .filter_map(|r| Some((r.idle_beside?, r.peak_tasks?)))
        .filter(|&(k, tasks)| k > 0 && k < point.idle_beside && tasks.threads >= k as u64)
        .map(|(k, tasks)| {
            format!(
                "at {k} idle connections the server held {} threads in {} processes, about one per \
                 connection; {} more take most of ten seconds to start and reap \
                 (--idle-beside 0,{} runs it)",
                tasks.threads, tasks.processes, point.idle_beside, point.idle_beside
            )
        })
        .next()
}

/// Whether two busy-beside-idle rows differ only in K: the same model and load.
pub fn same_series(a: &Row, b: &Row) -> bool {
    a.label() == b.label()
        && a.protocol == b.protocol
        && a.size == b.size
        && a.connections == b.connections
        && a.pipeline == b.pipeline
        && a.mode == b.mode
        && a.rate == b.rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::load::Latency;
    use crate::harness::report::row::Mode;

    fn beside(model: &str, busy: usize, k: usize, cpu: f64, p99: f64) -> Row {
        let mut r = Row::new(model, "echo", Mode::Closed, busy, 64);
        r.idle_beside = Some(k);
        r.cpu_us_per_request = Some(cpu);
        r.requests_per_sec = Some(1e6 / cpu);
        r.latency_us = Some(Latency {
            p50: p99 / 2.0,
            p99,
            p999: p99 * 2.0,
            ..Latency::default()
        });
        r
    }

    /// Each row is set against K = 0 of its own model and busy count; the baseline reads 1.0;
    /// a series without a measured baseline, and rows of other sweeps, get nothing.
    #[test]
    fn ratios_against_the_same_model_without_idle_connections() {
        let mut rows = vec![
            beside("poll", 10, 0, 5.0, 100.0),
            beside("poll", 10, 1000, 10.0, 300.0),
            beside("epoll-lt", 10, 1000, 5.0, 100.0),
            beside("poll", 100, 1000, 8.0, 100.0),
            beside("poll", 100, 0, 4.0, 100.0).with_status(Status::Failed, "died"),
            Row::new("poll", "echo", Mode::Closed, 10, 64),
        ];
        rows[5].cpu_us_per_request = Some(5.0);
        attach_ratios(&mut rows);
        let cpu: Vec<Option<f64>> = rows
            .iter()
            .map(|r| r.vs_no_idle.and_then(|v| v.cpu_us_per_request))
            .collect();
        // The plain row (idle_beside null here) is no baseline; rows[0] is.
        assert_eq!(cpu, [Some(1.0), Some(2.0), None, None, None, None]);
        let poll = rows[1].vs_no_idle.expect("ratios");
        assert_eq!(poll.p99, Some(3.0));
        assert_eq!(poll.p999, Some(3.0));
        assert_eq!(poll.requests_per_sec, Some(0.5));
    }

    /// A model that held a task per idle connection at a smaller K is skipped at the larger
    /// ones, with the reason; one that did not is not, nor is K = 0.
    #[test]
    fn a_task_per_connection_stops_the_thrifty_sweep() {
        use crate::harness::report::row::Tasks;
        use crate::server::protocol::Protocol;
        let threads = crate::server::model::find("thread-per-conn").expect("model");
        let epoll = crate::server::model::find("epoll-lt").expect("model");
        let mut blocking = beside("thread-per-conn", 10, 1000, 12.0, 100.0);
        blocking.peak_tasks = Some(Tasks {
            threads: 1011,
            processes: 1,
        });
        let mut event = beside("epoll-lt", 10, 1000, 5.0, 100.0);
        event.peak_tasks = Some(Tasks {
            threads: 1,
            processes: 1,
        });
        let rows = vec![blocking, event];
        let at = |k| Point {
            idle_beside: k,
            ..Point::new(Protocol::Echo, Mode::Closed, 10, 64)
        };
        let why = holds_a_task_per_connection(&rows, threads, &at(5000)).expect("skipped");
        assert!(
            why.contains("1011 threads") && why.contains("0,5000"),
            "{why}"
        );
        assert!(holds_a_task_per_connection(&rows, epoll, &at(5000)).is_none());
        assert!(holds_a_task_per_connection(&rows, threads, &at(0)).is_none());
        assert!(holds_a_task_per_connection(&rows, threads, &at(500)).is_none());
    }
}
