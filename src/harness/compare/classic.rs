//! The `classic` preset: Stevens' experiment of UNP ch. 30 (Figure 30.1), redone here.
//!
//! Stevens ran each server design under the same client: a fixed number of client processes,
//! each connecting, asking for N bytes, reading them and closing, again and again. He then
//! subtracted the iterative server's CPU time from every design's: the iterative server does
//! nothing but the TCP work and the reply, so the difference is what the design itself spends on
//! process control — forking, waking a child, handing over a descriptor, creating a thread.
//!
//! Here the client is the load generator in churn mode (connect, one request, close, the close
//! with SO_LINGER 0 so that no TIME_WAIT piles up on the client), the request is an echo of
//! [`SIZE`] bytes (the book's client asked for 4000), the pools hold [`POOL_WORKERS`] workers as
//! the book's did, and prefork runs once per accept lock. The figure per row is the server's
//! tree CPU per connection over the measured window, and the column that makes the table:
//! that figure less the iterative server's.

use crate::harness::report::row::{Mode, Row, Status};
use crate::server::accept_lock::AcceptLock;

/// The preset's name on the command line.
pub const NAME: &str = "classic";

/// The designs of UNP ch. 30 in the book's order, then today's event-driven answers. Left out:
/// `busy-poll` (its spinning, not its process control, would fill the column) and the
/// multi-loop epoll models, which on one pinned CPU run the same single loop as `epoll-lt`.
pub const MODELS: [&str; 12] = [
    "iterative",
    "fork-per-conn",
    "prefork",
    "prefork-fdpass",
    "thread-per-conn",
    "thread-pool",
    "select",
    "poll",
    "epoll-lt",
    "epoll-et",
    "io-uring",
    "tokio",
];

/// Bytes each connection asks for: the echo of a message this long (the book's 4000).
pub const SIZE: usize = 4000;

/// Connection slots of the client: the book's five client processes.
pub const SLOTS: usize = 5;

/// Children or threads of the pool models: the book's 15.
pub const POOL_WORKERS: usize = 15;

/// Prefork runs once per lock: none, then the book's fcntl, then flock and a shared mutex.
pub const ACCEPT_LOCKS: [AcceptLock; 4] = AcceptLock::ALL;

/// The model whose CPU per connection is the baseline.
pub const BASELINE: &str = "iterative";

/// Gives each measured churn row its process-control CPU: its CPU per connection less the
/// iterative server's at the same protocol, slots and size. Rows without such a baseline keep
/// `None`; the iterative row itself gets 0.
pub fn attach_process_control(rows: &mut [Row]) {
    let same_point = |a: &Row, b: &Row| {
        a.protocol == b.protocol && a.connections == b.connections && a.size == b.size
    };
    let baselines: Vec<Row> = rows
        .iter()
        .filter(|r| r.mode == Mode::Churn && r.status == Status::Ok && r.model == BASELINE)
        .cloned()
        .collect();
    for row in rows
        .iter_mut()
        .filter(|r| r.mode == Mode::Churn && r.status == Status::Ok)
    {
        let base = baselines
            .iter()
            .find(|b| same_point(b, row))
            .and_then(|b| b.cpu_us_per_request);
        row.process_control_us_per_connection =
            base.zip(row.cpu_us_per_request).map(|(b, cpu)| cpu - b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn churn(model: &str, slots: usize, cpu: Option<f64>) -> Row {
        let mut r = Row::new(model, "echo", Mode::Churn, slots, SIZE);
        r.cpu_us_per_request = cpu;
        r
    }

    /// Each churn row is set against the iterative row of its own point, the baseline itself
    /// reads 0, and rows with no baseline, not measured, or of another mode get nothing.
    #[test]
    fn process_control_is_the_difference_at_the_same_point() {
        let mut rows = vec![
            churn(BASELINE, 5, Some(40.0)),
            churn("fork-per-conn", 5, Some(140.0)),
            churn("prefork", 5, Some(45.5)),
            churn("prefork", 10, Some(45.5)),
            churn("thread-pool", 5, None).with_status(Status::Failed, "the server exited"),
            Row::new("fork-per-conn", "echo", Mode::Closed, 5, SIZE),
        ];
        rows[5].cpu_us_per_request = Some(20.0);
        attach_process_control(&mut rows);
        let got: Vec<_> = rows
            .iter()
            .map(|r| r.process_control_us_per_connection)
            .collect();
        assert_eq!(got, [Some(0.0), Some(100.0), Some(5.5), None, None, None]);
    }

    /// Every model the preset names is registered.
    #[test]
    fn the_preset_names_registered_models() {
        for name in MODELS {
            assert!(
                crate::server::model::find(name).is_some(),
                "{name} is not a model"
            );
        }
        assert_eq!(MODELS[0], BASELINE);
    }
}
