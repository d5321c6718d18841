//! Billing data: consumption per day, ISO week and month in the utility's time zone, from the
//! cumulative registers of the readings. `period` holds the calendar, `consumption` the pure
//! computation from readings to figures; this module reads what they need from the store.

pub mod consumption;
pub mod export;
pub mod period;
pub mod record;

#[cfg(test)]
mod properties;

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::TimeDelta;
use chrono_tz::Tz;

pub use consumption::{Figure, MeterSeries, Quality, Registers, Row};
pub use period::{Period, PeriodKind};
pub use record::ConsumptionRecord;

use crate::config::{BillingSettings, UtilitySettings};
use crate::storage::billing::RegisterRow;
use crate::storage::{self, Store};

/// The billing calendar: time zones and the interpolation gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// The utility's time zone.
    pub time_zone: Tz,
    /// Regions billed in another zone.
    pub region_zones: BTreeMap<String, Tz>,
    /// Longest span between two readings across which a boundary is interpolated.
    pub gap: TimeDelta,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::new(&UtilitySettings::default(), &BillingSettings::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl Calendar {
    /// The calendar of the settings; an unknown zone name is an error.
    pub fn new(utility: &UtilitySettings, billing: &BillingSettings) -> anyhow::Result<Calendar> {
        let zone = |name: &str| {
            name.parse::<Tz>()
                .map_err(|_| anyhow::anyhow!("{name:?} is not an IANA time zone"))
        };
        let mut region_zones = BTreeMap::new();
        for (region, name) in &billing.region_time_zones {
            region_zones.insert(
                region.clone(),
                zone(name).with_context(|| format!("billing.region_time_zones.{region}"))?,
            );
        }
        Ok(Calendar {
            time_zone: zone(&utility.time_zone).context("utility.time_zone")?,
            region_zones,
            gap: TimeDelta::days(i64::from(billing.gap_days)),
        })
    }

    /// The time zone a region is billed in.
    pub fn zone(&self, region: &str) -> Tz {
        self.region_zones
            .get(region)
            .copied()
            .unwrap_or(self.time_zone)
    }
}

impl From<RegisterRow> for Registers {
    fn from(r: RegisterRow) -> Registers {
        Registers {
            at: r.reading_time,
            gas_litres: r.gas_volume_litres,
            energy_wh: r.energy_wh,
        }
    }
}

/// One meter's rows for `periods` (consecutive, in order), reading only the readings they
/// need.
pub async fn meter_rows(
    store: &Store,
    meter_id: i64,
    periods: &[Period],
    gap: TimeDelta,
) -> storage::Result<Vec<Row>> {
    let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
        return Ok(Vec::new());
    };
    let (from, to) = consumption::needed(first.start, last.end, gap);
    let readings: Vec<Registers> = store
        .registers(meter_id, from, to)
        .await?
        .into_iter()
        .map(Registers::from)
        .collect();
    Ok(MeterSeries::new(&readings).rows(periods, gap))
}
