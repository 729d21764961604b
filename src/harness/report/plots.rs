//! The SVG plots: throughput and p99 latency against connections (one line per model), server
//! CPU per request by model (user and sys stacked, one bar per connection count), syscalls per
//! request by model (stacked by family, one bar per connection count), memory per idle
//! connection by model, and line charts against any other x axis (idle connections beside the
//! busy ones, offered load).

use std::io;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::table;

/// One line of a line chart: a model's figure at each connection count.
pub struct Line {
    /// The model.
    pub label: String,
    /// (connections, value) in increasing connections.
    pub points: Vec<(f64, f64)>,
}

/// Connections, the x axis of the connection sweep.
pub const CONNECTIONS: XAxis<'static> = XAxis {
    desc: "connections",
    log: true,
    format: &whole,
};

fn whole(x: &f64) -> String {
    format!("{x:.0}")
}

/// A line chart of `lines` against `x`, with a linear y axis from 0.
pub fn lines_linear(
    path: &Path,
    title: &str,
    x: &XAxis,
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
pub fn latency_against(path: &Path, title: &str, x: &XAxis, lines: &[Line]) -> io::Result<()> {
    micros_against(path, title, x, "p99 latency (log scale)", lines)
}

/// A line chart of any figure in microseconds against `x`, on a log y axis.
pub fn micros_against(
    path: &Path,
    title: &str,
    x: &XAxis,
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

/// One model's syscall bars: for each connection count it reached, calls per request in each
/// family (in the order of the plot's family names).
pub struct SyscallBars {
    /// The model.
    pub label: String,
    /// (connections, calls per request by family).
    pub bars: Vec<(usize, Vec<f64>)>,
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
    x: &XAxis,
    y_desc: &str,
    lines: &[Line],
    y_range: Y,
    y_format: &dyn Fn(&f64) -> String,
) -> io::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let (x_lo, x_hi) = x_span(lines.iter());
    let root = SVGBackend::new(path, (WIDTH, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
    if x.log {
        draw_lines(
            &plot,
            title,
            (x, (x_lo..x_hi).log_scale()),
            (y_desc, y_range, y_format),
            lines,
        )?;
    } else {
        draw_lines(
            &plot,
            title,
            (x, 0.0..x_hi),
            (y_desc, y_range, y_format),
            lines,
        )?;
    }
    draw_legend(&legend, lines.iter().map(|l| l.label.as_str()), 40)?;
    root.present().map_err(err)
}

/// The x range that holds every point of `lines`, with a margin on a log axis.
fn x_span<'a>(lines: impl Iterator<Item = &'a Line>) -> (f64, f64) {
    let xs = lines.flat_map(|l| l.points.iter().map(|p| p.0));
    let (x_lo, x_hi) = xs.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if x_hi > 0.0 {
        (x_lo / 1.5, x_hi * 1.5)
    } else {
        (0.5, 2.0)
    }
}

/// The x axis of a chart: what it counts, whether on a log scale, and how a tick reads.
pub struct XAxis<'a> {
    /// The axis title.
    pub desc: &'a str,
    /// Log scale (connections, idle connections, offered load), or linear from 0 (CPUs).
    pub log: bool,
    /// A tick's label.
    pub format: &'a TickFormat<'a>,
}

/// One panel of a figure: a line chart with a title and a y axis of its own.
pub struct Panel {
    /// Above the panel.
    pub title: String,
    /// The y axis title.
    pub y_desc: String,
    /// The lines, one per model.
    pub lines: Vec<Line>,
}

/// How the panels' y axes are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YScale {
    /// Linear from 0, each panel to its own top.
    Own,
    /// Linear from 0, every panel to the same top, so that heights compare across panels.
    Shared,
    /// Log scale, every panel over the same decades (latency).
    SharedLog,
}

