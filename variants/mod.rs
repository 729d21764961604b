//! The models, one file each, in teaching order.
//!
//! Adding a model: write `variants/<stem>.rs` with a `//!` story and a unit struct implementing
//! [`Model`](crate::model::Model), declare the module here and add it to [`all`]. The CLI, the
//! conformance suite, `compare` and the benches all read this list.

use crate::model::Model;

pub mod busy_poll;
pub mod epoll_et;
pub mod epoll_lt;
pub mod fork_per_conn;
pub mod iterative;
pub mod poll;
pub mod prefork;
pub mod select;
pub mod thread_per_conn;
pub mod thread_pool;

/// Every model, in teaching order: the blocking family first, then the event-driven family.
pub fn all() -> &'static [&'static dyn Model] {
    &[
        &iterative::Iterative,
        &fork_per_conn::ForkPerConn,
        &thread_per_conn::ThreadPerConn,
        &prefork::Prefork,
        &thread_pool::ThreadPool,
        &busy_poll::BusyPoll,
        &select::Select,
        &poll::Poll,
        &epoll_lt::EpollLt,
        &epoll_et::EpollEt,
    ]
}
