//! Measuring a server from outside, through /proc: its whole process tree's CPU, memory,
//! threads and context switches, as the design defines them (README, "What the numbers mean").
//!
//! - [`procfs`]: one process's `stat`, `smaps_rollup`, per-task `status` and children.
//! - [`tree`]: the tree as one — summed, with reaped children's CPU — and what it spent
//!   between two instants.
//! - [`sampler`]: a thread that samples the tree through a run, for peaks and for CPU at any
//!   instant.
//! - [`placement`]: pinning the server and the client to CPUs of their own; descriptor limits.
//! - [`probe`]: processes with a known answer, to test all of the above against.
//! - [`syscalls`]: syscalls per request and events per wait, counted by the kernel's
//!   tracepoints through perf counters inherited by the whole tree.
//! - [`kernel_mem`]: what the kernel holds per connection: slab caches, kernel stacks, page
//!   tables, TCP buffer memory.

pub mod kernel_mem;
pub mod placement;
pub mod probe;
pub mod procfs;
pub mod sampler;
pub mod syscalls;
pub mod tree;

pub use sampler::{Sampler, Series};
pub use tree::{Peaks, Sample, TreeUsage, TreeWatch};
