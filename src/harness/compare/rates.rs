//! Latency against offered load: open loop at a series of rates per model, to its knee.
//!
//! An open-loop client sends each request when it is due, whatever the server does, and times
//! it from then; so past the server's capacity the achieved rate stops following the offered
//! one and the latency climbs without bound — the hockey stick. A model's *knee* is the highest
//! offered rate at which it still kept up (achieved ≥ [`KEEP_UP`] × offered) with p99 under the
//! stated bound (`--slo-p99`).
//!
//! `--rates R1,R2,...` offers the rates given. `--rates auto` brackets each model's capacity
//! itself: from [`FIRST_RATE`] it doubles the rate while the model keeps up, then bisects
//! between the last rate kept and the first missed, [`BISECTIONS`] times or until they are
//! within [`RESOLUTION`] of each other ([`Search`]). Every rate tried is a row.
//!
//! Coordinated omission, shown once ([`stall_point`]): the first model with a knee, at half
//! its knee, with its server stopped (SIGSTOP) for [`STALL`] in the middle of the window. The
//! load generator records each request's latency from its scheduled time and from its actual
//! send; the second is what a client that waits for the server before it sends the next
//! request would report, and it hides the stall (Gil Tene's lesson, wrk2's demonstration).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Point, Setup, point};
use crate::harness::report::row::{Mode, Row, Status};
use crate::server::model::Model;
use crate::server::protocol::Protocol;

/// A rate counts as kept up when the achieved rate is at least this share of the offered one.
pub const KEEP_UP: f64 = 0.98;

/// Where `--rates auto` starts, requests/s.
pub const FIRST_RATE: f64 = 1000.0;

/// Doublings at most before the search gives up finding a rate the model misses.
pub const MAX_DOUBLINGS: usize = 16;

/// Halvings at most when the first rate is already missed.
pub const MAX_HALVINGS: usize = 3;

/// Bisections between the last rate kept and the first missed.
pub const BISECTIONS: usize = 4;

/// The search stops bisecting when the first rate missed is within this share of the last
/// kept.
pub const RESOLUTION: f64 = 0.05;

/// How long the server is stopped in the coordinated-omission run.
pub const STALL: Duration = Duration::from_millis(100);

/// The rates of the offered-load sweep.
#[derive(Clone, Debug, PartialEq)]
pub enum Rates {
    /// These rates, requests/s, for every model.
    List(Vec<f64>),
    /// Each model's own, searched for.
    Auto,
}

impl FromStr for Rates {
    type Err = String;

    fn from_str(s: &str) -> Result<Rates, String> {
        if s.trim() == "auto" {
            return Ok(Rates::Auto);
        }
        let rates = s
            .split(',')
            .map(|r| match r.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => Err(format!(
                    "'{r}' is not a rate: --rates takes positive requests/s, comma-separated, or auto"
                )),
            })
            .collect::<Result<Vec<f64>, String>>()?;
        Ok(Rates::List(rates))
    }
}

impl fmt::Display for Rates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rates::Auto => write!(f, "auto"),
            Rates::List(list) => {
                let text: Vec<String> = list.iter().map(|r| r.to_string()).collect();
                write!(f, "{}", text.join(","))
            }
        }
    }
}

/// What one offered rate came to, for the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The model kept up, with p99 under the bound.
    Keeps,
    /// It did not (or the run failed).
    Misses,
    /// Nothing can be learned from here on (unreachable, interrupted): stop searching.
    Stop,
}

/// The search for one model's knee: which rate to try next, given the verdicts so far.
#[derive(Clone, Debug)]
pub struct Search {
    next: Option<f64>,
    /// The highest rate kept so far.
    kept: Option<f64>,
    /// The lowest rate missed so far.
    missed: Option<f64>,
    doublings: usize,
    halvings: usize,
    bisections: usize,
}

impl Search {
    /// A search that starts at `first` requests/s.
    pub fn new(first: f64) -> Search {
        Search {
            next: Some(first.round().max(1.0)),
            kept: None,
            missed: None,
            doublings: 0,
            halvings: 0,
            bisections: 0,
        }
    }

