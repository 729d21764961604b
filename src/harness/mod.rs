//! The harness: everything that drives and measures a server from outside, never linked into
//! the way a model serves.
//!
//! - [`check`]: the conformance and fault cases, runnable against any server (`check`).
//! - [`family`]: each model's family (blocking, readiness, completion) and how it uses CPUs.
//! - [`load`]: the load generator: closed and open loop, churn, latency histograms.
//! - [`spawn`]: a server started as a child process, for tests, benches and `compare`.
//! - [`measure`]: a server's process tree measured from /proc: CPU, PSS, threads, switches.
//! - [`compare`]: every model through the same sweep, measured the same way (the main job).
//! - [`report`]: the tables, results.json/csv, index.md and the SVG plots of a comparison.

pub mod check;
pub mod compare;
pub mod family;
pub mod load;
pub mod measure;
pub mod report;
pub mod spawn;
