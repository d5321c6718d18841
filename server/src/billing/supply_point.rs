//! A supply point's consumption across the meters that served it: each installation period
//! contributes its meter's consumption over the part of a period it covers, bounded by the
//! installation's opening and closing registers when they are known, so that a meter swapped
//! mid-month bills the old meter's part up to the swap and the new meter's from it. Pure:
//! installations and readings in, figures out; [`rows`] reads them from the store.

use chrono::{DateTime, TimeDelta, Utc};

use super::consumption::{self, Figure, MeterSeries, Quality, Registers, Row};
use super::period::Period;
use crate::storage::lifecycle::Installation;
use crate::storage::{self, Store};

/// One installation period with its meter's readings around it.
#[derive(Debug, Clone)]
pub struct Stint {
    /// The meter.
    pub meter_id: i64,
    /// Since when the meter served the supply point.
    pub from: DateTime<Utc>,
    /// Until when; `None` while it still does.
    pub to: Option<DateTime<Utc>>,
    /// The series of its readings within the period, bounded by the installation's
    /// registers (see [`Stint::new`]).
    series: MeterSeries,
    /// The times of its readings within the period, for counting.
    times: Vec<DateTime<Utc>>,
}

impl Stint {
    /// The stint of `installation` over `readings` (the meter's, in time order, around the
    /// installation). A known opening register stands as a reading at the installation's
    /// start, a known closing register as one at its end, and readings beyond them are not the
    /// supply point's: a meter's register before it was installed here (or after it left)
    /// says nothing of this supply point's consumption. The registers are the gas register's
    /// when the meter reads gas, else the energy register's, as installations store them.
    pub fn new(installation: &Installation, readings: &[Registers]) -> Stint {
        let (from, to) = (installation.installed_at, installation.removed_at);
        let gas = readings.iter().any(|r| r.gas_litres.is_some())
            || readings.iter().all(|r| r.energy_wh.is_none());
        let bound = |at: DateTime<Utc>, value: i64| Registers {
            at,
            gas_litres: gas.then_some(value),
            energy_wh: (!gas).then_some(value),
        };
        let mut kept: Vec<Registers> = Vec::with_capacity(readings.len() + 2);
        if let Some(opening) = installation.opening_register {
            kept.push(bound(from, opening));
        }
        kept.extend(readings.iter().copied().filter(|r| {
            (installation.opening_register.is_none() || r.at > from)
                && (installation.closing_register.is_none() || to.is_none_or(|to| r.at < to))
        }));
        if let (Some(to), Some(closing)) = (to, installation.closing_register) {
            kept.push(bound(to, closing));
        }
        let times = readings
            .iter()
            .map(|r| r.at)
            .filter(|t| *t >= from && to.is_none_or(|to| *t < to))
            .collect();
        Stint {
            meter_id: installation.meter_id,
            from,
            to,
            series: MeterSeries::new(&kept),
            times,
        }
    }

    /// The part of `period` the stint covers, if any.
    fn within(&self, period: &Period) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = period.start.max(self.from);
        let end = self.to.map_or(period.end, |to| period.end.min(to));
        (start < end).then_some((start, end))
    }

    /// The stint's figures over [start, end).
    fn part(
        &self,
        period: &Period,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        gap: TimeDelta,
    ) -> Part {
        let figure = |s: &consumption::Series| (!s.is_empty()).then(|| s.figure(start, end, gap));
        let (gas, energy) = (figure(self.series.gas()), figure(self.series.energy()));
        let quality = [gas, energy]
            .iter()
            .flatten()
            .map(|f| f.quality)
            .max()
            .unwrap_or(Quality::Incomplete);
        let readings =
            self.times.partition_point(|t| *t < end) - self.times.partition_point(|t| *t < start);
        Part {
            meter_id: self.meter_id,
            start,
            end,
            row: Row {
                period: *period,
                gas,
                energy,
                quality,
                readings: u32::try_from(readings).unwrap_or(u32::MAX),
                published: None,
            },
        }
    }
}

/// One meter's part of a supply point's period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    /// The meter.
    pub meter_id: i64,
    /// The part's start: the period's, or the installation's when later.
    pub start: DateTime<Utc>,
    /// The part's end: the period's, or the installation's when earlier.
    pub end: DateTime<Utc>,
    /// The meter's figures over [start, end) (its `period` is the whole period).
    pub row: Row,
}

/// A supply point's period: the sum of its meters' parts, and the parts.
#[derive(Debug, Clone, PartialEq)]
pub struct SupplyRow {
    /// The figures: each register's consumption summed over the parts, the registers at the
    /// start of the first part and the end of the last, the worst quality of any part.
    pub row: Row,
    /// Each meter's part, in time order.
    pub parts: Vec<Part>,
}

