//! A background thread that samples a process tree through a run, so that peaks (memory,
//! threads) are caught while they last and CPU can be read off at any instant of the run.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::tree::{Sample, TreeWatch};

/// Reading /proc costs the reader CPU in proportion to the tree (a thousand forked children,
/// ten thousand threads): the sampler waits at least this many times as long as a sample took,
/// so that it never uses more than a fifth of a CPU.
const BACKOFF: u32 = 4;

/// Samples one process tree on its own thread until finished.
pub struct Sampler {
    orders: mpsc::Sender<Order>,
    thread: JoinHandle<Series>,
}

enum Order {
    /// Take a sample at this instant as well (the edge of a measured window).
    At(Instant),
    /// Take a last sample and stop.
    Finish,
}

/// Every sample a [`Sampler`] took, in time order.
#[derive(Debug)]
pub struct Series {
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
    /// Why sampling stopped early, if it did (the root exited).
    pub error: Option<io::Error>,
}

impl Sampler {
    /// Takes a first sample of the tree rooted at `root` (failing if the root cannot be read),
    /// then keeps sampling about every `interval` on a new thread.
    pub fn start(root: i32, interval: Duration) -> io::Result<Sampler> {
        let mut watch = TreeWatch::new(root);
        let first = watch.sample()?;
        let (orders, received) = mpsc::channel::<Order>();
        let thread = thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut series = Series {
                    samples: vec![first],
                    error: None,
                };
                let mut next = Instant::now() + interval;
                let mut marks: Vec<Instant> = Vec::new();
                loop {
                    let due = marks.iter().copied().fold(next, Instant::min);
                    match received.recv_timeout(due.saturating_duration_since(Instant::now())) {
                        Ok(Order::At(t)) => {
                            marks.push(t);
                            continue;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        // Finishing: one last sample, so the series reaches the moment of the call.
                        Ok(Order::Finish) | Err(RecvTimeoutError::Disconnected) => {
                            match watch.sample() {
                                Ok(s) => series.samples.push(s),
                                Err(e) => series.error = Some(e),
                            }
                            return series;
                        }
                    }
                    let began = Instant::now();
                    marks.retain(|&t| t > began);
                    match watch.sample() {
                        Ok(s) => series.samples.push(s),
                        Err(e) => {
                            series.error = Some(e);
                            return series;
                        }
                    }
                    next = Instant::now() + interval.max(began.elapsed() * BACKOFF);
                }
            })?;
        Ok(Sampler { orders, thread })
    }

    /// Asks for a sample at `at` besides the regular ones, so that the series has a reading at
    /// exactly the edges of a measured window, however far apart the regular ones are.
    pub fn sample_at(&self, at: Instant) {
        let _ = self.orders.send(Order::At(at));
    }

    /// Takes a last sample and returns the series.
    pub fn finish(self) -> Series {
        let _ = self.orders.send(Order::Finish);
        self.thread.join().unwrap_or_else(|_| Series {
            samples: Vec::new(),
            error: Some(io::Error::other("the sampler thread panicked")),
        })
    }
}
