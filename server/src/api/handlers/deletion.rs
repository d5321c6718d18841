//! Deleting part of a meter's data (its readings or alarms in a time range), and a
//! customer's personal data.

use super::find_meter;
use super::lifecycle::fields_problem;
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{DeleteAlarmsQuery, DeleteReadingsQuery, EraseBody, NoQuery};
use crate::api::views::{ClosedPeriodView, DeletionView, ErasureView};
use crate::api::{Answer, Request};
use crate::billing::{Calendar, RevisionRecord};
use crate::registry::deletion::{self, Ask, Outcome, Refused};
use crate::storage::deletion::Data;
use crate::storage::lifecycle::Actor;
use crate::storage::meters::Meter;

/// A refusal as a problem: 400 naming the field, 409 naming the closed periods.
pub(crate) fn refused(r: Refused) -> Problem {
    match r {
        Refused::Invalid(errors) => fields_problem(&errors),
        Refused::Closed(_) => Problem::conflict(r.to_string()).with_field("force"),
        Refused::Unknown(detail) => Problem::not_found(detail),
        Refused::Storage(e) => e.into(),
    }
}

/// The answer's view of an outcome.
pub(crate) fn view(
    calendar: &Calendar,
    meter: &Meter,
    o: &Outcome,
) -> Result<DeletionView, Problem> {
    let tz = calendar.zone(&meter.region_id);
    let revisions = o
        .revisions
        .iter()
        .map(|r| RevisionRecord::new(r, tz))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeletionView {
        dev_eui: meter.dev_eui.clone(),
        data: o.ask.data.as_str().into(),
        from: o.ask.from,
        to: o.ask.to,
        dry_run: o.ask.dry_run,
        count: o.found.count,
        first: o.found.first,
        last: o.found.last,
        closed_periods: o.closed.iter().filter_map(ClosedPeriodView::new).collect(),
        force_required: o.force_required,
        revisions,
        deleted: o.deleted,
    })
}

/// Runs a deletion for the request's caller and answers its view.
async fn run(req: &Request<'_>, ask: Ask) -> Result<Answer, Problem> {
    let r = MeterRef::parse(req.param(0), "meter")?;
    // Checked before the meter is looked up: bad input is a 400 whatever the meter.
    deletion::check(&ask).map_err(|e| refused(Refused::Invalid(e)))?;
    let s = req.state;
    let m = find_meter(req, &r).await?;
    let who = Actor {
        name: req.caller_name(),
        at: s.now(),
        reason: ask.reason.trim().to_owned(),
    };
    let outcome = deletion::delete(&s.store, &s.changes, &s.billing, &m, ask, who)
        .await
        .map_err(refused)?;
    Answer::ok(&view(&s.billing, &m, &outcome)?)
}

/// DELETE /meters/{meter}/readings
pub async fn readings(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: DeleteReadingsQuery = input::query(req.query)?;
    let ask = Ask {
        data: Data::Readings,
        from: q.from,
        to: q.to,
        dry_run: q.dry_run.unwrap_or(false),
        force: q.force.unwrap_or(false),
        reason: q.reason.unwrap_or_default(),
    };
    run(req, ask).await
}

/// DELETE /meters/{meter}/alarms
pub async fn alarms(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: DeleteAlarmsQuery = input::query(req.query)?;
    let ask = Ask {
        data: Data::Alarms,
        from: q.from,
        to: q.to,
        dry_run: q.dry_run.unwrap_or(false),
        force: false,
        reason: q.reason.unwrap_or_default(),
    };
    run(req, ask).await
}

/// POST /customers/{customer}/erase
pub async fn erase(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let body: EraseBody = input::json(req.body)?;
    let s = req.state;
    let dry_run = body.dry_run.unwrap_or(false);
    let who = Actor {
        name: req.caller_name(),
        at: s.now(),
        reason: body.reason.trim().to_owned(),
    };
    let erased = deletion::erase_customer(&s.store, &s.changes, req.param(0), dry_run, who)
        .await
        .map_err(refused)?;
    Answer::ok(&ErasureView::new(&erased, dry_run))
}
