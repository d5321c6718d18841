//! Meter: its details, charts over a chosen range (daily consumption, battery, the measured
//! values), its alarms and its commands with their states.

use chrono::{DateTime, Days, TimeDelta, Utc};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use warp::http::StatusCode;

use super::chart::{self, Chart, Mark};
use super::home::urlencode;
use super::{Ctx, html, layout, parse_form};
use crate::api::error::Problem;
use crate::billing::{self, Period, PeriodKind};
use crate::storage::listings::AlarmFilter;
use crate::storage::meters::Meter;
use crate::storage::readings::StoredReading;

/// The ranges a meter's charts can show, days.
pub const RANGES: [u32; 5] = [1, 7, 30, 90, 365];
const DEFAULT_DAYS: u32 = 30;
/// The most readings one page reads (a year of hourly readings).
const MAX_READINGS: i64 = 10_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Query {
    days: Option<u32>,
}

/// A series drawn from the readings: its name, unit and how a reading gives its value.
struct Measured {
    quantity: &'static str,
    unit: &'static str,
    value: fn(&StoredReading) -> Option<f64>,
}

/// Every measured value a meter page charts, when its readings carry it.
const MEASURED: [Measured; 5] = [
    Measured {
        quantity: "Battery",
        unit: "%",
        value: |r| Some(f64::from(r.battery_percent)),
    },
    Measured {
        quantity: "Voltage",
        unit: "V",
        value: |r| r.voltage_decivolts.map(|v| f64::from(v) / 10.0),
    },
    Measured {
        quantity: "Current",
        unit: "A",
        value: |r| r.current_milliamps.map(|a| a as f64 / 1000.0),
    },
    Measured {
        quantity: "Gas pressure",
        unit: "kPa",
        value: |r| r.gas_pressure_pa.map(|p| p as f64 / 1000.0),
    },
    Measured {
        quantity: "Gas temperature",
        unit: "°C",
        value: |r| {
            r.gas_temperature_centi_celsius
                .map(|t| f64::from(t) / 100.0)
        },
    },
];

/// The meter a DevEUI or serial names, or a 400 / 404.
pub(crate) async fn find(ctx: &Ctx<'_>, text: &str) -> Result<Meter, Problem> {
    let t = text.trim();
    let found = if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        ctx.state
            .store
            .meter_by_dev_eui(&t.to_ascii_lowercase())
            .await?
    } else if t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()) {
        ctx.state.store.meter_by_serial(t).await?
    } else {
        return Err(Problem::bad_field(
            "meter",
            format!("{t:?} is neither a DevEUI (16 hex digits) nor a serial (14 digits)"),
        ));
    };
    found.ok_or_else(|| Problem::not_found(format!("there is no meter {t}")))
}

