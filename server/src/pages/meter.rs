//! Meter: its details, charts over a chosen range (daily consumption, battery, the measured
//! values), its alarms and its commands with their states.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, TimeDelta, Utc};
use maud::{Markup, PreEscaped, html};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;

use super::chart::{self, Chart, Mark};
use super::home::urlencode;
use super::reads::{Fresh, cached};
use super::{Ctx, html, layout, parse_form};
use crate::api::error::Problem;
use crate::billing::{self, Period, PeriodKind};
use crate::cache::Tag;
use crate::storage::alarms::Alarm;
use crate::storage::commands::CommandRow;
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
    let shaped = (t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        || (t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()));
    if !shaped {
        return Err(Problem::bad_field(
            "meter",
            format!("{t:?} is neither a DevEUI (16 hex digits) nor a serial (14 digits)"),
        ));
    }
    lookup(ctx, t)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no meter {t}")))
}

/// The meter with this DevEUI (16 hex digits) or else serial, by their unique indexes, cached
/// under the meter (a write to it changes it; so does its falling silent), or, when there is
/// none, under anything (an install may add it).
pub(crate) async fn lookup(ctx: &Ctx<'_>, text: &str) -> Result<Option<Meter>, Problem> {
    let dev_eui = text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
    let text = if dev_eui {
        text.to_ascii_lowercase()
    } else {
        text.to_owned()
    };
    cached(ctx, format!("meter|{}", urlencode(&text)), || async {
        let store = &ctx.state.store;
        let found = if dev_eui {
            store.meter_by_dev_eui(&text).await?
        } else {
            store.meter_by_serial(&text).await?
        };
        let now = ctx.state.now();
        Ok(match found {
            Some(m) => {
                let until = m.overdue_at.filter(|t| *t >= now);
                Fresh::new(Some(m.clone()), vec![Tag::Meter(m.id)]).until(until)
            }
            None => Fresh::new(None, vec![Tag::All]),
        })
    })
    .await
}

/// A series to chart, as cached: at most [`chart::MAX_POINTS`] points.
#[derive(Serialize, Deserialize)]
struct Series {
    quantity: String,
    unit: String,
    mark: Mark,
    points: Vec<(DateTime<Utc>, f64)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// The newest commands a meter's page shows; the rest are a link away.
const NEWEST_COMMANDS: i64 = 20;

/// What a meter's page shows besides the meter: all of it changed only by writes to the meter.
#[derive(Serialize, Deserialize)]
struct MeterData {
    series: Vec<Series>,
    alarms: Vec<Alarm>,
    commands: Vec<CommandRow>,
}

/// The charts' series (thinned), alarms and commands of meter `m` over the `days` before
/// `to`, cached under the meter; `to` is the next whole minute, part of the key, so that an
/// entry is not shown once the range has moved on.
async fn meter_data(
    ctx: &Ctx<'_>,
    m: &Meter,
    days: u32,
    to: DateTime<Utc>,
) -> Result<MeterData, Problem> {
    let key = format!("meter-page|{}|{days}|{}", m.id, to.timestamp());
    cached(ctx, key, || async {
        let s = ctx.state;
        let from = to - TimeDelta::days(i64::from(days));
        let readings = s
            .store
            .readings_for_meter(m.id, from, to, MAX_READINGS)
            .await?;
        let mut series = Vec::new();
        if let Some((quantity, unit, points, start, end)) =
            daily_consumption(ctx, m, days, s.now()).await?
        {
            series.push(Series {
                quantity: quantity.to_owned(),
                unit: unit.to_owned(),
                mark: Mark::DailyBars,
                points: chart::thin(&points),
                from: start,
                to: end,
            });
        }
        for measured in &MEASURED {
            let points: Vec<(DateTime<Utc>, f64)> = readings
                .iter()
                .filter_map(|r| (measured.value)(r).map(|v| (r.reading_time, v)))
                .collect();
            if points.is_empty() {
                continue;
            }
            series.push(Series {
                quantity: measured.quantity.to_owned(),
                unit: measured.unit.to_owned(),
                mark: Mark::Line,
                points: chart::thin(&points),
                from,
                to,
            });
        }
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
        let commands = s.store.commands_page(m.id, None, NEWEST_COMMANDS).await?;
        Ok(Fresh::new(
            MeterData {
                series,
                alarms,
                commands,
            },
            vec![Tag::Meter(m.id)],
        )
        .until(Some(to)))
    })
    .await
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
    let now = ctx.state.now();
    let to = crate::api::input::next_minute(now);
    let MeterData {
        series,
        alarms,
        commands,
    } = meter_data(ctx, &m, days, to).await?;
    let here = format!("/meters/{}?days={days}", m.dev_eui);
    let charts = series
        .iter()
        .map(|c| {
            figure(&Chart {
                quantity: &c.quantity,
                unit: &c.unit,
                mark: c.mark,
                points: &c.points,
                from: c.from,
                to: c.to,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let devices = BTreeMap::from([(m.id, m.dev_eui.clone())]);
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
        (super::alarms::table(ctx, &alarms, &devices, &here))
        p { a href={ "/alarms?meter=" (urlencode(&m.dev_eui)) } { "Every alarm of this meter" } }
        h2 #visits { "Field visits" }
        p { a href={ "/meters/" (m.dev_eui) "/inspections" } {
            @if super::inspections::may_record(ctx) { "Record a visit, or see the visits" } @else { "See the visits" }
        } }
        @if super::change::may_change(ctx) || super::delete::may_delete(ctx) {
            h2 #manage { "Manage" }
            ul.actions #manage-links {
                @if super::change::may_change(ctx) {
                    li { a.button #change-link href={ "/meters/" (m.dev_eui) "/change" } { "Change details…" } }
                }
                @if super::delete::may_delete(ctx) {
                    li { a.button.secondary #delete-link href={ "/meters/" (m.dev_eui) "/delete" } { "Delete data…" } }
                }
            }
        }
        (super::commands::buttons(ctx, &m).await?)
        h2 #commands-heading { "Commands" }
        (super::command_list::table(&commands))
        p { a #every-command href={ "/meters/" (urlencode(&m.dev_eui)) "/commands" } { "Every command of this meter" } }
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
