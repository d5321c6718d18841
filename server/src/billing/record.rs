//! One consumption row as the API, the CSV export and the command present it: flat, so that a
//! JSON row and a CSV line hold the same fields under the same names.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use chrono_tz::Tz;

use super::closing::RevisionReason;
use super::consumption::{Figure, Quality, Row};
use super::period::{Period, PeriodKind};
use crate::storage::Error;
use crate::storage::billing_periods::StoredRevision;

/// A period's consumption, flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Consumption")]
pub struct ConsumptionRecord {
    /// Day, week or month.
    pub period: PeriodKind,
    /// Start, local time with its offset.
    pub period_start: DateTime<FixedOffset>,
    /// End (exclusive), local time with its offset.
    pub period_end: DateTime<FixedOffset>,
    /// Start, UTC.
    pub period_start_utc: DateTime<Utc>,
    /// End (exclusive), UTC.
    pub period_end_utc: DateTime<Utc>,
    /// The worst quality of its figures.
    pub quality: Quality,
    /// Readings dated within the period.
    pub readings: u32,
    /// Gas consumed, litres; absent unless measured or estimated.
    pub gas_litres: Option<i64>,
    /// Gas consumed, m³.
    pub gas_cubic_metres: Option<f64>,
    /// The gas register at the start, litres.
    pub gas_register_start: Option<i64>,
    /// The gas register at the end, litres.
    pub gas_register_end: Option<i64>,
    /// Electricity consumed, Wh.
    pub energy_wh: Option<i64>,
    /// Electricity consumed, kWh.
    pub energy_kwh: Option<f64>,
    /// The energy register at the start, Wh.
    pub energy_register_start: Option<i64>,
    /// The energy register at the end, Wh.
    pub energy_register_end: Option<i64>,
    /// When the period was closed: the figures above are then the published ones and never
    /// change. Absent while it is open (within `[billing] grace_days` of its end).
    pub closed_at: Option<DateTime<Utc>>,
    /// How many times readings that arrived after the close changed the figures (listed by
    /// `GET /meters/{meter}/consumption/revisions`).
    pub revisions: u32,
    /// When the latest revision was made.
    pub revised_at: Option<DateTime<Utc>>,
    /// The latest revision's quality.
    pub revised_quality: Option<Quality>,
    /// The latest revision's gas consumption, litres: what the period is now known to have
    /// consumed.
    pub revised_gas_litres: Option<i64>,
    /// The latest revision's electricity consumption, Wh.
    pub revised_energy_wh: Option<i64>,
}

fn thousandths(n: Option<i64>) -> Option<f64> {
    // Exact for any register difference below 2⁵³.
    n.map(|n| n as f64 / 1000.0)
}

impl From<&Row> for ConsumptionRecord {
    fn from(r: &Row) -> Self {
        let part = |f: Option<Figure>| {
            (
                f.and_then(|f| f.consumption),
                f.and_then(|f| f.start_register),
                f.and_then(|f| f.end_register),
            )
        };
        let (gas, gas_start, gas_end) = part(r.gas);
        let (energy, energy_start, energy_end) = part(r.energy);
        let published = r.published;
        let revised = published.and_then(|p| p.revised);
        ConsumptionRecord {
            period: r.period.kind,
            period_start: r.period.local_start(),
            period_end: r.period.local_end(),
            period_start_utc: r.period.start,
            period_end_utc: r.period.end,
            quality: r.quality,
            readings: r.readings,
            gas_litres: gas,
            gas_cubic_metres: thousandths(gas),
            gas_register_start: gas_start,
            gas_register_end: gas_end,
            energy_wh: energy,
            energy_kwh: thousandths(energy),
            energy_register_start: energy_start,
            energy_register_end: energy_end,
            closed_at: published.map(|p| p.closed_at),
            revisions: published.map_or(0, |p| p.revisions),
            revised_at: revised.map(|r| r.at),
            revised_quality: revised.map(|r| r.quality),
            revised_gas_litres: revised.and_then(|r| r.gas_litres),
            revised_energy_wh: revised.and_then(|r| r.energy_wh),
        }
    }
}

/// A revision of a closed period's figures, as the API presents it: the published figure is
/// kept; this says what a reading stored later made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ConsumptionRevision")]
pub struct RevisionRecord {
    /// Day, week or month.
    pub period: PeriodKind,
    /// The period's start, local time with its offset.
    pub period_start: DateTime<FixedOffset>,
    /// Its end (exclusive), local time with its offset.
    pub period_end: DateTime<FixedOffset>,
    /// 1 for the period's first revision, and so on.
    pub revision: u32,
    /// When it was made.
    pub revised_at: DateTime<Utc>,
    /// Why.
    pub reason: RevisionReason,
    /// `lateReading`: the time of the earliest reading, stored after the close, that changed
    /// the figures; `readingsDeleted`: the start of the deleted range within the period.
    pub reading_time: DateTime<Utc>,
    /// The quality before this revision (the published one for revision 1).
    pub old_quality: Quality,
    /// Gas consumed before this revision, litres.
    pub old_gas_litres: Option<i64>,
    /// Electricity consumed before this revision, Wh.
    pub old_energy_wh: Option<i64>,
    /// The quality now.
    pub quality: Quality,
    /// Readings dated within the period now.
    pub readings: u32,
    /// Gas consumed, litres, now.
    pub gas_litres: Option<i64>,
    /// The gas register at the start, litres, now.
    pub gas_register_start: Option<i64>,
    /// The gas register at the end, litres, now.
    pub gas_register_end: Option<i64>,
    /// Electricity consumed, Wh, now.
    pub energy_wh: Option<i64>,
    /// The energy register at the start, Wh, now.
    pub energy_register_start: Option<i64>,
    /// The energy register at the end, Wh, now.
    pub energy_register_end: Option<i64>,
}

impl RevisionRecord {
    /// The record of a stored revision, its period placed in `tz`.
    pub fn new(r: &StoredRevision, tz: Tz) -> crate::storage::Result<RevisionRecord> {
        let corrupt = |what: &str, text: &str| Error::Corrupt(format!("{what} {text:?}"));
        let kind = PeriodKind::parse(&r.kind).ok_or_else(|| corrupt("period kind", &r.kind))?;
        let quality = |q: &str| Quality::parse(q).ok_or_else(|| corrupt("quality", q));
        let period = Period::containing(kind, tz, r.first_day);
        Ok(RevisionRecord {
            period: kind,
            period_start: period.local_start(),
            period_end: period.local_end(),
            revision: u32::try_from(r.revision).unwrap_or(0),
            revised_at: r.revised_at,
            reason: RevisionReason::parse(&r.reason).ok_or_else(|| corrupt("reason", &r.reason))?,
            reading_time: r.reading_time,
            old_quality: quality(&r.old_quality)?,
            old_gas_litres: r.old_gas_litres,
            old_energy_wh: r.old_energy_wh,
            quality: quality(&r.figures.quality)?,
            readings: u32::try_from(r.figures.readings).unwrap_or(0),
            gas_litres: r.figures.gas_litres,
            gas_register_start: r.figures.gas_register_start,
            gas_register_end: r.figures.gas_register_end,
            energy_wh: r.figures.energy_wh,
            energy_register_start: r.figures.energy_register_start,
            energy_register_end: r.figures.energy_register_end,
        })
    }
}