/// GET /meters/{meter}
pub async fn page(
    ctx: &Ctx<'_>,
    meter: &str,
    query: &str,
) -> Result<warp::reply::Response, Problem> {
    let q: Query = parse_form(query.as_bytes())?;
    let days = q.days.unwrap_or(DEFAULT_DAYS);
    if !RANGES.contains(&days) {
        return Err(Problem::bad_field(
            "days",
            format!(
                "must be one of {}",
                RANGES.map(|d| d.to_string()).join(", ")
            ),
        ));
    }
    let m = find(ctx, meter).await?;
    let s = ctx.state;
    let now = s.now();
    let from = now - TimeDelta::days(i64::from(days));
    let readings = s
        .store
        .readings_for_meter(m.id, from, now + TimeDelta::minutes(1), MAX_READINGS)
        .await?;
    let consumption = daily_consumption(ctx, &m, days, now).await?;
    let alarms = s
        .store
        .alarms_filtered(
            &AlarmFilter {
                meter_id: Some(m.id),
                ..AlarmFilter::default()
            },
            i64::MAX,
            50,
        )
        .await?;
    let commands = s.store.commands_page(m.id, None, 20).await?;
    let here = format!("/meters/{}?days={days}", m.dev_eui);
    let mut charts = Vec::new();
    if let Some((quantity, unit, points, start, end)) = &consumption {
        charts.push(figure(&Chart {
            quantity,
            unit,
            mark: Mark::DailyBars,
            points,
            from: *start,
            to: *end,
        })?);
    }
    for measured in &MEASURED {
        let points: Vec<(DateTime<Utc>, f64)> = readings
            .iter()
            .filter_map(|r| (measured.value)(r).map(|v| (r.reading_time, v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        charts.push(figure(&Chart {
            quantity: measured.quantity,
            unit: measured.unit,
            mark: Mark::Line,
            points: &points,
            from,
            to: now,
        })?);
    }
    let body = html! {
        (details(&m, now))
        h2 #charts { "Charts" }
        form.filters method="get" action={ "/meters/" (m.dev_eui) } {
            label { "Range"
                select name="days" {
                    @for d in RANGES {
                        option value=(d) selected[d == days] {
                            @if d == 1 { "last day" } @else { "last " (d) " days" }
                        }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        @if charts.is_empty() {
            p.note { "No reading in this range." }
        }
        @for c in &charts { (c) }
        h2 { "Alarms" }
        (super::alarms::table(ctx, &alarms, &here).await?)
        p { a href={ "/alarms?meter=" (urlencode(&m.dev_eui)) } { "Every alarm of this meter" } }
        h2 #visits { "Field visits" }
        p { a href={ "/meters/" (m.dev_eui) "/inspections" } {
            @if super::inspections::may_record(ctx) { "Record a visit, or see the visits" } @else { "See the visits" }
        } }
        (super::commands::buttons(ctx, &m).await?)
        h2 #commands-heading { "Commands" }
        @if commands.is_empty() {
            p.note { "No command was sent to this meter." }
        } @else {
            div.table-wrap {
                table #commands {
                    thead { tr {
                        th scope="col" { "Kind" } th scope="col" { "State" }
                        th scope="col" { "Requested" } th scope="col" { "By" }
                        th scope="col" { "Updated" } th scope="col" class="num" { "Attempts" }
                        th scope="col" { "Result or error" }
                    } }
                    tbody {
                        @for c in &commands {
                            tr {
                                td { a href={ "/commands/" (c.id) } { (c.kind) } }
                                td { (layout::state(&c.state)) }
                                td { (layout::time(c.created_at)) }
                                td { (c.requested_by) }
                                td { (layout::time(c.updated_at)) }
                                td.num { (c.attempts) }
                                td { (c.error.as_deref().or(c.result.as_deref()).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(Some(ctx), &format!("Meter {}", m.dev_eui), body),
    ))
}

fn details(m: &Meter, now: DateTime<Utc>) -> Markup {
    html! {
        dl.facts #details {
            dt { "DevEUI" } dd { (m.dev_eui) }
            dt { "Serial" } dd { (m.serial) }
            dt { "Body number" } dd { (m.body_number) }
            dt { "User" } dd { (m.user_id) }
            dt { "Region" } dd { a href={ "/regions/" (urlencode(&m.region_id)) } { (m.region_id) } }
            dt { "Usage, mode" } dd { (m.usage_type) ", " (m.mode) }
            dt { "Status" } dd {
                (m.status)
                @if m.overdue_at.is_some_and(|t| t < now) { " · silent since " (layout::maybe_time(m.overdue_at)) }
            }
            dt { "Reports every" } dd { (m.reporting_interval_minutes) " min" }
            dt { "Last seen" } dd { (layout::maybe_time(m.last_seen_at)) }
            dt { "Battery" } dd { (layout::battery(m.battery_percent, m.battery_millivolts)) }
            dt { "Link" } dd {
                @match (m.rssi, m.snr) {
                    (Some(r), Some(s)) => { (r) " dBm, SNR " (format!("{s:.1}")) " dB" }
                    (Some(r), None) => { (r) " dBm" }
                    _ => { "—" }
                }
            }
            dt { "Firmware" } dd { (m.firmware_version.as_deref().unwrap_or("—")) }
            dt { "Clock drift" } dd {
                @match m.clock_drift_ms {
                    Some(d) => { (format!("{:.1}", d as f64 / 1000.0)) " s at " (layout::maybe_time(m.drift_measured_at)) }
                    None => { "—" }
                }
            }
        }
    }
}

/// A daily consumption series: quantity, unit, one point per day with a figure, and the
/// range of days; `None` when the meter has no register in that range.
type Daily = (
    &'static str,
    &'static str,
    Vec<(DateTime<Utc>, f64)>,
    DateTime<Utc>,
    DateTime<Utc>,
);

async fn daily_consumption(
    ctx: &Ctx<'_>,
    m: &Meter,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Option<Daily>, Problem> {
    let s = ctx.state;
    let tz = s.billing.zone(&m.region_id);
    let today = now.with_timezone(&tz).date_naive();
    let first = today
        .checked_sub_days(Days::new(u64::from(days.saturating_sub(1))))
        .unwrap_or(today);
    let periods = Period::range(PeriodKind::Day, tz, first, today + Days::new(1));
    let rows = billing::meter_rows(&s.store, m.id, &periods, s.billing.gap).await?;
    let (Some(start), Some(end)) = (periods.first(), periods.last()) else {
        return Ok(None);
    };
    let gas: Vec<_> = rows
        .iter()
        .filter_map(|r| {
            r.gas
                .as_ref()?
                .consumption
                .map(|l| (r.period.start, l as f64 / 1000.0))
        })
        .collect();
    let energy: Vec<_> = rows
        .iter()
        .filter_map(|r| {
            r.energy
                .as_ref()?
                .consumption
                .map(|wh| (r.period.start, wh as f64 / 1000.0))
        })
        .collect();
    Ok(if !gas.is_empty() {
        Some(("Daily gas", "m³", gas, start.start, end.end))
    } else if !energy.is_empty() {
        Some(("Daily energy", "kWh", energy, start.start, end.end))
    } else {
        None
    })
}

fn figure(c: &Chart<'_>) -> Result<Markup, Problem> {
    let svg = chart::svg(c).map_err(|e| Problem::internal(&e))?;
    Ok(html! {
        figure.chart data-quantity=(c.quantity) {
            figcaption { (c.quantity) " (" (c.unit) ")" }
            // Drawn by plotters from numbers and fixed labels only; nothing from outside.
            (PreEscaped(svg))
        }
    })
}
