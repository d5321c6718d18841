//! One consumption row as the API, the CSV export and the command present it: flat, so that a
//! JSON row and a CSV line hold the same fields under the same names.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::consumption::{Figure, Quality, Row};
use super::period::PeriodKind;

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
        }
    }
}
