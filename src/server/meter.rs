//! Stevens' per-child meter (UNP ch. 30.6): how many connections each worker served, so that
//! imbalance between workers and the thundering herd (惊群) show up as numbers.
//!
//! The counters live in one anonymous `MAP_SHARED` mapping, made before any worker starts.
//! Threads share it as they share all memory; forked children inherit the mapping itself — not a
//! copy-on-write copy of it — so what a child counts, the parent reads. The same type serves
//! both, and the model prints one line at shutdown:
//!
//! ```text
//! server-models[4242]: served per worker: 812 790 805 799
//! ```

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// One counter per worker, shared by threads and by forked processes alike.
#[derive(Debug, Clone)]
pub struct WorkerMeter {
    counts: Arc<Counts>,
}

/// The shared mapping of counters.
#[derive(Debug)]
struct Counts {
    first: NonNull<AtomicU64>,
    workers: usize,
}

// SAFETY: the mapping holds only atomics, and it lives until the last handle is dropped.
unsafe impl Send for Counts {}
// SAFETY: as above; every access goes through an atomic.
unsafe impl Sync for Counts {}

impl Counts {
    fn all(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `workers` zero-initialised atomics and outlives `&self`.
        unsafe { std::slice::from_raw_parts(self.first.as_ptr(), self.workers) }
    }
}

impl Drop for Counts {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `WorkerMeter::new` with this length and nothing
        // borrows it now.
        unsafe {
            let _ = munmap(self.first.cast(), self.workers * size_of::<AtomicU64>());
        }
    }
}

impl WorkerMeter {
    /// Maps `workers` counters, all zero (at least one).
    pub fn new(workers: usize) -> io::Result<WorkerMeter> {
        let workers = workers.max(1);
        let len = NonZeroUsize::new(workers * size_of::<AtomicU64>())
            .ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh anonymous mapping aliases nothing; the kernel zero-fills it, and all
        // zero bytes are a valid AtomicU64.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(WorkerMeter {
            counts: Arc::new(Counts {
                first: ptr.cast(),
                workers,
            }),
        })
    }

    /// Counts one connection served by `worker` (indices past the last are ignored).
    pub fn served(&self, worker: usize) {
        if let Some(count) = self.counts.all().get(worker) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counter of one worker, to hand to the code that serves as that worker.
    pub fn counter(&self, worker: usize) -> WorkerCounter {
        WorkerCounter {
            meter: Some(self.clone()),
            worker,
        }
    }

    /// The count of every worker, in worker order.
    pub fn counts(&self) -> Vec<u64> {
        self.counts
            .all()
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Prints the one line a multi-worker model prints at shutdown; nothing when there is a
    /// single worker, whose count is simply every connection.
    pub fn report(&self) {
        if self.counts.workers < 2 {
            return;
        }
        let counts: Vec<String> = self.counts().iter().map(u64::to_string).collect();
        crate::event!("served per worker: {}", counts.join(" "));
    }
}

/// One worker's counter in a [`WorkerMeter`], or no counter at all (a server with one worker).
#[derive(Debug, Clone, Default)]
pub struct WorkerCounter {
    meter: Option<WorkerMeter>,
    worker: usize,
}

impl WorkerCounter {
    /// Counts one connection served by this worker.
    pub fn served(&self) {
        if let Some(meter) = &self.meter {
            meter.served(self.worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads counting at once lose no increment, and each count lands on its own worker.
    #[test]
    fn counts_from_many_threads_add_up() {
        let meter = WorkerMeter::new(3).expect("mmap");
        std::thread::scope(|s| {
            for w in 0..3 {
                let meter = &meter;
                s.spawn(move || (0..1000 * (w + 1)).for_each(|_| meter.served(w)));
            }
        });
        meter.served(7);
        meter.counter(2).served();
        WorkerCounter::default().served();
        assert_eq!(meter.counts(), vec![1000, 2000, 3001]);
    }

    /// A forked child's counts are seen by the parent: the mapping is shared, not copied.
    #[test]
    fn a_forked_child_counts_into_the_parent() {
        let meter = WorkerMeter::new(2).expect("mmap");
        // SAFETY: the child only touches an atomic and calls _exit, both async-signal-safe.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                meter.served(1);
                meter.served(1);
                // SAFETY: ends the child without running the parent's test harness teardown.
                unsafe { nix::libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).expect("waitpid");
            }
        }
        assert_eq!(meter.counts(), vec![0, 2]);
    }
}