    /// The rate to try next; `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        self.next
    }

    /// The highest rate kept, once the search is over: the knee.
    pub fn knee(&self) -> Option<f64> {
        self.kept
    }

    /// Takes the verdict on `rate` (the rate [`next`](Self::next) gave) and chooses the next.
    pub fn record(&mut self, rate: f64, verdict: Verdict) {
        match verdict {
            Verdict::Stop => {
                self.next = None;
                return;
            }
            Verdict::Keeps => self.kept = Some(self.kept.map_or(rate, |k| k.max(rate))),
            Verdict::Misses => self.missed = Some(self.missed.map_or(rate, |m| m.min(rate))),
        }
        self.next = match (self.kept, self.missed) {
            // Still climbing: double.
            (Some(kept), None) if self.doublings < MAX_DOUBLINGS => {
                self.doublings += 1;
                Some(kept * 2.0)
            }
            (Some(_), None) => None,
            // Missed from the start: halve, a few times.
            (None, Some(missed)) if self.halvings < MAX_HALVINGS => {
                self.halvings += 1;
                Some((missed / 2.0).round().max(1.0))
            }
            (None, _) => None,
            // Bracketed: bisect until close enough.
            (Some(kept), Some(missed)) => {
                let mid = ((kept + missed) / 2.0).round();
                let close = missed <= kept * (1.0 + RESOLUTION) || mid <= kept || mid >= missed;
                if self.bisections < BISECTIONS && !close {
                    self.bisections += 1;
                    Some(mid)
                } else {
                    None
                }
            }
        };
    }
}

/// Whether a measured open-loop row kept up with its offered rate with p99 under `slo`.
pub fn keeps(row: &Row, slo: Duration) -> bool {
    let offered = row.offered_rate.or(row.rate).unwrap_or(0.0);
    row.status == Status::Ok
        && row.requests_per_sec.unwrap_or(0.0) >= KEEP_UP * offered
        && row
            .latency_us
            .is_some_and(|l| l.p99 < slo.as_secs_f64() * 1e6)
}

/// The search's verdict on a row.
fn verdict(row: &Row, slo: Duration) -> Verdict {
    match row.status {
        Status::Unreachable => Verdict::Stop,
        Status::Failed if row.note == "interrupted" => Verdict::Stop,
        _ if keeps(row, slo) => Verdict::Keeps,
        _ => Verdict::Misses,
    }
}

/// Runs `--rates auto` for one model at `template` (an offered-load point without a rate):
/// doubling, then bisecting. `trying` hears of each point before it runs. Returns a row per
/// rate tried, in increasing rate.
pub fn search(
    setup: &Setup,
    model: &dyn Model,
    template: &Point,
    slo: Duration,
    trying: &mut dyn FnMut(&Point),
) -> Vec<Row> {
    let mut search = Search::new(FIRST_RATE);
    let mut rows = Vec::new();
    while let Some(rate) = search.next() {
        if (setup.interrupted)() {
            break;
        }
        let point = Point {
            rate: Some(rate),
            search: false,
            ..*template
        };
        trying(&point);
        let row = point::measure(setup, model, &point);
        search.record(rate, verdict(&row, slo));
        rows.push(row);
    }
    rows.sort_by(|a, b| a.rate.unwrap_or(0.0).total_cmp(&b.rate.unwrap_or(0.0)));
    rows
}

/// Whether two offered-load rows belong to one series: the same model and load but the rate.
fn same_series(a: &Row, b: &Row) -> bool {
    a.label() == b.label()
        && a.protocol == b.protocol
        && a.size == b.size
        && a.connections == b.connections
        && a.idle_beside == b.idle_beside
}

/// Marks in every series of offered-load rows the row at its knee: the highest offered rate
/// kept up with p99 under `slo`.
pub fn mark_knees(rows: &mut [Row], slo: Duration) {
    let knees: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].offered_rate.is_some() && keeps(&rows[i], slo))
        .filter(|&i| {
            !rows.iter().any(|o| {
                o.offered_rate > rows[i].offered_rate && same_series(o, &rows[i]) && keeps(o, slo)
            })
        })
        .collect();
    for i in knees {
        rows[i].knee = true;
    }
}

