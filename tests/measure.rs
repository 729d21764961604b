//! The /proc measurement checked against probe processes whose answer is known.
//!
//! Each probe is a separate `server-models probe ...` process (forking from this multi-threaded
//! test binary would be unsafe); it prints `ready` once set up and exits when its stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use server_models::harness::measure::procfs;
use server_models::harness::measure::tree::{self, TreeWatch};

const MIB: u64 = 1 << 20;

/// A running probe; dropping it closes its stdin and reaps it.
struct Probe {
    child: Child,
}

impl Probe {
    fn start(args: &[&str]) -> Probe {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server-models"))
            .arg("probe")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the probe");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the probe's stdout");
        assert_eq!(line.trim(), "ready", "the probe did not get ready");
        Probe { child }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A process that touches 100 MiB shows at least 100 MiB of PSS.
#[test]
fn touched_memory_shows_in_pss() {
    let probe = Probe::start(&["touch", "--mib", "100"]);
    let s = TreeWatch::new(probe.pid()).sample().expect("sample");
    assert_eq!(s.processes, 1);
    assert!(s.memory.pss >= 100 * MIB, "pss {} MiB", s.memory.pss / MIB);
    assert!(s.memory.pss < 120 * MIB, "pss {} MiB", s.memory.pss / MIB);
}

/// A parent and 10 children sharing 50 MiB: summed PSS counts the 50 MiB once, summed RSS
/// eleven times.
#[test]
fn shared_pages_count_once_in_pss_and_every_time_in_rss() {
    let probe = Probe::start(&["share", "--mib", "50", "--children", "10"]);
    let s = TreeWatch::new(probe.pid()).sample().expect("sample");
    assert_eq!(s.processes, 11);
    let (pss, rss) = (s.memory.pss / MIB, s.memory.rss / MIB);
    assert!(
        (50..70).contains(&pss),
        "summed pss {pss} MiB, expected near 50"
    );
    assert!(
        (550..650).contains(&rss),
        "summed rss {rss} MiB, expected near 550"
    );
}

/// Children that spin 300 ms of CPU each and are then reaped: their CPU is in the tree's total,
/// through the parent's cutime.
#[test]
fn reaped_children_cpu_is_counted() {
    let probe = Probe::start(&["spin", "--children", "2", "--ms", "300", "--then", "reap"]);
    let s = TreeWatch::new(probe.pid()).sample().expect("sample");
    assert_eq!(s.processes, 1, "the children were reaped");
    let stat = procfs::stat(probe.pid()).expect("stat");
    assert!(
        stat.cutime + stat.cstime > 0,
        "reaped children's CPU is in cutime/cstime"
    );
    assert_cpu_near(s.cpu_ns, 600);
}

/// Children that spin 300 ms of CPU each and stay alive: their CPU is found by walking the tree.
#[test]
fn live_descendants_cpu_is_counted() {
    let probe = Probe::start(&["spin", "--children", "2", "--ms", "300"]);
    let s = TreeWatch::new(probe.pid()).sample().expect("sample");
    assert_eq!(s.processes, 3);
    assert_eq!(s.threads, 3);
    assert_cpu_near(s.cpu_ns, 600);
}

/// Forty children that spin 5 ms each: less than a clock tick apiece, which `stat` rounds down
/// to nothing, yet 200 ms together — the preforked server with a hundred busy children.
#[test]
fn many_small_children_are_not_rounded_away() {
    let probe = Probe::start(&["spin", "--children", "40", "--ms", "5"]);
    let s = TreeWatch::new(probe.pid()).sample().expect("sample");
    assert_eq!(s.processes, 41);
    let ms = s.cpu_ns / 1_000_000;
    assert!(
        ms >= 190,
        "tree cpu {ms} ms, expected at least the children's 200"
    );
}

/// Children that spin 300 ms each and exit unreaped (zombies): their CPU still counts, in
/// the gap between exiting and being reaped.
#[test]
fn zombie_children_cpu_is_counted() {
    let probe = Probe::start(&["spin", "--children", "2", "--ms", "300", "--then", "exit"]);
    let s = TreeWatch::new(probe.pid()).sample().expect("sample");
    assert_eq!(s.processes, 3, "the zombies are still in the tree");
    assert_cpu_near(s.cpu_ns, 600);
}

/// A window over the sampled series of a spinning tree sees the spin, and context switches
/// are counted across the tree's tasks.
#[test]
fn sampler_window_covers_the_children() {
    let sampler = server_models::harness::measure::Sampler::start(
        std::process::id() as i32,
        Duration::from_millis(10),
    )
    .expect("sample this process");
    let before = std::time::Instant::now();
    // Children of this process are part of its tree: spin two and reap them.
    let probe = Probe::start(&["spin", "--children", "2", "--ms", "200", "--then", "reap"]);
    drop(probe);
    let after = std::time::Instant::now();
    let series = sampler.finish();
    assert!(series.error.is_none());
    let w = tree::window(&series.samples, before, after);
    let w = w.expect("the series covers the window");
    let cpu_ms = w.cpu.as_millis();
    assert!(
        cpu_ms >= 380,
        "window cpu {cpu_ms} ms, expected at least the children's 400"
    );
    assert!(
        w.switches.voluntary > 0,
        "the probe's wait for its children is a voluntary switch"
    );
}

/// CPU at least what was spun less a tick per process, at most a little above.
fn assert_cpu_near(cpu_ns: u64, expected_ms: u64) {
    let ms = cpu_ns / 1_000_000;
    assert!(
        ms + 30 >= expected_ms,
        "tree cpu {ms} ms, expected about {expected_ms}"
    );
    assert!(
        ms <= expected_ms + 300,
        "tree cpu {ms} ms, expected about {expected_ms}"
    );
}
