//! A supply point's operations: replacing its meter, and its consumption across the meters
//! that served it.

use std::collections::HashMap;

use super::billing::{page_of_periods, periods_asked};
use super::lifecycle::{actor, refused};
use super::{cache_key, find_meter, id_param};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{ConsumptionQuery, NoQuery, ReplaceBody, reason};
use crate::api::views::{Page, ReplacedView, SupplyPointConsumptionView};
use crate::api::{Answer, Fresh, Request, cached};
use crate::billing;
use crate::cache::Tag;
use crate::registry::lifecycle::replace::{self, Ask, NewDevice, Newcomer};

/// POST /supply-points/{supplyPoint}/replace
pub async fn replace(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = id_param(req, 0, "supplyPoint")?;
    let body: ReplaceBody = input::json(req.body)?;
    let why = reason(&body.reason)?;
    let newcomer = match (body.meter, body.install) {
        (Some(m), None) => Newcomer::Registered(Box::new(
            find_meter(req, &MeterRef::parse(&m, "meter")?)
                .await
                .map_err(|p| p.with_field("meter"))?,
        )),
        (None, Some(i)) => Newcomer::New(NewDevice {
            serial: i.serial,
            dev_eui: i.dev_eui,
            application_id: i.application_id,
            body_number: i64::from(i.body_number),
            production_date: i.production_date,
            reporting_interval_minutes: i.reporting_interval_minutes.map(i64::from),
        }),
        (Some(_), Some(_)) => {
            return Err(Problem::bad_field(
                "meter",
                "give either `meter` (a meter in stock) or `install` (a new one), not both",
            ));
        }
        (None, None) => {
            return Err(Problem::bad_field(
                "meter",
                "is required: `meter` (a meter in stock) or `install` (a new one)",
            ));
        }
    };
    let s = req.state;
    let installations = s
        .store
        .supply_point_installations(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no supply point {id}")))?;
    let Some(open) = installations.into_iter().find(|i| i.removed_at.is_none()) else {
        return Err(Problem::conflict(format!(
            "supply point {id} has no meter installed: there is nothing to replace"
        )));
    };
    let old = s
        .store
        .meter_by_id(open.meter_id)
        .await?
        .ok_or_else(|| Problem::internal(&"an installed meter cannot be read"))?;
    let who = actor(req, why);
    let ask = Ask {
        at: body.at.unwrap_or(who.at),
        final_register: body.final_register,
        opening_register: body.opening_register,
    };
    let replaced = replace::replace(&s.store, &s.changes, &old, &open, newcomer, &ask, who)
        .await
        .map_err(refused)?;
    Answer::ok(&ReplacedView::new(replaced))
}

/// GET /supply-points/{supplyPoint}/consumption
pub async fn consumption(req: &Request<'_>) -> Result<Answer, Problem> {
    let mut q: ConsumptionQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::date_cursor(q.cursor.as_deref())?;
    let id = id_param(req, 0, "supplyPoint")?;
    let s = req.state;
    let (kind, from, to) = periods_asked(req, &mut q)?;
    cached(req, cache_key(req, &q), || async {
        let installations = s
            .store
            .supply_point_installations(id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no supply point {id}")))?;
        // The supply point's region today names its time zone, as a meter's does.
        let region = installations
            .last()
            .map(|i| i.region_id.clone())
            .unwrap_or_default();
        let tz = s.billing.zone(&region);
        let periods = page_of_periods(kind, tz, (from, to), after, limit);
        let rows =
            billing::supply_point::rows(&s.store, &installations, &periods, s.billing.gap).await?;
        let mut dev_euis = HashMap::new();
        for i in &installations {
            if let std::collections::hash_map::Entry::Vacant(e) = dev_euis.entry(i.meter_id) {
                let m = s.store.meter_by_id(i.meter_id).await?;
                e.insert(m.map(|m| m.dev_eui).unwrap_or_default());
            }
        }
        let dev_eui = |id: i64| dev_euis.get(&id).cloned().unwrap_or_default();
        let page = Page::of(
            rows,
            limit,
            |row| Some(row.row.period.first_day.to_string()),
            |row| SupplyPointConsumptionView::new(id, &row, dev_eui),
        );
        let mut tags = vec![Tag::Region(region)];
        tags.extend(dev_euis.keys().map(|m| Tag::Meter(*m)));
        Fresh::new(&page, tags, None)
    })
    .await
}