/// Panels stacked one above the other under one title, each with its own legend: a plot of
/// many lines split into groups (the models by family) whose lines can be told apart, or two
/// figures against the same x (requests/s and CPU per request against server CPUs).
pub fn panels(
    path: &Path,
    title: &str,
    x: &XAxis,
    panels: &[Panel],
    y: YScale,
    y_format: &dyn Fn(&f64) -> String,
) -> io::Result<()> {
    const PANEL: u32 = 330;
    let height = 40 + PANEL * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FONT, 20)).map_err(err)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    let (x_lo, x_hi) = if x.log {
        x_span(panels.iter().flat_map(|p| p.lines.iter()))
    } else {
        let top = panels
            .iter()
            .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.0)))
            .fold(1.0, f64::max);
        (0.0, top + 0.5)
    };
    let values = |p: &Panel| -> Vec<f64> {
        p.lines
            .iter()
            .flat_map(|l| l.points.iter().map(|q| q.1))
            .collect()
    };
    let all: Vec<f64> = panels.iter().flat_map(values).collect();
    let top_of = |v: &[f64]| (v.iter().copied().fold(0.0, f64::max) * 1.1).max(1.0);
    let positive = all.iter().copied().filter(|v| *v > 0.0);
    let (lo, hi) = positive.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (log_lo, log_hi) = if hi > 0.0 {
        (decade_below(lo), decade_above(hi))
    } else {
        (1.0, 10.0)
    };
    for (panel, area) in panels.iter().zip(&areas) {
        let (plot, legend) = area.split_horizontally(WIDTH - LEGEND);
        let y_desc = panel.y_desc.as_str();
        let top = match y {
            YScale::Own => top_of(&values(panel)),
            _ => top_of(&all),
        };
        let lines = &panel.lines;
        let title = panel.title.as_str();
        match (x.log, y) {
            (true, YScale::SharedLog) => draw_lines(
                &plot,
                title,
                (x, (x_lo..x_hi).log_scale()),
                (y_desc, (log_lo..log_hi).log_scale(), y_format),
                lines,
            ),
            (false, YScale::SharedLog) => draw_lines(
                &plot,
                title,
                (x, x_lo..x_hi),
                (y_desc, (log_lo..log_hi).log_scale(), y_format),
                lines,
            ),
            (true, _) => draw_lines(
                &plot,
                title,
                (x, (x_lo..x_hi).log_scale()),
                (y_desc, 0.0..top, y_format),
                lines,
            ),
            (false, _) => draw_lines(
                &plot,
                title,
                (x, x_lo..x_hi),
                (y_desc, 0.0..top, y_format),
                lines,
            ),
        }?;
        draw_legend(&legend, lines.iter().map(|l| l.label.as_str()), 40)?;
    }
    root.present().map_err(err)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// How a tick's label reads.
type TickFormat<'a> = dyn Fn(&f64) -> String + 'a;

/// Draws `lines` into `area` under `title`: a line per model, a colour and a marker shape each.
fn draw_lines<X, Y>(
    area: &Area,
    title: &str,
    (x, x_range): (&XAxis, X),
    (y_desc, y_range, y_format): (&str, Y, &TickFormat<'_>),
    lines: &[Line],
) -> io::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 17))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
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
    Ok(())
}

