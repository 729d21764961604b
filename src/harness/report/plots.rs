//! The SVG plots: throughput and p99 latency against connections (one line per model), server
//! CPU per request by model (user and sys stacked, one bar per connection count), memory per
//! idle connection by model, and line charts against any other x axis (idle connections
//! beside the busy ones, offered load).

use std::io;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::table;

/// One line of a line chart: a model's figure at each connection count.
pub struct Line {
    /// The model.
    pub label: String,
    /// (connections, value) in increasing connections.
    pub points: Vec<(f64, f64)>,
}

/// The x axis of a line chart, always on a log scale: what it is, and how a tick reads.
pub struct Axis<'a> {
    /// The axis title.
    pub desc: &'a str,
    /// A tick's label.
    pub format: &'a dyn Fn(&f64) -> String,
}

/// Connections, the x axis of the connection sweep.
pub const CONNECTIONS: Axis<'static> = Axis {
    desc: "connections",
    format: &whole,
};

fn whole(x: &f64) -> String {
    format!("{x:.0}")
}

/// A line chart of `lines` against `x`, with a linear y axis from 0.
pub fn lines_linear(
    path: &Path,
    title: &str,
    x: &Axis,
    y_desc: &str,
    lines: &[Line],
    y_format: &dyn Fn(&f64) -> String,
) -> io::Result<()> {
    let top = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    line_chart(
        path,
        title,
        x,
        y_desc,
        lines,
        0.0..(top * 1.1).max(1.0),
        y_format,
    )
}

/// A line chart of latencies (µs) against `x`, on a log y axis.
pub fn latency_against(path: &Path, title: &str, x: &Axis, lines: &[Line]) -> io::Result<()> {
    micros_against(path, title, x, "p99 latency (log scale)", lines)
}

/// A line chart of any figure in microseconds against `x`, on a log y axis.
pub fn micros_against(
    path: &Path,
    title: &str,
    x: &Axis,
    y_desc: &str,
    lines: &[Line],
) -> io::Result<()> {
    let values = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 {
        (decade_below(lo), decade_above(hi))
    } else {
        (1.0, 10.0)
    };
    line_chart(path, title, x, y_desc, lines, (lo..hi).log_scale(), &|v| {
        si_micros(*v)
    })
}

/// One model's CPU bars: (connections, user µs, sys µs) for each count it reached.
pub struct CpuBars {
    /// The model.
    pub label: String,
    /// One bar per connection count.
    pub bars: Vec<(usize, f64, f64)>,
}

/// One model's memory bar, or why it has none.
pub struct MemoryBar {
    /// The model.
    pub label: String,
    /// Bytes per connection, or the reason there is no figure.
    pub value: Result<f64, String>,
}

const WIDTH: u32 = 960;
const LEGEND: u32 = 210;
const FONT: &str = "sans-serif";

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("drawing a plot: {e}"))
}

/// Twenty colours dark enough to read on white and far enough apart to tell from each other
/// (the Tableau 10, then a darker ten).
const PALETTE: [(u8, u8, u8); 20] = [
    (0x1f, 0x77, 0xb4),
    (0xff, 0x7f, 0x0e),
    (0x2c, 0xa0, 0x2c),
    (0xd6, 0x27, 0x28),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
    (0x39, 0x3b, 0x79),
    (0x63, 0x79, 0x39),
    (0x8c, 0x6d, 0x31),
    (0x84, 0x3c, 0x39),
    (0x7b, 0x41, 0x73),
    (0x31, 0x82, 0xbd),
    (0xe6, 0x55, 0x0d),
    (0x31, 0xa3, 0x54),
    (0x75, 0x6b, 0xb1),
    (0x25, 0x25, 0x25),
];

/// A colour per series, the same model getting the same colour in every plot; past twenty,
/// they repeat (and the marker shapes tell them apart).
pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

fn lighter(c: RGBColor) -> RGBColor {
    let mix = |v: u8| (v as u16 + (255 - v as u16) * 3 / 5) as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// Throughput against connections: linear requests/s, log connections.
pub fn throughput(path: &Path, title: &str, lines: &[Line]) -> io::Result<()> {
    lines_linear(path, title, &CONNECTIONS, "requests/s", lines, &|v| {
        table::count(*v)
    })
}

/// p99 latency against connections: log µs, log connections.
pub fn latency(path: &Path, title: &str, lines: &[Line]) -> io::Result<()> {
    latency_against(path, title, &CONNECTIONS, lines)
}

/// Microseconds at powers of ten, in the unit that reads best: `100 µs`, `10 ms`, `1 s`.
pub fn si_micros(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{} s", v / 1e6),
        v if v >= 1e3 => format!("{} ms", v / 1e3),
        v => format!("{v} µs"),
    }
}

/// Bytes at powers of ten, for a log axis whose ticks fall there: `100 B`, `10 kB`, `1 MB`.
/// (A tick between powers of ten prints its exact value in the same unit.)
fn si_bytes(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{} MB", v / 1e6),
        v if v >= 1e3 => format!("{} kB", v / 1e3),
        v => format!("{v} B"),
    }
}

fn decade_below(v: f64) -> f64 {
    10f64.powf(v.log10().floor())
}

fn decade_above(v: f64) -> f64 {
    10f64.powf(v.log10().ceil()).max(v * 1.5)
}

