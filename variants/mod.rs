//! The models, one file each, in teaching order.
//!
//! Adding a model: write `variants/<stem>.rs` with a `//!` story and a unit struct implementing
//! [`Model`](crate::server::model::Model), declare the module here and add it to
//! [`all`](crate::variants::all). The CLI, the conformance suite, `compare` and the benches all
//! read this list.

use crate::server::model::Model;

pub mod busy_poll;
pub mod epoll_et;
pub mod epoll_exclusive;
pub mod epoll_lt;
pub mod epoll_reuseport;
pub mod fork_per_conn;
pub mod io_uring;
pub mod iterative;
pub mod poll;
pub mod prefork;
pub mod prefork_fdpass;
pub mod select;
pub mod thread_per_conn;
pub mod thread_pool;
pub mod tokio;

/// Every model, in teaching order: the blocking family first, then the event-driven family.
pub fn all() -> &'static [&'static dyn Model] {
    &[
        &iterative::Iterative,
        &fork_per_conn::ForkPerConn,
        &thread_per_conn::ThreadPerConn,
        &prefork::Prefork,
        &prefork_fdpass::PreforkFdpass,
        &thread_pool::ThreadPool,
        &busy_poll::BusyPoll,
        &select::Select,
        &poll::Poll,
        &epoll_lt::EpollLt,
        &epoll_et::EpollEt,
        &epoll_reuseport::EpollReuseport,
        &epoll_exclusive::EpollExclusive,
        &io_uring::IoUringModel,
        &tokio::Tokio,
    ]
}