fn draw_legend<'a>(area: &Area, labels: impl Iterator<Item = &'a str>, top: i32) -> io::Result<()> {
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
    let top = models
        .iter()
        .flat_map(|m| m.bars.iter().map(|b| b.1 + b.2))
        .fold(0.0, f64::max);
    let names: Vec<&str> = models.iter().map(|m| m.label.as_str()).collect();
    let labels: Vec<String> = counts
        .iter()
        .map(|c| format!("{c} conn{}", if *c == 1 { "" } else { "s" }))
        .collect();
    let frame = GroupedBars {
        title,
        names: &names,
        per_group: counts.len(),
        x_max: top * 1.18,
        x_desc: "server CPU per request, µs (user solid, sys light)",
        legend: &labels.iter().map(String::as_str).collect::<Vec<_>>(),
    };
    frame.draw(path, &mut |chart, band| {
        for (i, model) in models.iter().enumerate() {
            for &(conns, user, sys) in &model.bars {
                let Some(j) = counts.iter().position(|&c| c == conns) else {
                    continue;
                };
                let (y0, y1) = band(i, j);
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
        Ok(())
    })
}

/// A chart of horizontal bars drawn on a linear x axis from 0.
type BarChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Where bar j of group i lies: (y0, y1).
type BarExtent<'a> = &'a dyn Fn(usize, usize) -> (f64, f64);

/// The frame of a grouped horizontal bar chart: a group per model (named on the y axis, the
/// first on top), `per_group` bars in each, a legend beside it.
struct GroupedBars<'a> {
    title: &'a str,
    names: &'a [&'a str],
    per_group: usize,
    x_max: f64,
    x_desc: &'a str,
    legend: &'a [&'a str],
}

impl GroupedBars<'_> {
    /// Draws the frame into `path`, then the bars through `bars`, which is given the chart and
    /// the vertical extent (y0, y1) of bar j of group i.
    fn draw(
        &self,
        path: &Path,
        bars: &mut dyn FnMut(&mut BarChart, BarExtent) -> io::Result<()>,
    ) -> io::Result<()> {
        let k = self.per_group.max(1);
        let n = self.names.len().max(1);
        // Tall enough for the bars and for the legend beside them.
        let height = (110 + n * (k * 14 + 10)).max(60 + 20 * self.legend.len()) as u32;
        let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
        let name_at = |y: &f64| category_name(self.names, *y);
        let mut chart = ChartBuilder::on(&plot)
            .caption(self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(130)
            .build_cartesian_2d(0.0..self.x_max.max(1.0), -0.5..(n as f64 - 0.5))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&name_at)
            .x_desc(self.x_desc)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .max_light_lines(0)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(err)?;
        let band = 0.8 / k as f64;
        let extent = |i: usize, j: usize| {
            let y0 = (n - 1 - i) as f64 + 0.4 - (j + 1) as f64 * band;
            (y0, y0 + band * 0.85)
        };
        bars(&mut chart, &extent)?;
        draw_legend(&legend, self.legend.iter().copied(), 40)?;
        root.present().map_err(err)
    }
}

/// Syscalls per request by model: for each model a group of horizontal bars, one per
/// connection count (labelled at its end), each bar stacked by syscall family (a colour each).
pub fn syscalls(
    path: &Path,
    title: &str,
    models: &[SyscallBars],
    families: &[&str],
) -> io::Result<()> {
    let top = models
        .iter()
        .flat_map(|m| m.bars.iter().map(|b| b.1.iter().sum::<f64>()))
        .fold(0.0, f64::max);
    let names: Vec<&str> = models.iter().map(|m| m.label.as_str()).collect();
    let frame = GroupedBars {
        title,
        names: &names,
        per_group: models.iter().map(|m| m.bars.len()).max().unwrap_or(1),
        x_max: top * 1.25,
        x_desc: "syscalls per request (one bar per connection count)",
        legend: families,
    };
    frame.draw(path, &mut |chart, band| {
        for (i, model) in models.iter().enumerate() {
            for (j, (conns, parts)) in model.bars.iter().enumerate() {
                let (y0, y1) = band(i, j);
                let mut x = 0.0;
                for (f, &v) in parts.iter().enumerate() {
                    chart
                        .draw_series([Rectangle::new([(x, y0), (x + v, y1)], color(f).filled())])
                        .map_err(err)?;
                    x += v;
                }
                chart
                    .draw_series([Text::new(
                        format!("{conns}: {x:.2}"),
                        (x + top * 0.01, y1),
                        (FONT, 11).into_font(),
                    )])
                    .map_err(err)?;
            }
        }
        Ok(())
    })
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
