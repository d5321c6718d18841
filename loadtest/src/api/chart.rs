//! The chart of the REST figures: mean and p99 response time against fleet size, one line per
//! phase, one panel per store, drawn with plotters' SVG backend (as the server's pages draw
//! theirs) from the CSV the `api` scenario appends to. Both axes are logarithmic: fleets and
//! response times each span decades.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

/// A point: fleet size, mean and p99 response time (ms).
type Point = (f64, f64, f64);

/// Lines by store, then phase; points by fleet size.
type Series = BTreeMap<String, BTreeMap<String, BTreeMap<u64, Point>>>;

const WIDTH: u32 = 760;
/// One store's panel, title and axes included.
const PANEL: u32 = 440;
/// The legend's column at the right of each panel.
const LEGEND: u32 = 200;
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Reads `csv` (rows of [`super::Row::CSV_HEADER`]); rows at `concurrency` only, if given.
/// Where several rows share store, phase and fleet size, the last one counts.
pub fn series(csv: &str, concurrency: Option<u32>) -> Result<Series> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().context("an empty CSV")?.split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no column {name} in the CSV"))
    };
    let (store, meters, phase, conc, mean, p99) = (
        col("store")?,
        col("meters")?,
        col("phase")?,
        col("concurrency")?,
        col("mean_ms")?,
        col("p99_ms")?,
    );
    let mut out = Series::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let get = |c: usize| {
            f.get(c)
                .copied()
                .with_context(|| format!("row {} is short", i + 2))
        };
        let c: u32 = get(conc)?.parse().context("concurrency")?;
        if concurrency.is_some_and(|want| want != c) {
            continue;
        }
        let m: u64 = get(meters)?.parse().context("meters")?;
        let point = (
            m as f64,
            get(mean)?.parse().context("mean_ms")?,
            get(p99)?.parse().context("p99_ms")?,
        );
        out.entry(get(store)?.to_owned())
            .or_default()
            .entry(get(phase)?.to_owned())
            .or_default()
            .insert(m, point);
    }
    if out.is_empty() {
        bail!("no rows to draw");
    }
    Ok(out)
}

/// A logarithmic axis over whole decades.
struct Axis {
    low: f64,
    high: f64,
}

impl Axis {
    fn over(values: impl Iterator<Item = f64>) -> Axis {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| *v > 0.0) {
            lo = lo.min(v.log10());
            hi = hi.max(v.log10());
        }
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        let (low, mut high) = (lo.floor(), hi.ceil());
        if high <= low {
            high = low + 1.0;
        }
        Axis { low, high }
    }
}

