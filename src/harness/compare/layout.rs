//! CPU layouts: which of the server's CPUs each point runs on, and how many workers a model
//! gets there.
//!
//! `--server-cpus` and `--load-cpus` say where the server and the load generator run
//! ([`Placement::layout`](crate::harness::measure::placement::Placement::layout) checks them);
//! `--server-cores 1,2,4,8` sweeps the server over the lowest 1, 2, 4 and 8 of its CPUs, for
//! the models that can use more than one ([`CpuUse::scales`]). At each count:
//!
//! - the models with a worker per CPU (`epoll-reuseport`, `epoll-exclusive`, `tokio`) get
//!   `--workers N` for N CPUs: N event loops, or N runtime threads;
//! - the pools (`prefork`, `prefork-fdpass`, `thread-pool`) keep their size (100, or
//!   `--workers`): a pool's size is how many clients it serves at once, not how many CPUs it
//!   uses, so what the sweep changes for them is how many CPUs their workers share;
//! - a thread or a process per connection spreads over whatever CPUs it is given;
//! - a single-threaded model runs once, on the smallest count: more CPUs change nothing for it.
//!
//! Idle points (memory per connection) run once per model, on the smallest count. The load
//! generator runs one thread per load CPU (`load --threads`).

use std::io;

use crate::harness::family::{self, CpuUse};
use crate::harness::measure::placement::Cpus;
use crate::harness::report::row::Mode;
use crate::server::model::Model;

/// The server CPU counts `model` runs at for a point of `mode`: one entry, `None` (all the
/// server's CPUs), without a sweep.
pub fn cpu_counts(model: &dyn Model, mode: Mode, cores: &[usize]) -> Vec<Option<usize>> {
    let Some(&smallest) = cores.iter().min() else {
        return vec![None];
    };
    if mode == Mode::Idle || !family::cpu_use(model.name()).scales() {
        return vec![Some(smallest)];
    }
    let mut counts: Vec<usize> = cores.to_vec();
    counts.sort_unstable();
    counts.dedup();
    counts.into_iter().map(Some).collect()
}

/// Refuses a sweep that asks for more CPUs than the server has, for none, or with nothing
/// pinned.
pub fn check_cores(cores: &[usize], server: Option<Cpus>) -> io::Result<()> {
    if cores.is_empty() {
        return Ok(());
    }
    let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    let Some(server) = server else {
        return bad(
            "--server-cores needs the server pinned: fewer than two CPUs here, or --no-pin".into(),
        );
    };
    if let Some(&zero) = cores.iter().find(|&&n| n == 0) {
        return bad(format!(
            "--server-cores {zero}: a server needs at least one CPU"
        ));
    }
    if let Some(&n) = cores.iter().find(|&&n| n > server.len()) {
        return bad(format!(
            "--server-cores {n}: the server has {} CPU{} ({server}); give more with --server-cpus",
            server.len(),
            if server.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

/// The CPUs a point's server is pinned to: the lowest `count` of the server's, or all of them.
pub fn server_cpus(server: Option<Cpus>, count: Option<usize>) -> Option<Cpus> {
    server.map(|s| count.map_or(s, |n| s.first(n)))
}

/// The `--workers` a server is started with: `--workers` if given; the pool size for a pool;
/// one per CPU for a model with a worker per CPU, when pinned; otherwise the model's default.
pub fn workers(
    model: &dyn Model,
    given: Option<usize>,
    pool: usize,
    cpus: Option<Cpus>,
) -> Option<usize> {
    given.or(match (family::cpu_use(model.name()), cpus) {
        (CpuUse::Pool, _) => Some(pool),
        (CpuUse::PerCpu, Some(cpus)) => Some(cpus.len()),
        _ => None,
    })
}

/// The counts of the `served per worker: 812 790 805` line a multi-worker model prints at
/// shutdown (the last such line of `log`).
pub fn served_per_worker(log: &str) -> Option<Vec<u64>> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("served per worker:"))?;
    let counts = line.split("served per worker:").nth(1)?;
    counts
        .split_whitespace()
        .map(|n| n.parse().ok())
        .collect::<Option<Vec<u64>>>()
        .filter(|c| !c.is_empty())
}

/// Counts per worker summed over runs, worker by worker.
pub fn add_served(total: Option<Vec<u64>>, run: Option<&Vec<u64>>) -> Option<Vec<u64>> {
    match (total, run) {
        (None, run) => run.cloned(),
        (Some(t), None) => Some(t),
        (Some(mut t), Some(r)) => {
            if t.len() < r.len() {
                t.resize(r.len(), 0);
            }
            for (a, b) in t.iter_mut().zip(r) {
                *a += b;
            }
            Some(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::model::find;

    fn model(name: &str) -> &'static dyn Model {
        find(name).expect("a registered model")
    }

    /// The scaling models run at every count, the single-threaded ones and idle points once,
    /// on the smallest; without a sweep, once on every server CPU.
    #[test]
    fn counts_per_model() {
        let cores = [4, 1, 2];
        let reuseport = cpu_counts(model("epoll-reuseport"), Mode::Closed, &cores);
        assert_eq!(reuseport, [Some(1), Some(2), Some(4)]);
        assert_eq!(
            cpu_counts(model("thread-pool"), Mode::Churn, &cores).len(),
            3
        );
        assert_eq!(
            cpu_counts(model("epoll-lt"), Mode::Closed, &cores),
            [Some(1)]
        );
        assert_eq!(cpu_counts(model("tokio"), Mode::Idle, &cores), [Some(1)]);
        assert_eq!(cpu_counts(model("tokio"), Mode::Closed, &[]), [None]);
    }

    /// A worker per CPU for the models that have one; the pools keep their size.
    #[test]
    fn workers_per_model() {
        let four = Some(Cpus::of(0..4));
        assert_eq!(workers(model("epoll-exclusive"), None, 100, four), Some(4));
        assert_eq!(workers(model("tokio"), None, 100, four), Some(4));
        assert_eq!(workers(model("thread-pool"), None, 100, four), Some(100));
        assert_eq!(workers(model("epoll-lt"), None, 100, four), None);
        assert_eq!(workers(model("tokio"), None, 100, None), None);
        assert_eq!(workers(model("tokio"), Some(3), 100, four), Some(3));
    }

    /// A sweep past the server's CPUs, of zero, or unpinned is refused, saying why.
    #[test]
    fn sweeps_refused() {
        let two = Some(Cpus::of(0..2));
        assert!(check_cores(&[1, 2], two).is_ok());
        assert!(check_cores(&[], None).is_ok());
        let e = check_cores(&[1, 4], two).expect_err("too many");
        assert!(e.to_string().contains("the server has 2 CPUs (0-1)"), "{e}");
        assert!(check_cores(&[0], two).is_err());
        assert!(check_cores(&[1], None).is_err());
    }

    /// The meter's line is read back, and counts add up worker by worker over the runs.
    #[test]
    fn the_meter_line() {
        let log = "server-models[7]: tokio listening on 127.0.0.1:5 (protocol echo, workers 3)\n\
                   server-models[7]: served per worker: 5 0 12\n\
                   server-models[7]: tokio shut down cleanly";
        let counts = served_per_worker(log);
        assert_eq!(counts, Some(vec![5, 0, 12]));
        assert_eq!(served_per_worker("nothing here"), None);
        let twice = add_served(add_served(None, counts.as_ref()), counts.as_ref());
        assert_eq!(twice, Some(vec![10, 0, 24]));
    }
}
