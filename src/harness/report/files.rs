//! results.json (one object per row) and results.csv (one line per row, nested figures
//! flattened into columns; the two maps, syscalls by name and kernel memory by cache, each in
//! one cell as `name=value;name=value`).

use std::fs;
use std::io;
use std::path::Path;

use super::row::Row;

/// Writes the rows as a JSON array of objects.
pub fn write_json(path: &Path, rows: &[Row]) -> io::Result<()> {
    let text = serde_json::to_string_pretty(rows).map_err(io::Error::other)?;
    fs::write(path, text + "\n")
}

/// The CSV columns, in order.
pub const CSV_HEADERS: [&str; 56] = [
    "model",
    "protocol",
    "mode",
    "connections",
    "size",
    "rate",
    "workers",
    "accept_lock",
    "status",
    "note",
    "runs",
    "requests",
    "requests_per_sec",
    "latency_p50_us",
    "latency_p90_us",
    "latency_p99_us",
    "latency_p999_us",
    "latency_max_us",
    "cpu_us_per_request",
    "cpu_user_us_per_request",
    "cpu_sys_us_per_request",
    "process_control_us_per_connection",
    "pss_peak_bytes",
    "rss_peak_bytes",
    "bytes_per_connection",
    "pss_base_bytes",
    "peak_threads",
    "peak_processes",
    "voluntary_switches_per_request",
    "involuntary_switches_per_request",
    "syscalls_per_request",
    "events_per_wait",
    "syscalls",
    "kernel_bytes_per_connection",
    "kernel_caches",
    "errors_refused",
    "errors_reset",
    "errors_timed_out",
    "errors_mismatch",
    "errors_other",
    "client_cpu_percent",
    "client_bound",
    "pipeline",
    "idle_beside",
    "vs_no_idle_requests_per_sec",
    "vs_no_idle_p99",
    "vs_no_idle_cpu_us_per_request",
    "offered_rate",
    "knee",
    "latency_from_send_p50_us",
    "latency_from_send_p99_us",
    "latency_from_send_p999_us",
    "server_stopped_ms",
    "spread_cpu_us_per_request_min",
    "spread_cpu_us_per_request_max",
    "spread_p99_max_over_min",
];

/// A map in one cell: `name=value;name=value`, values with three decimals.
fn pairs<'a>(items: impl Iterator<Item = (&'a String, f64)>) -> String {
    items
        .map(|(k, v)| format!("{k}={v:.3}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Writes the rows as CSV; absent figures are empty cells.
pub fn write_csv(path: &Path, rows: &[Row]) -> io::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(CSV_HEADERS)?;
    for r in rows {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        let u = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let l = r.latency_us;
        let spread = |key: &str| r.spread.as_ref().and_then(|m| m.get(key));
        let record = [
            r.model.clone(),
            r.protocol.clone(),
            r.mode.name().to_string(),
            r.connections.to_string(),
            r.size.to_string(),
            f(r.rate),
            r.workers.map(|w| w.to_string()).unwrap_or_default(),
            r.accept_lock.clone().unwrap_or_default(),
            format!("{:?}", r.status).to_lowercase(),
            r.note.clone(),
            r.runs.to_string(),
            u(r.requests),
            f(r.requests_per_sec),
            f(l.map(|l| l.p50)),
            f(l.map(|l| l.p90)),
            f(l.map(|l| l.p99)),
            f(l.map(|l| l.p999)),
            f(l.map(|l| l.max)),
            f(r.cpu_us_per_request),
            f(r.cpu_user_us_per_request),
            f(r.cpu_sys_us_per_request),
            f(r.process_control_us_per_connection),
            u(r.pss_peak_bytes),
            u(r.rss_peak_bytes),
            f(r.bytes_per_connection),
            u(r.pss_base_bytes),
            u(r.peak_tasks.map(|t| t.threads)),
            u(r.peak_tasks.map(|t| t.processes)),
            f(r.context_switches_per_request.map(|s| s.voluntary)),
            f(r.context_switches_per_request.map(|s| s.involuntary)),
            f(r.syscalls_per_request),
            f(r.events_per_wait),
            pairs(r.syscalls.iter().flatten().map(|(k, v)| (k, *v))),
            f(r.kernel_bytes_per_connection),
            pairs(
                r.kernel_caches
                    .iter()
                    .flatten()
                    .map(|(k, c)| (k, c.bytes_per_connection)),
            ),
            r.errors.refused.to_string(),
            r.errors.reset.to_string(),
            r.errors.timed_out.to_string(),
            r.errors.mismatch.to_string(),
            r.errors.other.to_string(),
            f(r.client_cpu_percent),
            r.client_bound.to_string(),
            r.pipeline.to_string(),
            r.idle_beside.map(|k| k.to_string()).unwrap_or_default(),
            f(r.vs_no_idle.and_then(|v| v.requests_per_sec)),
            f(r.vs_no_idle.and_then(|v| v.p99)),
            f(r.vs_no_idle.and_then(|v| v.cpu_us_per_request)),
            f(r.offered_rate),
            r.knee.to_string(),
            f(r.latency_from_send_us.map(|l| l.p50)),
            f(r.latency_from_send_us.map(|l| l.p99)),
            f(r.latency_from_send_us.map(|l| l.p999)),
            f(r.server_stopped_ms),
            f(spread("cpu_us_per_request").map(|s| s.min)),
            f(spread("cpu_us_per_request").map(|s| s.max)),
            f(spread("latency_us.p99").and_then(|s| (s.min > 0.0).then(|| s.max / s.min))),
        ];
        w.write_record(&record)?;
    }
    w.flush()
}
