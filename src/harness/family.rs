//! What the harness knows of each model beyond the trait: the family it belongs to (so that a
//! plot of fifteen lines can be split into panels whose lines can be told apart) and how it
//! uses CPUs (so that a CPU layout gives each model the workers that fit it).
//!
//! The table lives in the harness, not on the `Model` trait: it describes how the harness
//! reads and drives a model, and a model added to the registry without a row here shows up in
//! the `other` family until it gets one (a test checks that every registered model has one).

/// How a model waits for the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// A thread or a process sleeps in `accept`, `read` or `write` for each client served.
    Blocking,
    /// Loops that ask the kernel which sockets are ready (busy polling, select, poll, epoll,
    /// and tokio, whose reactor is epoll).
    Readiness,
    /// The kernel does the I/O and reports completions (io_uring).
    Completion,
    /// A name the table does not know (a server that is not one of the models).
    Other,
}

impl Family {
    /// The families in the order the report shows them.
    pub const ALL: [Family; 4] = [
        Family::Blocking,
        Family::Readiness,
        Family::Completion,
        Family::Other,
    ];

    /// The family's name in plots and tables.
    pub fn name(self) -> &'static str {
        match self {
            Family::Blocking => "blocking",
            Family::Readiness => "readiness",
            Family::Completion => "completion",
            Family::Other => "other",
        }
    }
}

/// How a model spreads its work over the CPUs it may run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuUse {
    /// One thread serves every client: more CPUs change nothing.
    Single,
    /// One worker (an event loop, a runtime thread) per CPU, set by `--workers`.
    PerCpu,
    /// A pool of workers, each serving one client at a time: its size is how many clients it
    /// serves at once, not how many CPUs it uses, so a layout leaves it alone.
    Pool,
    /// A thread or a process per connection, on whichever CPU the scheduler picks.
    PerConnection,
}

impl CpuUse {
    /// Whether the model can use more than one CPU, and so takes part in a sweep of the
    /// server's CPU count.
    pub fn scales(self) -> bool {
        self != CpuUse::Single
    }
}

/// Every registered model: its family and how it uses CPUs.
const TABLE: [(&str, Family, CpuUse); 15] = [
    ("iterative", Family::Blocking, CpuUse::Single),
    ("fork-per-conn", Family::Blocking, CpuUse::PerConnection),
    ("thread-per-conn", Family::Blocking, CpuUse::PerConnection),
    ("prefork", Family::Blocking, CpuUse::Pool),
    ("prefork-fdpass", Family::Blocking, CpuUse::Pool),
    ("thread-pool", Family::Blocking, CpuUse::Pool),
    ("busy-poll", Family::Readiness, CpuUse::Single),
    ("select", Family::Readiness, CpuUse::Single),
    ("poll", Family::Readiness, CpuUse::Single),
    ("epoll-lt", Family::Readiness, CpuUse::Single),
    ("epoll-et", Family::Readiness, CpuUse::Single),
    ("epoll-reuseport", Family::Readiness, CpuUse::PerCpu),
    ("epoll-exclusive", Family::Readiness, CpuUse::PerCpu),
    ("io-uring", Family::Completion, CpuUse::Single),
    ("tokio", Family::Readiness, CpuUse::PerCpu),
];

/// The family of the model called `model`; [`Family::Other`] for a name not in the table.
pub fn family(model: &str) -> Family {
    TABLE
        .iter()
        .find(|t| t.0 == model)
        .map_or(Family::Other, |t| t.1)
}

/// How the model called `model` uses CPUs; a name not in the table is taken to use one.
pub fn cpu_use(model: &str) -> CpuUse {
    TABLE
        .iter()
        .find(|t| t.0 == model)
        .map_or(CpuUse::Single, |t| t.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::model::Concurrency;

    /// Every registered model has a row, and no row names a model that is not registered.
    #[test]
    fn every_registered_model_has_a_family() {
        for m in crate::variants::all() {
            assert_ne!(
                family(m.name()),
                Family::Other,
                "{} has no family",
                m.name()
            );
        }
        for (name, _, _) in TABLE {
            assert!(
                crate::server::model::find(name).is_some(),
                "{name} is not a model"
            );
        }
        assert_eq!(family("nginx"), Family::Other);
    }

    /// The table agrees with what the models say of themselves: the pools are exactly the
    /// models whose concurrency is their worker count, and the one-client server uses one CPU.
    #[test]
    fn cpu_use_agrees_with_concurrency() {
        for m in crate::variants::all() {
            let pool = cpu_use(m.name()) == CpuUse::Pool;
            assert_eq!(
                pool,
                m.concurrency() == Concurrency::Workers,
                "{}: pool {pool}, concurrency {:?}",
                m.name(),
                m.concurrency()
            );
            if m.concurrency() == Concurrency::One {
                assert!(!cpu_use(m.name()).scales(), "{}", m.name());
            }
        }
    }
}
