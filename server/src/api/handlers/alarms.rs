//! Alarms (list, acknowledge, clear) and the field visits that follow them.

use chrono::{DateTime, Utc};
use warp::http::StatusCode;

use super::{cache_key, find_meter, id_param};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{AlarmsQuery, InspectionBody, NoQuery, PageQuery};
use crate::api::routes::ALARM_STATES;
use crate::api::views::{AlarmView, InspectionView, Page};
use crate::api::{Answer, ApiState, Fresh, Request, cached};
use crate::cache::{Tag, Touched};
use crate::storage::Error as StorageError;
use crate::storage::alarms::Alarm;
use crate::storage::inspections::{INSPECTION_OUTCOMES, NewInspection};
use crate::storage::listings::AlarmFilter;
use crate::storage::meters::Meter;

/// GET /alarms
pub async fn alarms(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: AlarmsQuery = input::query(req.query)?;
    input::one_of(q.state.as_deref(), &ALARM_STATES, "state")?;
    if let (Some(f), Some(t)) = (q.from, q.to)
        && f >= t
    {
        return Err(Problem::bad_field("from", "must be before `to`"));
    }
    let limit = input::limit(q.limit)?;
    let before = input::id_cursor(q.cursor.as_deref())?.unwrap_or(i64::MAX);
    let meter = q
        .meter
        .as_deref()
        .map(|m| MeterRef::parse(m, "meter"))
        .transpose()?;
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let meter = match &meter {
            Some(r) => Some(find_meter(req, r).await?),
            None => None,
        };
        let filter = AlarmFilter {
            state: q.state.clone(),
            kind: q.kind.clone(),
            region: q.region.clone(),
            meter_id: meter.as_ref().map(|m| m.id),
            from: q.from,
            to: q.to,
        };
        let rows = s.store.alarms_filtered(&filter, before, limit).await?;
        let tags = match (&meter, &filter.region) {
            (Some(m), _) => vec![Tag::Meter(m.id)],
            (None, Some(r)) => vec![Tag::Region(r.clone())],
            (None, None) => vec![Tag::All],
        };
        let page = Page::of(rows, limit, |a| Some(a.id.to_string()), AlarmView::from);
        Fresh::new(&page, tags, None)
    })
    .await
}

async fn load(req: &Request<'_>) -> Result<Alarm, Problem> {
    let id = id_param(req, 0, "alarm")?;
    load_by_id(req.state, id).await
}

