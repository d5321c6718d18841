//! Charts drawn on the server as SVG (plotters' SVG backend: no bitmap, font or system
//! library), each with its axes labelled and its unit named.

use chrono::{DateTime, TimeDelta, Utc};
use plotters::prelude::*;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mark {
    /// Points joined by a line, each point a circle.
    Line,
    /// One bar per point, a day wide (daily figures).
    DailyBars,
}

/// One series over a time range.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// What is measured, e.g. "Battery".
    pub quantity: &'a str,
    /// Its unit, e.g. "%".
    pub unit: &'a str,
    /// How it is drawn.
    pub mark: Mark,
    /// The points, oldest first.
    pub points: &'a [(DateTime<Utc>, f64)],
    /// The range shown.
    pub from: DateTime<Utc>,
    /// Its end.
    pub to: DateTime<Utc>,
}

/// The most points a chart draws: beyond that a phone's screen shows no more, and the page
/// would only grow.
pub const MAX_POINTS: usize = 600;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 280;

/// At most [`MAX_POINTS`] of `points`, evenly spaced, the last always kept.
pub fn thin(points: &[(DateTime<Utc>, f64)]) -> Vec<(DateTime<Utc>, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let step = points.len().div_ceil(MAX_POINTS);
    let mut out: Vec<_> = points.iter().step_by(step).copied().collect();
    if let (Some(last), Some(kept)) = (points.last(), out.last())
        && last.0 != kept.0
    {
        out.push(*last);
    }
    out
}

/// The chart as an `<svg>` element (scaled to its container by its `viewBox`).
pub fn svg(c: &Chart<'_>) -> Result<String, String> {
    let points = thin(c.points);
    let x0 = c.from.timestamp();
    let x1 = c.to.timestamp().max(x0 + 1);
    let (mut lo, mut hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| {
            (lo.min(*y), hi.max(*y))
        });
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if c.mark == Mark::DailyBars {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { 1.0 };
    let (y0, y1) = (
        if c.mark == Mark::DailyBars && lo >= 0.0 {
            0.0
        } else {
            lo - pad
        },
        hi + pad,
    );
    let span = c.to - c.from;
    let format = if span > TimeDelta::days(2) {
        "%m-%d"
    } else {
        "%H:%M"
    };
    let x_label = |s: &i64| {
        DateTime::from_timestamp(*s, 0).map_or_else(String::new, |t| t.format(format).to_string())
    };
    let y_desc = format!("{} ({})", c.quantity, c.unit);
    let x_desc = if span > TimeDelta::days(2) {
        "Date (UTC)"
    } else {
        "Time (UTC)"
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter(&x_label)
            .x_desc(x_desc)
            .y_desc(y_desc.as_str())
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        let ink = RGBColor(0x1f, 0x4e, 0x8c);
        let as_x = |t: &DateTime<Utc>| t.timestamp().clamp(x0, x1);
        match c.mark {
            Mark::Line => {
                chart
                    .draw_series(LineSeries::new(
                        points.iter().map(|(t, y)| (as_x(t), *y)),
                        ink.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|(t, y)| Circle::new((as_x(t), *y), 3, ink.filled())),
                    )
                    .map_err(|e| e.to_string())?;
            }
            Mark::DailyBars => {
                let width = (TimeDelta::days(1).num_seconds() * 4) / 5;
                chart
                    .draw_series(points.iter().map(|(t, y)| {
                        let x = as_x(t);
                        Rectangle::new([(x, 0.0), ((x + width).min(x1), *y)], ink.filled())
                    }))
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(accessible(&out, &y_desc, points.len()))
}

/// Makes the drawn `<svg>` scale with the page and tells screen readers what it shows.
fn accessible(svg: &str, what: &str, points: usize) -> String {
    let label = format!("{what}: {points} points");
    let escaped: String = label
        .chars()
        .map(|ch| match ch {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" aria-label=\"{escaped}\" data-points=\"{points}\" \
             preserveAspectRatio=\"xMidYMid meet\" "
        ),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + n * 86_400, 0).expect("time")
    }

    #[test]
    fn a_line_chart_draws_every_point_and_names_its_unit() {
        let points: Vec<_> = (0..5).map(|n| (day(n), 50.0 + n as f64)).collect();
        let svg = svg(&Chart {
            quantity: "Battery",
            unit: "%",
            mark: Mark::Line,
            points: &points,
            from: day(0),
            to: day(5),
        })
        .expect("drawn");
        assert!(svg.starts_with("<svg role=\"img\""), "{}", &svg[..80]);
        assert!(svg.contains("viewBox"), "scales with the page");
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("Battery (%)"));
        assert!(svg.contains("Date (UTC)"));
        assert!(svg.contains("data-points=\"5\""));
    }

    #[test]
    fn daily_bars_start_at_zero() {
        let points: Vec<_> = (0..3).map(|n| (day(n), 2.5 * n as f64 + 1.0)).collect();
        let svg = svg(&Chart {
            quantity: "Gas",
            unit: "m³",
            mark: Mark::DailyBars,
            points: &points,
            from: day(0),
            to: day(3),
        })
        .expect("drawn");
        // The background and one rectangle per day.
        assert!(svg.matches("<rect").count() >= 3, "{svg}");
        assert!(svg.contains("Gas (m³)"));
        let labels: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| t.rsplit('>').next().map(str::trim))
            .collect();
        assert!(
            labels.iter().any(|l| *l == "0" || *l == "0.0"),
            "the axis starts at 0: {labels:?}"
        );
    }

    #[test]
    fn an_empty_or_flat_series_still_draws_its_axes() {
        for points in [vec![], vec![(day(1), 7.0), (day(2), 7.0)]] {
            let svg = svg(&Chart {
                quantity: "Voltage",
                unit: "V",
                mark: Mark::Line,
                points: &points,
                from: day(0),
                to: day(3),
            })
            .expect("drawn");
            assert!(svg.contains("Voltage (V)"));
            assert_eq!(svg.matches("<circle").count(), points.len());
        }
    }

    #[test]
    fn long_series_are_thinned_keeping_the_last_point() {
        let points: Vec<_> = (0..2_000)
            .map(|n| (day(0) + TimeDelta::minutes(n), n as f64))
            .collect();
        let thinned = thin(&points);
        assert!(thinned.len() <= MAX_POINTS + 1, "{}", thinned.len());
        assert_eq!(thinned.first(), points.first());
        assert_eq!(thinned.last(), points.last());
        assert_eq!(thin(&points[..10]), points[..10].to_vec());
    }
}