/// The sum of one register's figures over the parts: `None` when no part's meter has the
/// register; `incomplete` when one part has none, or begins after the period does with no
/// part before it (the supply point had no meter yet).
fn summed(figures: &[Option<Figure>], uncovered_start: bool) -> Option<Figure> {
    if figures.iter().all(Option::is_none) {
        return None;
    }
    let start_register = figures
        .first()
        .copied()
        .flatten()
        .and_then(|f| f.start_register);
    let end_register = figures
        .last()
        .copied()
        .flatten()
        .and_then(|f| f.end_register);
    let known: Option<Vec<Figure>> = figures.iter().copied().collect();
    let incomplete = Figure {
        consumption: None,
        start_register,
        end_register,
        quality: Quality::Incomplete,
    };
    let Some(known) = known.filter(|_| !uncovered_start) else {
        return Some(incomplete);
    };
    let quality = known
        .iter()
        .map(|f| f.quality)
        .max()
        .unwrap_or(Quality::Incomplete);
    let consumption: Option<i64> = known.iter().map(|f| f.consumption).sum();
    Some(match consumption {
        Some(c) if quality <= Quality::Estimated => Figure {
            consumption: Some(c),
            start_register,
            end_register,
            quality,
        },
        _ => Figure {
            quality: quality.max(Quality::Incomplete),
            ..incomplete
        },
    })
}

/// The supply point's row for `period`, from its `stints` (in time order) and the time its
/// first meter was installed (`None`: it never had one).
pub fn row(
    stints: &[Stint],
    first_installed: Option<DateTime<Utc>>,
    period: &Period,
    gap: TimeDelta,
) -> SupplyRow {
    let parts: Vec<Part> = stints
        .iter()
        .filter_map(|s| s.within(period).map(|span| s.part(period, span, gap)))
        .collect();
    // Before its first meter a supply point's consumption is unknown, not zero; between
    // two installations (no meter) it is zero.
    let uncovered_start = first_installed.is_none_or(|f| f > period.start);
    let gas = summed(
        &parts.iter().map(|p| p.row.gas).collect::<Vec<_>>(),
        uncovered_start,
    );
    let energy = summed(
        &parts.iter().map(|p| p.row.energy).collect::<Vec<_>>(),
        uncovered_start,
    );
    let quality = [gas, energy]
        .iter()
        .flatten()
        .map(|f| f.quality)
        .max()
        .unwrap_or(Quality::Incomplete);
    SupplyRow {
        row: Row {
            period: *period,
            gas,
            energy,
            quality,
            readings: parts.iter().map(|p| p.row.readings).sum(),
            published: None,
        },
        parts,
    }
}