async fn load_by_id(state: &ApiState, id: i64) -> Result<Alarm, Problem> {
    state
        .store
        .alarm(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no alarm {id}")))
}

/// GET /alarms/{alarm}
pub async fn alarm(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    Answer::ok(&AlarmView::from(load(req).await?))
}

/// What a change to an alarm touches, read before the write: the write is begun with it
/// and nothing fallible stands between its commit and its announcement.
async fn touched_by(state: &ApiState, a: &Alarm) -> Result<Touched, Problem> {
    let region = state
        .store
        .meter_by_id(a.meter_id)
        .await?
        .map(|m| m.region_id)
        .unwrap_or_default();
    Ok(Touched::meter(a.meter_id, &region))
}

/// POST /alarms/{alarm}/acknowledge
pub async fn acknowledge(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = id_param(req, 0, "alarm")?;
    let a = acknowledge_alarm(req.state, id, &req.caller_name()).await?;
    Answer::ok(&AlarmView::from(a))
}

/// Acknowledges alarm `id` in the name of `by` and announces the change; the alarm as it is
/// now. The API and the pages both acknowledge through it.
pub async fn acknowledge_alarm(state: &ApiState, id: i64, by: &str) -> Result<Alarm, Problem> {
    let a = load_by_id(state, id).await?;
    let touched = touched_by(state, &a).await?;
    let pending = state.changes.begin(&touched);
    let now = state.now();
    match state.store.acknowledge_alarm(a.id, by, now).await {
        Ok(()) => {}
        // The alarm exists (just read), so "not found" means it is no longer open.
        Err(StorageError::NotFound) => {
            return Err(Problem::conflict(format!(
                "alarm {} is {}, not open",
                a.id, a.state
            )));
        }
        Err(e) => return Err(e.into()),
    }
    pending.committed(&touched).await;
    load_by_id(state, id).await
}

/// POST /alarms/{alarm}/clear
pub async fn clear(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = id_param(req, 0, "alarm")?;
    Answer::ok(&AlarmView::from(clear_alarm(req.state, id).await?))
}

/// Clears alarm `id` and announces the change; the alarm as it is now. The API and the
/// pages both clear through it.
pub async fn clear_alarm(state: &ApiState, id: i64) -> Result<Alarm, Problem> {
    let a = load_by_id(state, id).await?;
    let touched = touched_by(state, &a).await?;
    let pending = state.changes.begin(&touched);
    if !state.store.clear_alarm(a.id, state.now()).await? {
        return Err(Problem::conflict(format!(
            "alarm {} is already cleared",
            a.id
        )));
    }
    pending.committed(&touched).await;
    load_by_id(state, id).await
}

/// GET /meters/{meter}/inspections
pub async fn inspections(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: PageQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let before = input::pair_cursor::<i64>(q.cursor.as_deref())?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    let key = format!("{}|{}", cache_key(req, &q), r.key());
    cached(req, key, || async {
        let m = find_meter(req, &r).await?;
        let rows = s.store.inspections_page(m.id, before, limit).await?;
        let page = Page::of(
            rows,
            limit,
            |i| Some(format!("{}|{}", input::time_key(i.visited_at), i.id)),
            InspectionView::from,
        );
        Fresh::new(&page, vec![Tag::Meter(m.id)], None)
    })
    .await
}

/// POST /meters/{meter}/inspections
pub async fn record_inspection(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let body: InspectionBody = input::json(req.body)?;
    check_inspection(&body, req.state.now())?;
    let m = find_meter(req, &r).await?;
    let view = record_inspection_of(req.state, &m, body).await?;
    Ok(Answer::json(StatusCode::CREATED, &view)?
        .at(format!("/api/v1/meters/{}/inspections", m.dev_eui)))
}

/// The checks of an inspection that need no store.
fn check_inspection(body: &InspectionBody, now: DateTime<Utc>) -> Result<(), Problem> {
    input::one_of(Some(&body.outcome), &INSPECTION_OUTCOMES, "outcome")?;
    if body.inspector.trim().is_empty() || body.inspector.chars().count() > 200 {
        return Err(Problem::bad_field(
            "inspector",
            "must be 1 to 200 characters",
        ));
    }
    if body.notes.chars().count() > 10_000 {
        return Err(Problem::bad_field(
            "notes",
            "must be at most 10000 characters",
        ));
    }
    if body.visited_at > now {
        return Err(Problem::bad_field("visitedAt", "is in the future"));
    }
    Ok(())
}

/// Records a field visit to meter `m`, checked as `POST /meters/{meter}/inspections` checks
/// it, and announces the change. The API and the pages both record through it.
pub async fn record_inspection_of(
    s: &ApiState,
    m: &Meter,
    body: InspectionBody,
) -> Result<InspectionView, Problem> {
    let now = s.now();
    check_inspection(&body, now)?;
    if let Some(alarm_id) = body.alarm_id {
        match s.store.alarm(alarm_id).await? {
            Some(a) if a.meter_id == m.id => {}
            _ => {
                return Err(Problem::bad_field(
                    "alarmId",
                    format!("no alarm {alarm_id} of this meter"),
                ));
            }
        }
    }
    let new = NewInspection {
        meter_id: m.id,
        alarm_id: body.alarm_id,
        visited_at: body.visited_at,
        inspector: body.inspector.trim().to_owned(),
        outcome: body.outcome,
        notes: body.notes,
    };
    let touched = Touched::meter(m.id, &m.region_id);
    let pending = s.changes.begin(&touched);
    let id = s.store.insert_inspection(&new, now).await?;
    pending.committed(&touched).await;
    Ok(InspectionView {
        id,
        meter_id: m.id,
        alarm_id: new.alarm_id,
        visited_at: new.visited_at,
        inspector: new.inspector,
        outcome: new.outcome,
        notes: new.notes,
        created_at: now,
    })
}