fn label(v: f64) -> String {
    if v >= 1_000.0 {
        crate::report::thousands(v.round() as u64)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The SVG.
pub fn svg(series: &Series) -> Result<String> {
    let height = PANEL * u32::try_from(series.len()).unwrap_or(u32::MAX).max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let panels = root.split_evenly((series.len().max(1), 1));
        for ((store, phases), area) in series.iter().zip(&panels) {
            panel(store, phases, area)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(out)
}

/// One store's panel: its plot and, at the right, which line is which.
fn panel(
    store: &str,
    phases: &BTreeMap<String, BTreeMap<u64, Point>>,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> Result<()> {
    let (plot, legend) = area.split_horizontally(WIDTH - LEGEND);
    let points = || phases.values().flat_map(|p| p.values());
    let x = Axis::over(points().map(|p| p.0));
    let y = Axis::over(points().flat_map(|p| [p.1, p.2]));
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!("REST API response time against fleet size: {store}"),
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (10f64.powf(x.low)..10f64.powf(x.high)).log_scale(),
            (10f64.powf(y.low)..10f64.powf(y.high)).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("meters in the fleet")
        .y_desc("response time (ms)")
        .x_label_formatter(&|v| label(*v))
        .y_label_formatter(&|v| label(*v))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_error)?;
    for (j, (phase, line)) in phases.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let style = colour.stroke_width(2);
        let mean: Vec<(f64, f64)> = line.values().map(|p| (p.0, p.1)).collect();
        let p99: Vec<(f64, f64)> = line.values().map(|p| (p.0, p.2)).collect();
        chart
            .draw_series(LineSeries::new(mean.iter().copied(), style))
            .map_err(plot_error)?;
        chart
            .draw_series(DashedLineSeries::new(p99.iter().copied(), 6, 4, style))
            .map_err(plot_error)?;
        chart
            .draw_series(
                mean.iter()
                    .chain(&p99)
                    .map(|&xy| Circle::new(xy, 3, colour.filled())),
            )
            .map_err(plot_error)?;
        for (k, which) in ["mean", "p99"].into_iter().enumerate() {
            let top = 40 + i32::try_from(j * 2 + k).unwrap_or(0) * 18;
            if k == 0 {
                legend
                    .draw(&PathElement::new([(8, top), (34, top)], style))
                    .map_err(plot_error)?;
            } else {
                for dash in [(8, 15), (19, 26), (30, 34)] {
                    legend
                        .draw(&PathElement::new([(dash.0, top), (dash.1, top)], style))
                        .map_err(plot_error)?;
                }
            }
            legend
                .draw(&Text::new(
                    format!("{phase} {which}"),
                    (40, top - 6),
                    ("sans-serif", 12),
                ))
                .map_err(plot_error)?;
        }
    }
    Ok(())
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

/// Draws `csv` into `out`.
pub fn draw(csv: &Path, out: &Path, concurrency: Option<u32>) -> Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let series = series(&text, concurrency)?;
    std::fs::write(out, svg(&series)?).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "store,meters,phase,concurrency,mean_ms,p99_ms\n\
        postgres,1000,select_cached,16,0.5,1.5\n\
        postgres,10000,select_cached,16,0.6,1.9\n\
        postgres,10000,select_cached,64,2.0,9.0\n\
        postgres,1000,insert,16,4,12\n\
        sqlite,1000,insert,16,3,8\n";

    #[test]
    fn rows_are_grouped_by_store_and_phase_and_filtered_by_concurrency() {
        let s = series(CSV, Some(16)).expect("series");
        assert_eq!(s.len(), 2);
        let cached = &s["postgres"]["select_cached"];
        assert_eq!(cached.len(), 2);
        assert_eq!(cached[&10_000], (10_000.0, 0.6, 1.9));
        let all = series(CSV, None).expect("series");
        assert_eq!(
            all["postgres"]["select_cached"][&10_000],
            (10_000.0, 2.0, 9.0),
            "the last row counts"
        );
        assert!(series(CSV, Some(3)).is_err(), "nothing at that concurrency");
    }

    #[test]
    fn the_svg_has_a_panel_per_store_and_two_lines_per_phase() {
        let text = svg(&series(CSV, Some(16)).expect("series")).expect("drawn");
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("against fleet size").count(), 2);
        // A point per fleet size, for the mean and the p99 of each phase: 2 × 2 for
        // postgres' select_cached, 2 for its insert, 2 for sqlite's insert.
        assert_eq!(text.matches("<circle").count(), 8);
        for legend in [
            "select_cached mean",
            "select_cached p99",
            "insert mean",
            "insert p99",
        ] {
            assert!(text.contains(legend), "{legend}");
        }
        assert_eq!(text.matches("meters in the fleet").count(), 2);
        assert_eq!(text.matches("response time (ms)").count(), 2);
    }

    #[test]
    fn log_axes_cover_whole_decades() {
        let a = Axis::over([1_000.0, 100_000.0].into_iter());
        assert_eq!((a.low, a.high), (3.0, 5.0));
        let one = Axis::over([5.0].into_iter());
        assert_eq!((one.low, one.high), (0.0, 1.0));
    }
}