/// A supply point's rows for `periods` (consecutive, in order, of one kind), from its
/// `installations` (oldest first), reading each meter's registers around the periods.
pub async fn rows(
    store: &Store,
    installations: &[Installation],
    periods: &[Period],
    gap: TimeDelta,
) -> storage::Result<Vec<SupplyRow>> {
    let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
        return Ok(Vec::new());
    };
    let (from, to) = consumption::needed(first.start, last.end, gap);
    let mut stints = Vec::new();
    for i in installations {
        // Only the installations that overlap the periods (with the gap around them).
        if i.installed_at > to || i.removed_at.is_some_and(|r| r < from) {
            continue;
        }
        let readings: Vec<Registers> = store
            .registers(i.meter_id, from, to)
            .await?
            .into_iter()
            .map(Registers::from)
            .collect();
        stints.push(Stint::new(i, &readings));
    }
    let first_installed = installations.iter().map(|i| i.installed_at).min();
    Ok(periods
        .iter()
        .map(|p| row(&stints, first_installed, p, gap))
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::billing::period::PeriodKind;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    fn installation(
        meter_id: i64,
        from: &str,
        to: Option<&str>,
        opening: Option<i64>,
        closing: Option<i64>,
    ) -> Installation {
        Installation {
            id: meter_id,
            supply_point_id: 1,
            meter_id,
            installed_at: t(from),
            removed_at: to.map(t),
            opening_register: opening,
            closing_register: closing,
            region_id: "north".into(),
            user_id: "customer-1".into(),
            usage_type: "residential".into(),
            address: None,
        }
    }

    /// Daily gas readings at midnight UTC from `from` for `days` days, `first` litres and
    /// `per_day` more each day.
    fn daily(from: &str, days: i64, first: i64, per_day: i64) -> Vec<Registers> {
        (0..days)
            .map(|d| Registers {
                at: t(from) + TimeDelta::days(d),
                gas_litres: Some(first + per_day * d),
                energy_wh: None,
            })
            .collect()
    }

    fn may() -> Period {
        Period::containing(
            PeriodKind::Month,
            chrono_tz::UTC,
            NaiveDate::from_ymd_opt(2026, 5, 1).expect("date"),
        )
    }

    #[test]
    fn a_month_with_a_swap_is_the_old_meters_part_plus_the_new_ones() {
        let gap = TimeDelta::days(7);
        // The old meter: 100 l a day, 1 100 l on May 1st, taken out on May 15th at noon at
        // 2 550 l (its readings after that, in the workshop, are not this supply point's).
        let old = installation(
            1,
            "2026-04-01T00:00:00Z",
            Some("2026-05-15T12:00:00Z"),
            None,
            Some(2_550),
        );
        let old_readings = daily("2026-04-20T00:00:00Z", 40, 0, 100);
        // The new meter: put in at 7 l, 10 l a day from May 16th.
        let new = installation(2, "2026-05-15T12:00:00Z", None, Some(7), None);
        let new_readings = daily("2026-05-16T00:00:00Z", 30, 12, 10);
        let stints = [
            Stint::new(&old, &old_readings),
            Stint::new(&new, &new_readings),
        ];
        let first = Some(t("2026-04-01T00:00:00Z"));
        let r = row(&stints, first, &may(), gap);
        let [a, b] = r.parts.as_slice() else {
            panic!("two parts: {:?}", r.parts);
        };
        // Old: register 1 100 on May 1st (11 days after April 20th) to 2 550 at the swap.
        let old_part = a.row.gas.expect("gas");
        assert_eq!(
            (
                old_part.start_register,
                old_part.end_register,
                old_part.consumption
            ),
            (Some(1_100), Some(2_550), Some(1_450))
        );
        assert_eq!(old_part.quality, Quality::Measured);
        // New: 7 at the swap to 12 + 10 × 16 = 172 on June 1st.
        let new_part = b.row.gas.expect("gas");
        assert_eq!(
            (
                new_part.start_register,
                new_part.end_register,
                new_part.consumption
            ),
            (Some(7), Some(172), Some(165))
        );
        let gas = r.row.gas.expect("gas");
        assert_eq!(gas.consumption, Some(1_450 + 165));
        assert_eq!(
            (gas.start_register, gas.end_register),
            (Some(1_100), Some(172))
        );
        assert_eq!(r.row.quality, Quality::Measured);
        assert_eq!(r.row.readings, 15 + 16);
        assert_eq!(
            (a.start, a.end, b.start, b.end),
            (
                may().start,
                t("2026-05-15T12:00:00Z"),
                t("2026-05-15T12:00:00Z"),
                may().end
            )
        );
    }

    #[test]
    fn without_registers_the_parts_come_from_the_readings() {
        let gap = TimeDelta::days(7);
        let old = installation(
            1,
            "2026-04-01T00:00:00Z",
            Some("2026-05-15T00:00:00Z"),
            None,
            None,
        );
        let new = installation(2, "2026-05-15T00:00:00Z", None, None, None);
        let stints = [
            Stint::new(&old, &daily("2026-04-20T00:00:00Z", 40, 0, 100)),
            Stint::new(&new, &daily("2026-05-15T00:00:00Z", 30, 0, 10)),
        ];
        let r = row(&stints, Some(t("2026-04-01T00:00:00Z")), &may(), gap);
        // Old: 1 100 → 2 500 (May 15th, read); new: 0 → 170.
        assert_eq!(r.row.gas.and_then(|g| g.consumption), Some(1_400 + 170));
    }

    #[test]
    fn a_period_before_the_first_meter_or_a_part_without_figures_is_incomplete() {
        let gap = TimeDelta::days(7);
        let late = installation(1, "2026-05-10T00:00:00Z", None, Some(0), None);
        let stints = [Stint::new(&late, &daily("2026-05-10T00:00:00Z", 30, 0, 10))];
        let r = row(&stints, Some(t("2026-05-10T00:00:00Z")), &may(), gap);
        assert_eq!(r.row.quality, Quality::Incomplete);
        assert_eq!(r.row.gas.and_then(|g| g.consumption), None);
        // A new meter silent since it was put in.
        let old = installation(
            1,
            "2026-04-01T00:00:00Z",
            Some("2026-05-15T00:00:00Z"),
            None,
            Some(2_500),
        );
        let new = installation(2, "2026-05-15T00:00:00Z", None, Some(0), None);
        let stints = [
            Stint::new(&old, &daily("2026-04-20T00:00:00Z", 25, 0, 100)),
            Stint::new(&new, &[]),
        ];
        let r = row(&stints, Some(t("2026-04-01T00:00:00Z")), &may(), gap);
        assert_eq!(r.row.quality, Quality::Incomplete);
        assert_eq!(r.parts[0].row.gas.and_then(|g| g.consumption), Some(1_400));
    }
}