fn line_chart<Y>(
    path: &Path,
    title: &str,
    x: &Axis,
    y_desc: &str,
    lines: &[Line],
    y_range: Y,
    y_format: &dyn Fn(&f64) -> String,
) -> io::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (x_lo, x_hi) = xs.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x_lo, x_hi) = if x_hi > 0.0 {
        (x_lo / 1.5, x_hi * 1.5)
    } else {
        (0.5, 2.0)
    };

    let root = SVGBackend::new(path, (WIDTH, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x.desc)
        .y_desc(y_desc)
        .x_label_formatter(x.format)
        .y_label_formatter(y_format)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .max_light_lines(0)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    for (i, line) in lines.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                c.stroke_width(2),
            ))
            .map_err(err)?;
        // Shapes cycle as well as colours, so that lines stay apart where colours are close.
        let points = line.points.iter().copied();
        match i % 3 {
            0 => chart.draw_series(points.map(|p| Circle::new(p, 4, c.filled()))),
            1 => chart.draw_series(points.map(|p| TriangleMarker::new(p, 5, c.filled()))),
            _ => chart.draw_series(points.map(|p| Cross::new(p, 4, c.stroke_width(2)))),
        }
        .map_err(err)?;
    }
    draw_legend(&legend, lines.iter().map(|l| l.label.as_str()), 40)?;
    root.present().map_err(err)
}

fn draw_legend<'a>(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    labels: impl Iterator<Item = &'a str>,
    top: i32,
) -> io::Result<()> {
    for (i, label) in labels.enumerate() {
        let y = top + i as i32 * 20;
        let c = color(i);
        area.draw(&PathElement::new(vec![(4, y), (28, y)], c.stroke_width(3)))
            .map_err(err)?;
        area.draw(&Text::new(
            label.to_string(),
            (34, y - 7),
            (FONT, 13).into_font(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The label of the horizontal category axis at `y`: category i is drawn at y = n-1-i, so the
/// first is on top; between categories there is no label.
fn category_name(names: &[&str], y: f64) -> String {
    let i = names.len() as f64 - 1.0 - y.round();
    if (y - y.round()).abs() < 0.01 && i >= 0.0 {
        names.get(i as usize).unwrap_or(&"").to_string()
    } else {
        String::new()
    }
}

/// Server CPU per request by model: for each model a group of horizontal bars, one per
/// connection count (a colour each), user CPU solid and sys CPU lighter after it.
pub fn cpu(path: &Path, title: &str, models: &[CpuBars], counts: &[usize]) -> io::Result<()> {
    let k = counts.len().max(1);
    let n = models.len().max(1);
    let top = models
        .iter()
        .flat_map(|m| m.bars.iter().map(|b| b.1 + b.2))
        .fold(0.0, f64::max);
    let height = (110 + n * (k * 14 + 10)) as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
    let names: Vec<&str> = models.iter().map(|m| m.label.as_str()).collect();
    let name_at = |y: &f64| category_name(&names, *y);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(130)
        .build_cartesian_2d(0.0..(top * 1.18).max(1.0), -0.5..(n as f64 - 0.5))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&name_at)
        .x_desc("server CPU per request, µs (user solid, sys light)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .max_light_lines(0)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    let band = 0.8 / k as f64;
    for (i, model) in models.iter().enumerate() {
        let centre = (n - 1 - i) as f64;
        for &(conns, user, sys) in &model.bars {
            let Some(j) = counts.iter().position(|&c| c == conns) else {
                continue;
            };
            let y0 = centre + 0.4 - (j + 1) as f64 * band;
            let y1 = y0 + band * 0.85;
            let c = color(j);
            chart
                .draw_series([Rectangle::new([(0.0, y0), (user, y1)], c.filled())])
                .map_err(err)?;
            chart
                .draw_series([Rectangle::new(
                    [(user, y0), (user + sys, y1)],
                    lighter(c).filled(),
                )])
                .map_err(err)?;
            let label = format!("{:.1}", user + sys);
            chart
                .draw_series([Text::new(
                    label,
                    (user + sys + top * 0.01, y1),
                    (FONT, 11).into_font(),
                )])
                .map_err(err)?;
        }
    }
    let labels: Vec<String> = counts
        .iter()
        .map(|c| format!("{c} conn{}", if *c == 1 { "" } else { "s" }))
        .collect();
    draw_legend(&legend, labels.iter().map(String::as_str), 40)?;
    root.present().map_err(err)
}

/// Memory per idle connection by model: one horizontal bar each, on a log scale (the models
/// differ by orders of magnitude), with the figure written beside it, or why there is none.
pub fn memory(path: &Path, title: &str, bars: &[MemoryBar]) -> io::Result<()> {
    let n = bars.len().max(1);
    let values = bars
        .iter()
        .filter_map(|b| b.value.as_ref().ok().copied())
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 {
        (decade_below(lo) / 10.0, decade_above(hi) * 10.0)
    } else {
        (10.0, 1e6)
    };
    let height = (110 + n * 26) as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let names: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
    let name_at = |y: &f64| category_name(&names, *y);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(130)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5..(n as f64 - 0.5))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&name_at)
        .x_label_formatter(&|v| si_bytes(*v))
        .x_desc("PSS per idle connection (log scale; 1 kB = 1000 B, 1 KiB = 1024 B)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .max_light_lines(0)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    for (i, bar) in bars.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let (text, end) = match &bar.value {
            Ok(v) if *v > lo => {
                chart
                    .draw_series([Rectangle::new(
                        [(lo, y - 0.3), (*v, y + 0.3)],
                        color(i).filled(),
                    )])
                    .map_err(err)?;
                (table::bytes(*v), *v)
            }
            Ok(v) => (format!("{} (within noise)", table::bytes(*v)), lo),
            Err(why) => (format!("n/a: {why}"), lo),
        };
        chart
            .draw_series([Text::new(
                text,
                (end * 1.08, y + 0.15),
                (FONT, 12).into_font(),
            )])
            .map_err(err)?;
    }
    root.present().map_err(err)
}