/// The coordinated-omission run: the first of `models` with a knee, at half its knee, on as
/// many connections, with the server stopped for [`STALL`] mid-window. Call after
/// [`mark_knees`]. `None` when no model has a knee.
pub fn stall_point(
    rows: &[Row],
    models: &[&'static dyn Model],
) -> Option<(&'static dyn Model, Point)> {
    models.iter().find_map(|&m| {
        let knee = rows.iter().find(|r| r.knee && r.model == m.name())?;
        let protocol: Protocol = knee.protocol.parse().ok()?;
        let rate = (knee.offered_rate? / 2.0).round().max(1.0);
        Some((
            m,
            Point {
                rate: Some(rate),
                stall: Some(STALL),
                ..Point::new(protocol, Mode::Open, knee.connections, knee.size)
            },
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a model that keeps up with any rate up to `capacity`.
    fn against(capacity: f64) -> (Vec<f64>, Option<f64>) {
        let mut s = Search::new(FIRST_RATE);
        let mut tried = Vec::new();
        while let Some(rate) = s.next() {
            tried.push(rate);
            let v = if rate <= capacity {
                Verdict::Keeps
            } else {
                Verdict::Misses
            };
            s.record(rate, v);
        }
        (tried, s.knee())
    }

    /// Doubling brackets the capacity, bisection closes in on it, and the knee is the highest
    /// rate kept, within the resolution of the capacity.
    #[test]
    fn search_doubles_then_bisects() {
        let (tried, knee) = against(5000.0);
        assert_eq!(&tried[..4], [1000.0, 2000.0, 4000.0, 8000.0]);
        assert_eq!(tried[4], 6000.0, "then halfway between 4000 and 8000");
        assert_eq!(tried.len(), 4 + BISECTIONS);
        let knee = knee.expect("a knee");
        assert!((4500.0..=5000.0).contains(&knee), "{knee} from {tried:?}");
    }

    /// A model that misses the first rate is tried at halves of it, a few times; one that never
    /// misses is doubled a bounded number of times; a stop ends the search at once.
    #[test]
    fn search_edges() {
        let (tried, knee) = against(300.0);
        assert_eq!(&tried[..3], [1000.0, 500.0, 250.0]);
        let knee = knee.expect("a knee below the first rate");
        assert!((250.0..=300.0).contains(&knee), "{knee} from {tried:?}");
        let (tried, knee) = against(1.0);
        assert_eq!(tried, [1000.0, 500.0, 250.0, 125.0]);
        assert_eq!(knee, None);
        let (tried, knee) = against(f64::INFINITY);
        assert_eq!(tried.len(), MAX_DOUBLINGS + 1);
        assert_eq!(knee, tried.last().copied());
        let mut s = Search::new(FIRST_RATE);
        s.record(FIRST_RATE, Verdict::Stop);
        assert_eq!(s.next(), None);
    }

    /// `--rates` reads a list or `auto`, and refuses anything else with a message.
    #[test]
    fn rates_parse() {
        assert_eq!("auto".parse(), Ok(Rates::Auto));
        assert_eq!(
            "1000, 2500.5".parse(),
            Ok(Rates::List(vec![1000.0, 2500.5]))
        );
        assert!("1000,fast".parse::<Rates>().is_err());
        assert!("0".parse::<Rates>().is_err());
        assert_eq!(Rates::List(vec![1000.0, 2000.0]).to_string(), "1000,2000");
    }

    fn offered(model: &str, rate: f64, achieved: f64, p99: f64) -> Row {
        let mut r = Row::new(model, "echo", Mode::Open, 100, 64);
        r.rate = Some(rate);
        r.offered_rate = Some(rate);
        r.requests_per_sec = Some(achieved);
        r.latency_us = Some(crate::harness::load::Latency {
            p99,
            ..Default::default()
        });
        r
    }

    /// The knee is the highest rate kept up with p99 under the bound, in each model's series;
    /// a rate that fell short of 98% or passed the bound is not one, and a series with none
    /// has no knee.
    #[test]
    fn knees_are_marked_per_series() {
        let slo = Duration::from_millis(1);
        let mut rows = vec![
            offered("a", 1000.0, 1000.0, 100.0),
            offered("a", 2000.0, 1990.0, 200.0),
            offered("a", 4000.0, 3000.0, 300.0),
            offered("b", 1000.0, 1000.0, 100.0),
            offered("b", 2000.0, 2000.0, 1500.0),
            offered("c", 1000.0, 900.0, 100.0),
        ];
        mark_knees(&mut rows, slo);
        let knees: Vec<bool> = rows.iter().map(|r| r.knee).collect();
        assert_eq!(knees, [false, true, false, true, false, false]);
        let all: Vec<&'static dyn Model> = crate::variants::all().to_vec();
        assert!(
            stall_point(&rows, &all).is_none(),
            "no registered model named a, b or c"
        );
    }
}
