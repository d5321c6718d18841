//! What a supply point's operations answer: a replacement.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::api::routes::Example;
use crate::storage::lifecycle::Installation;
use crate::storage::replace::Replaced;

/// A replacement done: the old meter's installation closed at its final register, the new
/// meter's opened at its opening register, at the same instant.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Replaced")]
pub struct ReplacedView {
    /// The supply point.
    pub supply_point_id: i64,
    /// The meter taken out (now `removed`, in stock), by DevEUI.
    pub old_meter: String,
    /// The meter put in (now `in_service`), by DevEUI.
    pub new_meter: String,
    /// The old meter's installation, closed.
    pub closed: Installation,
    /// The new meter's installation, open.
    pub opened: Installation,
}

impl ReplacedView {
    /// The view of a replacement.
    pub fn new(r: Replaced) -> ReplacedView {
        ReplacedView {
            supply_point_id: r.opened.supply_point_id,
            old_meter: r.old_dev_eui,
            new_meter: r.new_dev_eui,
            closed: r.closed,
            opened: r.opened,
        }
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

impl Example for ReplacedView {
    fn example() -> Self {
        let closed = Installation {
            id: 1,
            supply_point_id: 1,
            meter_id: 1,
            installed_at: at("2026-01-15T08:00:00Z"),
            removed_at: Some(at("2026-03-02T09:30:00Z")),
            opening_register: Some(0),
            closing_register: Some(3_000),
            region_id: "north".into(),
            user_id: "customer-1042".into(),
            usage_type: "residential".into(),
            address: Some("12 Harbour Road".into()),
        };
        let opened = Installation {
            id: 2,
            meter_id: 2,
            installed_at: at("2026-03-02T09:30:00Z"),
            removed_at: None,
            opening_register: Some(0),
            closing_register: None,
            ..closed.clone()
        };
        ReplacedView {
            supply_point_id: 1,
            old_meter: "70b3d5e75e000001".into(),
            new_meter: "70b3d5e75e000002".into(),
            closed,
            opened,
        }
    }
}

/// One meter's part of a supply point's period: the time it served the supply point within
/// the period, and its consumption then.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "MeterPart")]
pub struct MeterPartView {
    /// The meter's DevEUI.
    pub dev_eui: String,
    /// The part's start: the period's, or the installation's when later (UTC).
    pub from: DateTime<Utc>,
    /// The part's end (exclusive): the period's, or the installation's when earlier (UTC).
    pub to: DateTime<Utc>,
    /// How far its figures can be trusted.
    pub quality: crate::billing::Quality,
    /// Its readings dated within the part.
    pub readings: u32,
    /// Gas consumed, litres.
    pub gas_litres: Option<i64>,
    /// The gas register at the part's start (the installation's opening register when it
    /// starts there), litres.
    pub gas_register_start: Option<i64>,
    /// The gas register at the part's end (the closing register when it ends there), litres.
    pub gas_register_end: Option<i64>,
    /// Electricity consumed, Wh.
    pub energy_wh: Option<i64>,
    /// The energy register at the part's start, Wh.
    pub energy_register_start: Option<i64>,
    /// The energy register at the part's end, Wh.
    pub energy_register_end: Option<i64>,
}

/// A supply point's consumption over one period: the sum of the parts of the meters that
/// served it then (`meters`). Figures are computed from the readings and the installations'
/// registers on every read; closed periods' published figures are per meter
/// (`GET /meters/{meter}/consumption`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "SupplyPointConsumption")]
pub struct SupplyPointConsumptionView {
    /// The supply point.
    pub supply_point_id: i64,
    /// The period's figures, as a meter's consumption row has them (`gasRegisterStart` is
    /// the first meter's, `gasRegisterEnd` the last one's; never closed).
    #[serde(flatten)]
    pub consumption: crate::billing::ConsumptionRecord,
    /// The meters that served the supply point within the period, in time order.
    pub meters: Vec<MeterPartView>,
}

impl SupplyPointConsumptionView {
    /// The view of `row`, naming each part's meter by `dev_eui`.
    pub fn new(
        supply_point_id: i64,
        row: &crate::billing::supply_point::SupplyRow,
        dev_eui: impl Fn(i64) -> String,
    ) -> SupplyPointConsumptionView {
        let meters = row
            .parts
            .iter()
            .map(|p| {
                let r = crate::billing::ConsumptionRecord::from(&p.row);
                MeterPartView {
                    dev_eui: dev_eui(p.meter_id),
                    from: p.start,
                    to: p.end,
                    quality: r.quality,
                    readings: r.readings,
                    gas_litres: r.gas_litres,
                    gas_register_start: r.gas_register_start,
                    gas_register_end: r.gas_register_end,
                    energy_wh: r.energy_wh,
                    energy_register_start: r.energy_register_start,
                    energy_register_end: r.energy_register_end,
                }
            })
            .collect();
        SupplyPointConsumptionView {
            supply_point_id,
            consumption: crate::billing::ConsumptionRecord::from(&row.row),
            meters,
        }
    }
}

impl Example for SupplyPointConsumptionView {
    fn example() -> Self {
        use crate::billing::{PeriodKind, Quality};
        let start = DateTime::parse_from_rfc3339("2026-03-01T00:00:00+01:00").unwrap_or_default();
        let end = DateTime::parse_from_rfc3339("2026-04-01T00:00:00+02:00").unwrap_or_default();
        let swap = at("2026-03-02T09:30:00Z");
        let part = |dev_eui: &str, from, to, gas: (i64, i64)| MeterPartView {
            dev_eui: dev_eui.into(),
            from,
            to,
            quality: Quality::Measured,
            readings: 1,
            gas_litres: Some(gas.1 - gas.0),
            gas_register_start: Some(gas.0),
            gas_register_end: Some(gas.1),
            energy_wh: None,
            energy_register_start: None,
            energy_register_end: None,
        };
        SupplyPointConsumptionView {
            supply_point_id: 1,
            consumption: crate::billing::ConsumptionRecord {
                period: PeriodKind::Month,
                period_start: start,
                period_end: end,
                period_start_utc: start.to_utc(),
                period_end_utc: end.to_utc(),
                quality: Quality::Measured,
                readings: 2,
                gas_litres: Some(4_150),
                gas_cubic_metres: Some(4.15),
                gas_register_start: Some(2_900),
                gas_register_end: Some(4_050),
                energy_wh: None,
                energy_kwh: None,
                energy_register_start: None,
                energy_register_end: None,
                closed_at: None,
                revisions: 0,
                revised_at: None,
                revised_quality: None,
                revised_gas_litres: None,
                revised_energy_wh: None,
            },
            meters: vec![
                part("70b3d5e75e000001", start.to_utc(), swap, (2_900, 3_000)),
                part("70b3d5e75e000002", swap, end.to_utc(), (0, 4_050)),
            ],
        }
    }
}
