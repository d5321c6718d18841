//! A meter's life after installation: changing its details, its history, retiring it and its
//! final report.

use super::{cache_key, find_meter};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{MeterPatch, NoQuery, PageQuery, RetireBody, reason};
use crate::api::views::{AuditView, MeterView, Page};
use crate::api::{Answer, Fresh, Request, cached};
use crate::cache::Tag;
use crate::registry::lifecycle::{self, Patch, Refused};
use crate::registry::record::FieldError;
use crate::storage::lifecycle::Actor;

/// Validation problems as one 400 naming the first field and listing them all.
pub(super) fn fields_problem(errors: &[FieldError]) -> Problem {
    let detail = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    let field = errors.first().map_or("body", |e| e.field);
    Problem::bad_field(field, detail)
}

/// A field a meter always has, named in a patch: its value, or a 400 for `null`.
fn kept<T>(value: Option<Option<T>>, field: &str) -> Result<Option<T>, Problem> {
    match value {
        None => Ok(None),
        Some(Some(v)) => Ok(Some(v)),
        Some(None) => Err(Problem::bad_field(
            field,
            "cannot be removed (null): a meter always has one",
        )),
    }
}

/// The patch a body asks for, `null`s refused by name where a meter needs a value.
fn patch_of(b: MeterPatch) -> Result<Patch, Problem> {
    Ok(Patch {
        user_id: kept(b.user_id, "userId")?,
        region: kept(b.region, "region")?,
        usage_type: kept(b.usage_type, "usageType")?,
        mode: kept(b.mode, "mode")?,
        application_id: kept(b.application_id, "applicationId")?,
        production_date: kept(b.production_date, "productionDate")?,
        body_number: kept(b.body_number, "bodyNumber")?.map(i64::from),
        reporting_interval_minutes: kept(b.reporting_interval_minutes, "reportingIntervalMinutes")?
            .map(i64::from),
        address: b.address,
    })
}

/// A refusal as a problem: 400 naming the field, 409 for the meter's state.
pub(super) fn refused(r: Refused) -> Problem {
    match r {
        Refused::Invalid(errors) => fields_problem(&errors),
        Refused::Conflict(detail, field) => match field {
            Some(f) => Problem::conflict(detail).with_field(f),
            None => Problem::conflict(detail),
        },
        Refused::Storage(e) => e.into(),
    }
}

pub(super) fn actor(req: &Request<'_>, reason: String) -> Actor {
    Actor {
        name: req.caller_name(),
        at: req.state.now(),
        reason,
    }
}

/// PATCH /meters/{meter}
pub async fn change(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let body: MeterPatch = input::json(req.body)?;
    let why = reason(&body.reason)?;
    let patch = patch_of(body)?;
    let s = req.state;
    let m = find_meter(req, &r).await?;
    let who = actor(req, why);
    let now = who.at;
    let changed = lifecycle::change(&s.store, &s.changes, &m, &patch, who)
        .await
        .map_err(refused)?;
    let m = if changed {
        s.store
            .meter_by_dev_eui(&m.dev_eui)
            .await?
            .ok_or_else(|| Problem::internal(&"a meter just changed cannot be read back"))?
    } else {
        m
    };
    Answer::ok(&MeterView::new(m, now))
}

/// GET /meters/{meter}/history
pub async fn history(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: PageQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let before = input::id_cursor(q.cursor.as_deref())?.unwrap_or(i64::MAX);
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let m = find_meter(req, &r).await?;
        let rows = s.store.meter_history(m.id, before, limit).await?;
        let page = Page::of(rows, limit, |a| Some(a.id.to_string()), AuditView::from);
        Fresh::new(&page, vec![Tag::Meter(m.id)], None)
    })
    .await
}

/// POST /meters/{meter}/retire
pub async fn retire(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let body: RetireBody = input::json(req.body)?;
    let why = reason(&body.reason)?;
    let s = req.state;
    let m = find_meter(req, &r).await?;
    let report = lifecycle::retire(&s.store, &s.changes, &m, body.outcome, actor(req, why))
        .await
        .map_err(refused)?;
    // ChirpStack's device list follows (a round of the sync, when it is configured).
    s.registry_changed.notify_one();
    Answer::ok(&report)
}

/// GET /meters/{meter}/final-report
pub async fn final_report(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: NoQuery = input::query(req.query)?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let m = find_meter(req, &r).await?;
        let report = s.store.final_report(m.id).await?.ok_or_else(|| {
            Problem::not_found(format!(
                "meter {} has no final report: it was never retired",
                m.dev_eui
            ))
        })?;
        Fresh::new(&report, vec![Tag::Meter(m.id)], None)
    })
    .await
}
