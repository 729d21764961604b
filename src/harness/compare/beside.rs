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

use crate::harness::report::row::{Ratios, Row, Status};

/// Gives every measured busy-beside-idle row its ratios to the row of the same model, protocol,
/// size, busy connections, pipelining and pacing with no idle connection beside (K = 0). The
/// K = 0 row itself gets 1.0 throughout; rows without a measured K = 0 row get none.
pub fn attach_ratios(rows: &mut [Row]) {
    let baselines: Vec<Row> = rows
        .iter()
        .filter(|r| r.idle_beside == Some(0) && r.status == Status::Ok)
        .cloned()
        .collect();
    for row in rows
        .iter_mut()
        .filter(|r| r.idle_beside.is_some() && r.status == Status::Ok)
    {
        let Some(base) = baselines.iter().find(|b| same_series(b, row)) else {
            continue;
        };
        let ratio = |now: Option<f64>, then: Option<f64>| match (now, then) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let p = |r: &Row, f: fn(&crate::harness::load::Latency) -> f64| r.latency_us.map(|l| f(&l));
        row.vs_no_idle = Some(Ratios {
            requests_per_sec: ratio(row.requests_per_sec, base.requests_per_sec),
            p50: ratio(p(row, |l| l.p50), p(base, |l| l.p50)),
            p99: ratio(p(row, |l| l.p99), p(base, |l| l.p99)),
            p999: ratio(p(row, |l| l.p999), p(base, |l| l.p999)),
            cpu_us_per_request: ratio(row.cpu_us_per_request, base.cpu_us_per_request),
        });
    }
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
        assert_eq!(cpu, [Some(1.0), Some(2.0), None, None, None, None]);
        let poll = rows[1].vs_no_idle.expect("ratios");
        assert_eq!(poll.p99, Some(3.0));
        assert_eq!(poll.p999, Some(3.0));
        assert_eq!(poll.requests_per_sec, Some(0.5));
    }
}
