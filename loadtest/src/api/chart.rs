//! The chart of the REST figures: mean and p99 response time against fleet size, one line per
//! phase, one panel per store, drawn as plain SVG from the CSV the `api` scenario appends to.
//! Both axes are logarithmic: fleets and response times each span decades.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// A point: fleet size, mean and p99 response time (ms).
type Point = (f64, f64, f64);

/// Lines by store, then phase; points by fleet size.
type Series = BTreeMap<String, BTreeMap<String, BTreeMap<u64, Point>>>;

const WIDTH: f64 = 760.0;
const PANEL: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
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

    /// Where `v` falls, 0 to 1.
    fn at(&self, v: f64) -> f64 {
        (v.max(1e-9).log10() - self.low) / (self.high - self.low)
    }

    fn decades(&self) -> impl Iterator<Item = f64> {
        (self.low as i32..=self.high as i32).map(|e| 10f64.powi(e))
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
pub fn svg(series: &Series) -> String {
    let height = TOP + series.len() as f64 * (PANEL + BOTTOM + TOP);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    for (i, (store, phases)) in series.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + BOTTOM + TOP);
        let points = || phases.values().flat_map(|p| p.values());
        let x = Axis::over(points().map(|p| p.0));
        let y = Axis::over(points().flat_map(|p| [p.1, p.2]));
        let px = |v: f64| LEFT + x.at(v) * plot_w;
        let py = |v: f64| top + PANEL - y.at(v) * PANEL;
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"14\">REST API response time against fleet size: {store}</text>",
            top - 12.0
        );
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{plot_w}\" height=\"{PANEL}\" fill=\"none\" stroke=\"#888\"/>"
        );
        for v in x.decades() {
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
                px(v),
                top + PANEL,
                top + PANEL + 16.0,
                label(v)
            );
        }
        for v in y.decades() {
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
                py(v),
                LEFT + plot_w,
                LEFT - 6.0,
                py(v) + 4.0,
                label(v)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">meters in the fleet</text>\
             <text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">ms</text>",
            LEFT + plot_w / 2.0,
            top + PANEL + 36.0,
            top + PANEL / 2.0,
            top + PANEL / 2.0
        );
        for (j, (phase, line)) in phases.iter().enumerate() {
            let colour = COLOURS[j % COLOURS.len()];
            for (which, dash, pick) in [
                ("mean", "", 1usize),
                ("p99", " stroke-dasharray=\"6 4\"", 2),
            ] {
                let coords: Vec<String> = line
                    .values()
                    .map(|p| {
                        let v = if pick == 1 { p.1 } else { p.2 };
                        format!("{:.1},{:.1}", px(p.0), py(v))
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                    coords.join(" ")
                );
                for c in &coords {
                    let (cx, cy) = c.split_once(',').unwrap_or_default();
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{colour}\"/>"
                    );
                }
                let ly = top + 14.0 + (j * 2 + usize::from(pick == 2)) as f64 * 18.0;
                let lx = LEFT + plot_w + 14.0;
                let _ = writeln!(
                    s,
                    "<line x1=\"{lx:.1}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\
                     <text x=\"{2:.1}\" y=\"{3:.1}\">{phase} {which}</text>",
                    ly,
                    lx + 26.0,
                    lx + 32.0,
                    ly + 4.0
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Draws `csv` into `out`.
pub fn draw(csv: &Path, out: &Path, concurrency: Option<u32>) -> Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let series = series(&text, concurrency)?;
    std::fs::write(out, svg(&series)).with_context(|| format!("writing {}", out.display()))?;
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
        let text = svg(&series(CSV, Some(16)).expect("series"));
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("against fleet size").count(), 2);
        assert_eq!(text.matches("<polyline").count(), 2 * 3);
        assert!(text.contains("select_cached p99"));
    }

    #[test]
    fn log_axes_cover_whole_decades() {
        let a = Axis::over([1_000.0, 100_000.0].into_iter());
        assert_eq!((a.low, a.high), (3.0, 5.0));
        assert!((a.at(10_000.0) - 0.5).abs() < 1e-9);
        let one = Axis::over([5.0].into_iter());
        assert_eq!((one.low, one.high), (0.0, 1.0));
    }
}
